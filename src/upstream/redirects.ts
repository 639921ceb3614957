import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import picomatch from 'picomatch'
import type { Dispatcher } from 'undici'
import { sendRegistryError, type ErrorReply } from '../oci/errors.js'
import type { BlobClient } from './transport/blob-client.js'
import { relayBody, upstreamFault, type RelayReply } from '../http/relay.js'

/** How blob redirects (ECR: 307 to a presigned S3 URL) reach the client. */
export type RedirectMode = 'pass' | 'follow'

export interface UpstreamResponse {
  statusCode: number
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>
  stream: Readable
}

/** The parts of a Fastify request and reply following needs (HTTP/1 and HTTP/2 alike). */
export interface FollowRequest {
  url: string
  method: string
  headers: Record<string, string | string[] | undefined>
  raw: { socket: { destroyed: boolean } | null }
  log: FastifyBaseLogger
}

export interface FollowReply extends ErrorReply, RelayReply {
  send (payload?: Readable | string): unknown
  removeHeader (name: string): unknown
  sent: boolean
  raw: RelayReply['raw'] & { once (event: 'close', listener: () => void): unknown }
}

export interface RedirectFollowerOptions {
  dispatcher: Dispatcher
  /** GETs of redirect targets: read into pooled buffers (blob-client.ts). HEADs use the dispatcher. */
  blobs?: BlobClient | undefined
  /**
   * Host globs a redirect may go to: `host` (default port only) or `host:port`. Undefined: the S3
   * endpoints of the registry's region.
   */
  allowedHosts?: readonly string[] | undefined
  /** Region to use when the registry's host name does not say (e.g. --upstream). */
  region?: string | undefined
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])
const MAX_HOPS = 3
/** Response headers of the storage service that describe the bytes; nothing else is passed on. */
const PASSED_HEADERS = ['content-length', 'content-range', 'content-type', 'etag', 'accept-ranges', 'last-modified']
/** The only client headers a redirect target sees. */
const SENT_HEADERS = ['range', 'accept']

/** `<acct>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`, `<acct>.dkr-ecr[-fips].<region>.on.aws` → region. */
export function regionOfRegistry (origin: string): string | undefined {
  let host: string
  try {
    host = new URL(origin).hostname.toLowerCase()
  } catch {
    return undefined
  }
  const match = /\.(?:dkr\.ecr|dkr\.ecr-fips|dkr-ecr|dkr-ecr-fips)\.([a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|on\.aws|on\.amazonwebservices\.com\.cn)$/.exec(host)
  return match?.[1]
}

/** The S3 endpoints of a region, where ECR's presigned layer URLs point. */
export function defaultRedirectHosts (region: string): string[] {
  const hosts: string[] = []
  for (const suffix of ['amazonaws.com', 'amazonaws.com.cn']) {
    for (const service of ['s3', 's3.dualstack', 's3-fips', 's3-fips.dualstack']) {
      hosts.push(`*.${service}.${region}.${suffix}`, `${service}.${region}.${suffix}`)
    }
  }
  if (region === 'us-east-1') hosts.push('*.s3.amazonaws.com', 's3.amazonaws.com', '*.s3-external-1.amazonaws.com')
  return hosts
}

type HostMatcher = (url: URL) => boolean

function hostMatcher (patterns: readonly string[]): HostMatcher {
  const withPort = patterns.filter((p) => p.includes(':')).map((p) => p.toLowerCase())
  const withoutPort = patterns.filter((p) => !p.includes(':')).map((p) => p.toLowerCase())
  const options = { nocase: true, dot: true }
  const matchHostPort = withPort.length === 0 ? () => false : picomatch(withPort, options)
  const matchHost = withoutPort.length === 0 ? () => false : picomatch(withoutPort, options)
  return (url) => {
    const defaultPort = url.protocol === 'https:' ? '443' : '80'
    const port = url.port === '' ? defaultPort : url.port
    const hostname = url.hostname.toLowerCase()
    // A pattern without a port only admits the scheme's default port.
    return matchHostPort(`${hostname}:${port}`) || (port === defaultPort && matchHost(hostname))
  }
}

function header (headers: UpstreamResponse['headers'], name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value === undefined ? undefined : String(value)
}

class RedirectRefused extends Error {}

/** A redirect target's answer, whichever client fetched it. */
interface TargetResponse {
  statusCode: number
  headers: UpstreamResponse['headers']
  drop: () => Promise<void>
  deliver: (request: FollowRequest, reply: FollowReply, target: URL) => Promise<void>
}

/**
 * Follow mode: the proxy fetches a blob's redirect target itself and streams it to the client,
 * so clients that can reach only the proxy still pull. The target gets no Authorization and no
 * client header but Range and Accept; only allowlisted hosts are contacted; the presigned URL
 * (its signature is in the query) is never logged, cached or shown — only its host and path.
 */
export class RedirectFollower {
  private readonly configured: HostMatcher | undefined
  private readonly byRegion = new Map<string, HostMatcher>()

  constructor (private readonly options: RedirectFollowerOptions) {
    this.configured = options.allowedHosts === undefined ? undefined : hostMatcher(options.allowedHosts)
  }

  /** Blob GET/HEAD answered with a redirect. */
  applies (kind: string, method: string, statusCode: number): boolean {
    return kind === 'blob' && (method === 'GET' || method === 'HEAD') && REDIRECTS.has(statusCode)
  }

  private matcherFor (registryOrigin: string): HostMatcher | undefined {
    if (this.configured !== undefined) return this.configured
    const region = regionOfRegistry(registryOrigin) ?? this.options.region
    if (region === undefined) return undefined
    let matcher = this.byRegion.get(region)
    if (matcher === undefined) {
      matcher = hostMatcher(defaultRedirectHosts(region))
      this.byRegion.set(region, matcher)
    }
    return matcher
  }

  /** Takes over the reply: the registry's redirect response is discarded, the target streamed. */
  follow (request: FollowRequest, reply: FollowReply, registryOrigin: string, res: UpstreamResponse): void {
    const location = header(res.headers, 'location')
    const digest = header(res.headers, 'docker-content-digest')
    res.stream.resume()
    // reply-from copied the redirect's headers already: none of them describe the target's bytes.
    for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name)
    this.run(request, reply, registryOrigin, location, digest).catch((err: unknown) => {
      request.log.error({ err }, 'following a blob redirect failed')
      if (!reply.sent) sendRegistryError(reply, 502, 'UNAVAILABLE', 'the blob could not be fetched from its storage location')
    })
  }

  private async run (request: FollowRequest, reply: FollowReply, registryOrigin: string, location: string | undefined, digest: string | undefined): Promise<void> {
    const matcher = this.matcherFor(registryOrigin)
    if (location === undefined) {
      sendRegistryError(reply, 502, 'UNAVAILABLE', 'the registry answered a redirect without a Location')
      return
    }
    const controller = new AbortController()
    const onClose = (): void => { if (!reply.raw.writableFinished) controller.abort() }
    reply.raw.once('close', onClose)
    if (request.raw.socket?.destroyed === true) controller.abort()

    const headers: Record<string, string> = {}
    for (const name of SENT_HEADERS) {
      const value = request.headers[name]
      if (typeof value === 'string') headers[name] = value
    }
    const method = request.method === 'HEAD' ? 'HEAD' : 'GET'
    let base = new URL(request.url, registryOrigin)
    let target: URL
    try {
      target = new URL(location, base)
    } catch {
      sendRegistryError(reply, 502, 'UNAVAILABLE', 'the registry redirected to an invalid URL')
      return
    }

    for (let hop = 0; ; hop++) {
      try {
        this.check(target, registryOrigin, matcher)
      } catch (err) {
        if (!(err instanceof RedirectRefused)) throw err
        request.log.warn({ redirectHost: target.host, redirectPath: target.pathname }, 'blob redirect refused')
        sendRegistryError(reply, 502, 'UNAVAILABLE', err.message)
        return
      }
      let response: TargetResponse
      try {
        response = await this.fetch(target, method, headers, controller.signal)
      } catch (err) {
        if (controller.signal.aborted) return
        const code = (err as { code?: string }).code ?? ''
        request.log.warn({ redirectHost: target.host, redirectPath: target.pathname, code }, 'blob storage unreachable')
        if (/TIMEOUT/.test(code)) sendRegistryError(reply, 504, 'UNAVAILABLE', `blob storage at ${target.host} did not answer in time`)
        else sendRegistryError(reply, 502, 'UNAVAILABLE', `blob storage at ${target.host} could not be reached${code === '' ? '' : ` (${code})`}`)
        return
      }
      request.log.info({ redirectHost: target.host, redirectPath: target.pathname, status: response.statusCode }, 'blob redirect followed')

      const next = header(response.headers, 'location')
      if (REDIRECTS.has(response.statusCode) && next !== undefined && hop < MAX_HOPS) {
        await response.drop()
        base = target
        try {
          target = new URL(next, base)
        } catch {
          sendRegistryError(reply, 502, 'UNAVAILABLE', `blob storage at ${base.host} redirected to an invalid URL`)
          return
        }
        continue
      }
      if (response.statusCode === 200 || response.statusCode === 206) {
        reply.code(response.statusCode)
        for (const name of PASSED_HEADERS) {
          const value = header(response.headers, name)
          if (value !== undefined) reply.header(name, value)
        }
        if (digest !== undefined) reply.header('docker-content-digest', digest)
        reply.header('docker-distribution-api-version', 'registry/2.0')
        if (method === 'HEAD') {
          await response.drop()
          reply.send()
        } else {
          await response.deliver(request, reply, target)
        }
        return
      }
      await response.drop().catch(() => {})
      if (response.statusCode === 416) {
        const range = header(response.headers, 'content-range')
        if (range !== undefined) reply.header('content-range', range)
        sendRegistryError(reply, 416, 'UNSUPPORTED', 'the requested range is not satisfiable')
        return
      }
      sendRegistryError(reply, 502, 'UNAVAILABLE', `blob storage at ${target.host} answered ${response.statusCode}`)
      return
    }
  }

  /** One request to a redirect target; its body is either delivered to the client or dropped. */
  private async fetch (target: URL, method: 'GET' | 'HEAD', headers: Record<string, string>, signal: AbortSignal): Promise<TargetResponse> {
    const path = `${target.pathname}${target.search}`
    const blobs = this.options.blobs
    if (method === 'GET' && blobs !== undefined) {
      const res = await blobs.get(target.origin, path, headers)
      if (signal.aborted) {
        res.discard()
        throw new RedirectRefused('the client went away')
      }
      return {
        statusCode: res.statusCode,
        headers: res.headers,
        drop: async () => { res.stream().resume() },
        deliver: async (request, reply, at) => {
          try {
            await relayBody(reply, res, res.statusCode, {})
          } catch (err) {
            const failure = upstreamFault(err)
            if (failure !== undefined) request.log.warn({ redirectHost: at.host, redirectPath: at.pathname, code: failure.code }, 'blob storage failed in the middle of a blob')
          }
        }
      }
    }
    const response = await this.options.dispatcher.request({ origin: target.origin, path, method, headers, signal })
    return {
      statusCode: response.statusCode,
      headers: response.headers,
      drop: async () => { await response.body.dump() },
      deliver: async (_request, reply) => { reply.send(response.body) }
    }
  }

  private check (target: URL, registryOrigin: string, matcher: HostMatcher | undefined): void {
    const registryScheme = new URL(registryOrigin).protocol
    if (target.protocol !== 'https:' && !(target.protocol === 'http:' && registryScheme === 'http:')) {
      throw new RedirectRefused(`the registry redirected to ${target.protocol}//${target.host}; only https redirects are followed`)
    }
    if (target.username !== '' || target.password !== '') {
      throw new RedirectRefused(`the registry redirected to ${target.host} with credentials in the URL; not followed`)
    }
    if (matcher === undefined) {
      throw new RedirectRefused(`the registry redirected to ${target.host}, but its region is unknown: set --region or --redirect-allowed-hosts`)
    }
    if (!matcher(target)) {
      throw new RedirectRefused(`the registry redirected to ${target.host}, which is not an allowed redirect host (--redirect-allowed-hosts)`)
    }
  }
}
