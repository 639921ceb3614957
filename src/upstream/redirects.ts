import type { IncomingHttpHeaders } from 'node:http'
import type { Logger } from 'pino'
import picomatch from 'picomatch'
import type { Dispatcher } from 'undici'
import { regionOfRegistry } from '../routing/endpoint.js'
import { UpstreamError, kindOf } from './errors.js'
import { streamBody } from './transport/agents.js'
import { firstHeader } from './transport/body-io.js'
import type { Transport, TransportResponse } from './transport/types.js'

/** How blob redirects (ECR: 307 to a presigned S3 URL) reach the client. */
export type RedirectMode = 'pass' | 'follow'

export interface RedirectFollowerOptions {
  dispatcher: Dispatcher
  /** GETs of redirect targets, where the blob bytes pass: read into pooled buffers. HEADs use the dispatcher. */
  blobs?: Transport | undefined
  /**
   * Host globs a redirect may go to: `host` (default port only) or `host:port`. Undefined: the S3
   * endpoints of the registry's region.
   */
  allowedHosts?: readonly string[] | undefined
}

/** What following needs to know of the request that was redirected. */
export interface FollowContext {
  method: string
  /** The path and query sent to the registry, against which a relative Location resolves. */
  path: string
  /** The client's headers: only Range and Accept go to the storage. */
  headers: Readonly<Record<string, string | string[] | undefined>>
  registryOrigin: string
  /** When the registry's hostname does not say (an explicit upstream). */
  region: string | undefined
  log: Logger
  signal?: AbortSignal | undefined
}

/** The storage's answer, with the headers that describe its bytes. */
export interface StorageResponse extends TransportResponse {
  /** Where the bytes come from, for logs: host and path, never the presigned query. */
  storage: { host: string, path: string }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])
const MAX_HOPS = 3
/** Response headers of the storage service that describe the bytes; nothing else is passed on. */
const PASSED_HEADERS = ['content-length', 'content-range', 'content-type', 'etag', 'accept-ranges', 'last-modified']
/** The only client headers a redirect target sees. */
const SENT_HEADERS = ['range', 'accept']

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

const failed = (message: string, code?: string): UpstreamError => new UpstreamError(message, 'other', code)

/**
 * Follow mode: the proxy fetches a blob's redirect target itself, so clients that can reach only
 * the proxy still pull. The target gets no Authorization and no client header but Range and
 * Accept; only allowlisted hosts are contacted; the presigned URL (its signature is in the query)
 * is never logged, cached or shown — only its host and path.
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

  private matcherFor (registryOrigin: string, fallbackRegion: string | undefined): HostMatcher | undefined {
    if (this.configured !== undefined) return this.configured
    const region = regionOfRegistry(registryOrigin) ?? fallbackRegion
    if (region === undefined) return undefined
    let matcher = this.byRegion.get(region)
    if (matcher === undefined) {
      matcher = hostMatcher(defaultRedirectHosts(region))
      this.byRegion.set(region, matcher)
    }
    return matcher
  }

  /**
   * Replaces the registry's redirect with the storage's answer. Throws UpstreamError when the
   * target is refused, unreachable or answers anything but 200/206.
   */
  async follow (redirect: TransportResponse, context: FollowContext): Promise<StorageResponse> {
    const location = firstHeader(redirect.headers, 'location')
    const digest = firstHeader(redirect.headers, 'docker-content-digest')
    redirect.body.discard()
    if (location === undefined) throw failed('the registry answered a redirect without a Location')
    const matcher = this.matcherFor(context.registryOrigin, context.region)
    const headers: Record<string, string> = {}
    for (const name of SENT_HEADERS) {
      const value = context.headers[name]
      if (typeof value === 'string') headers[name] = value
    }
    const method = context.method === 'HEAD' ? 'HEAD' : 'GET'
    let base = new URL(context.path, context.registryOrigin)
    let target: URL
    try {
      target = new URL(location, base)
    } catch {
      throw failed('the registry redirected to an invalid URL')
    }

    for (let hop = 0; ; hop++) {
      const refusal = this.refusal(target, context.registryOrigin, matcher)
      if (refusal !== undefined) {
        context.log.warn({ redirectHost: target.host, redirectPath: target.pathname }, 'blob redirect refused')
        throw failed(refusal)
      }
      let response: TransportResponse
      try {
        response = await this.fetch(target, method, headers, context.signal)
      } catch (err) {
        if (context.signal?.aborted === true) throw new UpstreamError('the client went away', 'other', 'ECLIENTGONE')
        const code = (err as { code?: string }).code ?? ''
        context.log.warn({ redirectHost: target.host, redirectPath: target.pathname, code }, 'blob storage unreachable')
        if (kindOf(code) === 'timeout') throw new UpstreamError(`blob storage at ${target.host} did not answer in time`, 'timeout', code)
        throw failed(`blob storage at ${target.host} could not be reached${code === '' ? '' : ` (${code})`}`, code)
      }
      context.log.info({ redirectHost: target.host, redirectPath: target.pathname, status: response.statusCode }, 'blob redirect followed')

      const next = firstHeader(response.headers, 'location')
      if (REDIRECTS.has(response.statusCode) && next !== undefined && hop < MAX_HOPS) {
        response.body.discard()
        base = target
        try {
          target = new URL(next, base)
        } catch {
          throw failed(`blob storage at ${base.host} redirected to an invalid URL`)
        }
        continue
      }
      if (response.statusCode === 200 || response.statusCode === 206) {
        const passed: IncomingHttpHeaders = {}
        for (const name of PASSED_HEADERS) {
          const value = firstHeader(response.headers, name)
          if (value !== undefined) passed[name] = value
        }
        if (digest !== undefined) passed['docker-content-digest'] = digest
        passed['docker-distribution-api-version'] = 'registry/2.0'
        if (method === 'HEAD') response.body.discard()
        return { ...response, headers: passed, storage: { host: target.host, path: target.pathname } }
      }
      response.body.discard()
      if (response.statusCode === 416) {
        const range = firstHeader(response.headers, 'content-range')
        throw new UpstreamError('the requested range is not satisfiable', 'other', undefined, { status: 416, errorCode: 'UNSUPPORTED', headers: range === undefined ? {} : { 'content-range': range } })
      }
      throw failed(`blob storage at ${target.host} answered ${response.statusCode}`)
    }
  }

  /** One request to a redirect target. */
  private async fetch (target: URL, method: 'GET' | 'HEAD', headers: Record<string, string>, signal: AbortSignal | undefined): Promise<TransportResponse> {
    const path = `${target.pathname}${target.search}`
    const blobs = this.options.blobs
    if (method === 'GET' && blobs !== undefined) {
      const res = await blobs.request({ origin: target.origin, method, path, headers })
      if (signal?.aborted === true) {
        res.body.discard()
        throw new UpstreamError('the client went away', 'other', 'ECLIENTGONE')
      }
      return res
    }
    const response = await this.options.dispatcher.request({ origin: target.origin, path, method, headers, ...(signal === undefined ? {} : { signal }) })
    return { statusCode: response.statusCode, headers: response.headers, body: streamBody(response.body), pooled: false }
  }

  private refusal (target: URL, registryOrigin: string, matcher: HostMatcher | undefined): string | undefined {
    const registryScheme = new URL(registryOrigin).protocol
    if (target.protocol !== 'https:' && !(target.protocol === 'http:' && registryScheme === 'http:')) {
      return `the registry redirected to ${target.protocol}//${target.host}; only https redirects are followed`
    }
    if (target.username !== '' || target.password !== '') {
      return `the registry redirected to ${target.host} with credentials in the URL; not followed`
    }
    if (matcher === undefined) {
      return `the registry redirected to ${target.host}, but its region is unknown: set --region or --redirect-allowed-hosts`
    }
    if (!matcher(target)) {
      return `the registry redirected to ${target.host}, which is not an allowed redirect host (--redirect-allowed-hosts)`
    }
    return undefined
  }
}
