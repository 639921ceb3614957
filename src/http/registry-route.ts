import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { AccessPolicy } from '../access/policy.js'
import type { LayerCache } from '../cache/layer-cache.js'
import type { RegistryErrorCode } from '../oci/errors.js'
import { checkRequest, classify, type RegistryRequest, type RequestCheck } from '../oci/grammar.js'
import { splitTarget } from '../oci/target.js'
import { pullOnlyRefusal } from '../routing/mirrors.js'
import { NoRegistryError, type Router, type Target } from '../routing/resolve.js'
import type { UpstreamErrorKind } from '../upstream/errors.js'
import type { Upstream, UpstreamResponse } from '../upstream/fetch.js'
import { RegistryError } from './errors.js'
import { SERVED_METHODS } from './preflight.js'
import { respond } from './respond.js'

export interface RegistryRouteOptions {
  router: Router
  upstream: Upstream
  /** Read-only mode and repository patterns, decided before anything is sent upstream. */
  policy?: AccessPolicy | undefined
  /** The layer cache (--cache-dir): asked after client authentication and the policy, before the registry. */
  cache?: LayerCache | undefined
  /** Requests that came through the listener serving only Docker Hub's mirror (--docker-hub-mirror-port). */
  servesDockerHubOnly?: ((raw: FastifyRequest['raw']) => boolean) | undefined
  /** A registry failed in the middle of a body it was sending. */
  onUpstreamError?: ((kind: UpstreamErrorKind, target: Target) => void) | undefined
}

/**
 * The registry API, `/v2/…`: parse → resolve → admit → serve. Bodies are never parsed: a push
 * streams from the client's socket to the registry as it arrives.
 */
async function registryRoute (app: FastifyInstance, options: RegistryRouteOptions): Promise<void> {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })

  const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const { path, query } = splitTarget(request.url)
    const { call, checked } = parse(request, path, query)
    let target: Target
    try {
      target = options.servesDockerHubOnly?.(request.raw) === true ? options.router.resolveDockerHub(call) : options.router.resolve(call, query)
    } catch (err) {
      // With no default registry, a bare ping is the proxy's own to answer: clients ping before
      // they pull <host>/team/app or <alias>/team/app.
      if (call.kind === 'ping' && err instanceof NoRegistryError) return await reply.code(200).header('docker-distribution-api-version', 'registry/2.0').send({})
      throw err
    }
    const pullOnly = pullOnlyRefusal(request.method, call, target.mirror)
    if (pullOnly !== undefined) refuse(request, pullOnly)
    admit(request, call, checked, target, options.router, options.policy)
    request.proxy.call = call
    request.proxy.target = target
    const upstreamPath = options.router.upstreamPath(target, path)
    const upstreamQuery = options.router.upstreamQuery(target, query)
    const fetch = async (method: string, headers: FastifyRequest['headers'], signal: AbortSignal | undefined): Promise<UpstreamResponse> => await options.upstream.fetch(target, {
      method,
      kind: call.kind,
      path: upstreamQuery === '' ? upstreamPath : `${upstreamPath}?${upstreamQuery}`,
      headers,
      body: hasBody(request) ? request.raw : undefined,
      log: request.log as Logger,
      signal
    })
    const cache = options.cache
    const response = cache !== undefined && cache.applies(request.method, call)
      ? await cache.respond({
        method: request.method,
        call,
        target,
        headers: request.headers,
        log: request.log as Logger,
        // A fill serves every client of its digest: no one client's leaving cancels it.
        fetch: async (method, headers) => await fetch(method, headers, undefined)
      })
      : await fetch(request.method, request.headers, call.kind === 'blob' ? abortedOnClose(reply) : undefined)
    request.proxy.replayed = response.replayed
    const origin = target.registry.origin as string
    return await respond(request, reply, target, origin, response, (kind) => options.onUpstreamError?.(kind, target))
  }

  for (const url of ['/v2', '/v2/*']) {
    app.route({ method: [...SERVED_METHODS], url, exposeHeadRoute: false, handler })
  }
}

/** The registry operation a request names, checked against the API. */
function parse (request: FastifyRequest, path: string, query: string): { call: RegistryRequest, checked: RequestCheck } {
  if (!path.startsWith('/v2/')) throw new RegistryError(404, 'NOT_FOUND', 'registry API paths start with /v2/')
  const classified = classify(path.slice(4))
  if (!classified.ok) throw new RegistryError(classified.code === 'NOT_FOUND' ? 404 : 400, classified.code, classified.message)
  const checked = checkRequest(request.method, classified.request, query)
  if (!checked.ok) refuse(request, checked)
  return { call: classified.request, checked }
}

/** The access policy, with the registry known: patterns may name it by host or alias. */
function admit (request: FastifyRequest, call: RegistryRequest, checked: RequestCheck, target: Target, router: Router, policy: AccessPolicy | undefined): void {
  if (policy === undefined || !checked.ok) return
  const { from } = checked.query
  // A mount from another registry is dropped before it is sent (Router.upstreamQuery): nothing to check.
  const query = from === undefined ? checked.query : { ...checked.query, from: router.fromOnRegistry(target, from) ?? from }
  const refusal = policy(request.method, { ...call, ...(target.upstreamName === undefined ? {} : { name: target.upstreamName }) }, query, target.registry.policyNames)
  if (refusal !== undefined) refuse(request, refusal)
}

function refuse (request: FastifyRequest, refusal: { status: number, code: RegistryErrorCode, message: string, allow?: string }): never {
  const headers: Record<string, string> = {}
  if (refusal.allow !== undefined) headers.allow = refusal.allow
  // The body of a refused upload is never read: end the connection instead of draining it.
  if (request.headers['content-length'] !== undefined || request.headers['transfer-encoding'] !== undefined) headers.connection = 'close'
  throw new RegistryError(refusal.status, refusal.code, refusal.message, headers)
}

function hasBody (request: FastifyRequest): boolean {
  const length = request.headers['content-length']
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined
}

/** Aborted when the client's response closes before it finished: what follow mode fetches is dropped. */
function abortedOnClose (reply: FastifyReply): AbortSignal {
  const controller = new AbortController()
  const raw = reply.raw
  const onClose = (): void => { if (!raw.writableFinished) controller.abort() }
  raw.once('close', onClose)
  if (reply.request.raw.socket?.destroyed === true) controller.abort()
  return controller.signal
}

/** Registered as an encapsulated plugin: its pass-through body parser applies to /v2 only. */
export default registryRoute
