import type { IncomingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import httpProxy from '@fastify/http-proxy'
import type { UpstreamAgents } from './transport/agents.js'
import type { BlobResponse } from './transport/blob-client.js'
import { relayBody, upstreamFault } from '../http/relay.js'
import { TokenUnavailableError } from '../credentials/refresher.js'
import { sendRegistryError, type ErrorReply } from '../oci/errors.js'
import { checkRequest, classify, type RegistryRequest } from '../oci/grammar.js'
import type { AccessPolicy } from '../access/policy.js'
import type { ProxyMetrics, UpstreamErrorKind } from '../ops/metrics.js'
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.js'
import type { RedirectFollower, UpstreamResponse } from './redirects.js'
import type { Route, Router } from './routing.js'

export interface ForwardOptions {
  router: Router
  agents: UpstreamAgents
  metrics?: ProxyMetrics
  /** Read-only mode and repository patterns, decided before anything is sent upstream. */
  policy?: AccessPolicy
  /** Follow mode: blob redirects fetched by the proxy instead of passed to the client. */
  redirects?: RedirectFollower
}

/** What the proxy decided about one request; read by the access log. */
export interface ProxiedRequest {
  registry: RegistryRequest
  route: Route
  origin: string
  token: string
  replayed: boolean
}

declare module 'fastify' {
  interface FastifyRequest {
    proxied: ProxiedRequest | null
  }
}

type ReplyOptions = NonNullable<Parameters<FastifyReply['from']>[1]>
type ProxyRequest = Parameters<NonNullable<ReplyOptions['onResponse']>>[0]
type ProxyReply = Parameters<NonNullable<ReplyOptions['onResponse']>>[1]

/** The parts of a reply an upstream failure needs; forwarded and blob replies both have them. */
type FailedReply = ErrorReply & {
  raw: { headersSent: boolean, destroy: () => unknown }
  request: { proxied: ProxiedRequest | null }
}

function proxiedOf (request: { proxied: ProxiedRequest | null } | undefined): ProxiedRequest {
  const proxied = request?.proxied
  if (proxied === undefined || proxied === null) throw new Error('request was not routed')
  return proxied
}

const REJECTION_BODY_LIMIT = 64 * 1024

/**
 * Forwards every `/v2/…` request to its upstream: the body streams through untouched, the
 * client's Authorization is replaced by the ECR token, and the response streams back with
 * Location and Link pointing at the proxy.
 */
async function forward (app: FastifyInstance, options: ForwardOptions): Promise<void> {
  app.decorateRequest('proxied', null)

  const replyOptions: ReplyOptions = {
    getUpstream: (request) => proxiedOf(request).origin,
    rewriteRequestHeaders: (request, headers) =>
      upstreamRequestHeaders(headers as IncomingHttpHeaders, `Basic ${proxiedOf(request).token}`),
    rewriteHeaders: (headers, request) =>
      clientResponseHeaders(headers, proxiedOf(request).origin) as Record<string, string>,
    onResponse: (request, reply, res) => {
      // From here on the pause allowed is the body timeout (0: none), not the headers timeout.
      (res.stream as Readable & { socket?: { setTimeout: (ms: number) => void } }).socket?.setTimeout(options.agents.bodyTimeoutMs)
      respond(request, reply, res as unknown as UpstreamResponse, () => { reply.from(proxiedOf(request).route.path, replyOptions) })
    },
    onError: (reply, { error }) => {
      const cause = (error as Error & { cause?: { code?: string, message?: string } }).cause
      const failure = { code: cause?.code, message: cause?.message ?? error.message }
      upstreamFailed(reply, failure, (error as { statusCode?: number }).statusCode === 504 || isTimeout(failure))
    },
    // A kept-alive connection the upstream closed while idle fails at once; an idempotent
    // request without a body is safe to send again, once.
    retryDelay: ({ err, req, attempt }) =>
      err !== undefined && err !== null && attempt === 0 && (req.method === 'GET' || req.method === 'HEAD') &&
      (err as { code?: string }).code === 'ECONNRESET'
        ? 1
        : null
  }

  await app.register(httpProxy, {
    upstream: '',
    prefix: '/v2',
    rewritePrefix: '/v2',
    http: {
      agents: { 'http:': options.agents.http, 'https:': options.agents.https },
      // Inactivity once the request is written: the time the registry has for its headers.
      requestOptions: { rejectUnauthorized: true, timeout: options.agents.headersTimeoutMs }
    },
    disableRequestLogging: true,
    internalRewriteLocationHeader: false,
    replyOptions,
    preHandler: async (request, reply) => {
      const url = request.url
      const queryAt = url.indexOf('?')
      const path = queryAt === -1 ? url : url.slice(0, queryAt)
      if (!path.startsWith('/v2/')) {
        return sendRegistryError(reply, 404, 'NOT_FOUND', 'registry API paths start with /v2/')
      }
      const classified = classify(path.slice(4))
      if (!classified.ok) {
        const status = classified.code === 'NOT_FOUND' ? 404 : 400
        return sendRegistryError(reply, status, classified.code, classified.message)
      }
      const checked = checkRequest(request.method, classified.request, queryAt === -1 ? '' : url.slice(queryAt + 1))
      const refusal = checked.ok ? options.policy?.(request.method, classified.request, checked.query) : checked
      if (refusal !== undefined) {
        if (!checked.ok && checked.allow !== undefined) reply.header('allow', checked.allow)
        // The body of a refused upload is never read: end the connection instead of draining it.
        if (request.headers['content-length'] !== undefined || request.headers['transfer-encoding'] !== undefined) reply.header('connection', 'close')
        return sendRegistryError(reply, refusal.status, refusal.code, refusal.message)
      }
      const route = options.router(classified.request, path)
      let token: string
      try {
        token = (await route.upstream.credentials.get()).token
      } catch (err) {
        if (!(err instanceof TokenUnavailableError)) throw err
        return sendRegistryError(reply, 503, 'UNAVAILABLE', err.message)
      }
      const origin = route.upstream.origin
      if (origin === undefined) {
        return sendRegistryError(reply, 503, 'UNAVAILABLE', 'the registry address is not known yet')
      }
      request.proxied = { registry: classified.request, route, origin, token, replayed: false }
    },
    handler: (request, reply, _dest, handlerOptions) => {
      const proxied = proxiedOf(request)
      if (isBlobDownload(request)) {
        fetchBlob(request, reply).catch((err: unknown) => { internalFailure(request, reply, err) })
        return reply
      }
      return reply.from(proxied.route.path, handlerOptions)
    }
  })

  /** What the registry answered, for every response that is not a blob body. */
  function respond (request: ProxyRequest, reply: ProxyReply, res: UpstreamResponse, resend: () => void): void {
    const proxied = proxiedOf(request)
    if (options.redirects?.applies(proxied.registry.kind, request.method, res.statusCode) === true) {
      options.redirects.follow(request, reply, proxied.origin, res)
      return
    }
    if (res.statusCode === 401 || res.statusCode === 403) {
      recoverFromRejection(request, reply, res.statusCode, res.stream, resend).catch((err: unknown) => {
        request.log.error({ err }, 'recovering from a rejected token failed')
        if (!reply.sent) sendRegistryError(reply, 502, 'UNAVAILABLE', 'the registry rejected the request and the proxy could not recover')
      })
      return
    }
    reply.send(res.stream)
  }

  /**
   * A blob GET: fetched with the blob client, whose pooled read buffers carry the body to the
   * client without an allocation per read. Anything but a 2xx body (a redirect, an error, a
   * rejected token) takes the same way as every other response.
   */
  async function fetchBlob (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const proxied = proxiedOf(request)
    const url = request.url
    const queryAt = url.indexOf('?')
    const target = queryAt === -1 ? proxied.route.path : `${proxied.route.path}${url.slice(queryAt)}`
    let res: BlobResponse
    try {
      res = await options.agents.blobs.get(proxied.origin, target, upstreamRequestHeaders(request.headers, `Basic ${proxied.token}`))
    } catch (err) {
      const failure = err as { code?: string, message?: string }
      upstreamFailed(reply, failure)
      return
    }
    const socket = request.raw.socket as Socket | null
    if (socket === null || socket.destroyed) {
      res.discard()
      return
    }
    const headers = clientResponseHeaders(res.headers, proxied.origin)
    if (res.statusCode < 200 || res.statusCode >= 300) {
      reply.code(res.statusCode).headers(headers)
      respond(request, reply, { statusCode: res.statusCode, headers: res.headers, stream: res.stream() }, () => {
        fetchBlob(request, reply).catch((err: unknown) => { internalFailure(request, reply, err) })
      })
      return
    }
    try {
      await relayBody(reply, res, res.statusCode, headers)
    } catch (err) {
      const failure = upstreamFault(err)
      if (failure === undefined) return
      request.log.warn({ code: failure.code, reason: failure.message }, 'the registry failed in the middle of a blob')
      upstreamFailed(reply, failure)
    }
  }

  function upstreamFailed (reply: FailedReply, cause: UpstreamCause, timedOut = isTimeout(cause)): void {
    options.metrics?.upstreamError(timedOut ? 'timeout' : upstreamErrorKind(cause))
    if (reply.raw.headersSent) {
      // The upstream failed mid-body (e.g. the body timeout): the client must see a cut
      // transfer, never a complete-looking one.
      reply.raw.destroy()
      return
    }
    const origin = reply.request.proxied?.origin ?? 'the registry'
    if (timedOut) {
      sendRegistryError(reply, 504, 'UNAVAILABLE', `${origin} did not answer in time`)
    } else {
      sendRegistryError(reply, 502, 'UNAVAILABLE', `${origin} could not be reached: ${cause.message ?? 'unknown error'}${cause.code === undefined ? '' : ` (${cause.code})`}`)
    }
  }

  function internalFailure (request: FastifyRequest, reply: FastifyReply, err: unknown): void {
    request.log.error({ err }, 'forwarding a blob failed')
    if (!reply.sent && !reply.raw.headersSent) sendRegistryError(reply, 502, 'UNAVAILABLE', 'internal proxy error while forwarding the blob')
    else reply.raw.destroy()
  }

  /**
   * ECR answers 401 to a token it does not know and 403 DENIED to an expired one. Either way the
   * token is replaced now; a GET or HEAD is sent again once with the new token, so the client
   * never sees the failure. A request with a body has been streamed already and cannot be
   * replayed: the client gets the registry's answer and retries with the new token.
   */
  async function recoverFromRejection (request: ProxyRequest, reply: ProxyReply, status: number, body: Readable, resend: () => void): Promise<void> {
    const proxied = proxiedOf(request)
    const { head, rest } = await readLimited(body, REJECTION_BODY_LIMIT)
    // A HEAD answer has no body to carry the DENIED code: any 403 may be an expired token.
    const tokenRejected = status === 401 || (request.method === 'HEAD' && status === 403) || (rest === undefined && isDenied(head))
    if (tokenRejected) {
      options.metrics?.upstreamError('token_rejected')
      const replacement = await proxied.route.upstream.credentials.replacementFor(proxied.token)
      const method = request.method
      if (replacement !== undefined && !proxied.replayed && (method === 'GET' || method === 'HEAD') && !request.raw.destroyed) {
        rest?.destroy()
        request.log.info({ status }, 'replaying the request with a new ECR token')
        proxied.token = replacement.token
        proxied.replayed = true
        for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name)
        resend()
        return
      }
    }
    reply.send(rest === undefined ? head : Readable.from(concatenated(head, rest)))
  }
}

/** A GET of a blob without a request body: the path the blob client takes. */
function isBlobDownload (request: FastifyRequest): boolean {
  if (request.method !== 'GET' || request.proxied?.registry.kind !== 'blob') return false
  const length = request.headers['content-length']
  return (length === undefined || length === '0') && request.headers['transfer-encoding'] === undefined
}

interface UpstreamCause { code?: string | undefined, message?: string | undefined }

/** Connect, headers and body timeouts, whichever client raised them. */
function isTimeout (cause: UpstreamCause): boolean {
  return /TIMEOUT/.test(cause.code ?? '')
}

function upstreamErrorKind (cause: UpstreamCause | undefined): UpstreamErrorKind {
  const code = cause?.code ?? ''
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH') return 'connect'
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'reset'
  if (code.startsWith('ERR_TLS') || code.includes('CERT') || /certificate/i.test(cause?.message ?? '')) return 'tls'
  return 'other'
}

function isDenied (body: Buffer): boolean {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown }> }
    return Array.isArray(parsed.errors) && parsed.errors.some((e) => e.code === 'DENIED')
  } catch {
    return false
  }
}

interface ErrorBody {
  /** The body, or its first bytes when it is larger than the limit. */
  head: Buffer
  /** The unread rest, when the body is larger than the limit. */
  rest?: Readable
}

/** Reads an error body up to `limit` bytes; a larger one keeps its unread rest for passing on. */
async function readLimited (stream: Readable, limit: number): Promise<ErrorBody> {
  return await new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let length = 0
    const onData = (chunk: Buffer) => {
      chunks.push(chunk)
      length += chunk.length
      if (length > limit) {
        stream.pause()
        cleanup()
        resolve({ head: Buffer.concat(chunks), rest: stream })
      }
    }
    const onEnd = () => { cleanup(); resolve({ head: Buffer.concat(chunks) }) }
    const onError = (err: Error) => { cleanup(); reject(err) }
    const cleanup = () => {
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('error', onError)
    }
    stream.on('data', onData)
    stream.once('end', onEnd)
    stream.once('error', onError)
  })
}

async function * concatenated (head: Buffer, rest: Readable): AsyncGenerator<Buffer> {
  yield head
  for await (const chunk of rest) yield chunk as Buffer
}

export default fp(forward, { name: 'ecr-auth-proxy-forward', fastify: '5.x' })
