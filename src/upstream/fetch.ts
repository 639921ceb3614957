import type { IncomingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import type { Authorization, Authorizer } from '../credentials/authorizer.js'
import type { RouteKind } from '../oci/grammar.js'
import { pullThroughDenial } from '../routing/mirrors.js'
import type { Target } from '../routing/resolve.js'
import { UpstreamError, toUpstreamError, type UpstreamErrorKind } from './errors.js'
import { upstreamRequestHeaders } from './headers.js'
import type { RedirectFollower } from './redirects.js'
import { streamBody } from './transport/agents.js'
import { concatenated, readLimited, type LimitedRead } from './transport/body-io.js'
import type { ResponseBody, Transport, TransportResponse } from './transport/types.js'

/** One request for a registry, as the client sent it, on its way to the registry. */
export interface UpstreamRequest {
  method: string
  kind: RouteKind
  /** Path and query on the registry. */
  path: string
  /** The client's headers; hop-by-hop fields and credentials are dropped here. */
  headers: IncomingHttpHeaders
  /** The request body, streamed; undefined: none. */
  body?: Readable | undefined
  log: Logger
  /** Aborted when the client goes away. */
  signal?: AbortSignal | undefined
}

/** What the registry (or, in follow mode, its blob storage) answered. */
export interface UpstreamResponse {
  statusCode: number
  headers: IncomingHttpHeaders
  body: ResponseBody
  /** The body arrives in pooled read buffers (the blob client). */
  pooled: boolean
  /** Whether the request was sent a second time with a replacement credential. */
  replayed: boolean
  /** Set when the bytes come from blob storage after a followed redirect. */
  storage?: { host: string, path: string }
}

/** Failures worth counting, by kind; `token_rejected` when a credential was refused. */
export type UpstreamObserver = (kind: UpstreamErrorKind | 'token_rejected', target: Target) => void

export interface UpstreamOptions {
  /** Every request: keep-alive pools through Node's agents. */
  transport: Transport
  /** Bodiless blob GETs whose bytes pass through the proxy: the pooled-buffer blob client. */
  blobTransport?: Transport | undefined
  /** One per registry kind; ECR's is always there. */
  authorizers: { readonly ecr: Authorizer } & Readonly<Partial<Record<Target['registry']['kind'], Authorizer>>>
  /** Follow mode: blob redirects fetched by the proxy. */
  redirects?: RedirectFollower | undefined
  observe?: UpstreamObserver | undefined
}

/** Answers that may be about the credential, unless the registry kind's authorizer says otherwise. */
const DEFAULT_CHALLENGE_STATUSES: readonly number[] = [401, 403]

/** The answer to a rejected credential is read up to this size to tell why it was rejected. */
const CHALLENGE_BODY_LIMIT = 64 * 1024

/** The registry's origin is not known yet (a registry named by GetAuthorizationToken). */
export class OriginUnknownError extends Error {
  override name = 'OriginUnknownError'
}

/**
 * Sends requests to registries: authorizes them, replays a GET or HEAD once when the registry
 * rejects the credential, and (in follow mode) fetches blob redirects. Knows nothing of the
 * client's connection: the answer is returned, for a reply, a cache fill or anything else.
 */
export class Upstream {
  readonly #options: UpstreamOptions

  constructor (options: UpstreamOptions) {
    this.#options = options
  }

  /**
   * @throws TokenUnavailableError when no credential can be had; OriginUnknownError; UpstreamError
   */
  async fetch (target: Target, request: UpstreamRequest): Promise<UpstreamResponse> {
    const { registry } = target
    const authorizer = this.#options.authorizers[registry.kind]
    if (authorizer === undefined) throw new Error(`no authorizer for ${registry.kind} registries`)
    const context = { origin: registry.origin, repository: target.upstreamName }
    let authorization = await authorizer.authorize(registry.credential, context)
    const origin = registry.origin
    if (origin === undefined) throw new OriginUnknownError('the registry address is not known yet')
    const challenges = authorizer.challengeStatuses?.() ?? DEFAULT_CHALLENGE_STATUSES
    const replayable = request.body === undefined && (request.method === 'GET' || request.method === 'HEAD')

    for (let replayed = false; ; replayed = true) {
      const response = await this.#send(target, origin, request, authorization)
      if (!challenges.includes(response.statusCode)) {
        return await this.#redirected(target, origin, request, response, replayed)
      }
      let read: LimitedRead
      try {
        read = await readLimited(response.body.stream(), CHALLENGE_BODY_LIMIT)
      } catch (err) {
        throw toUpstreamError(err, origin)
      }
      const { head, rest } = read
      const outcome = await authorizer.onChallenge(registry.credential, authorization, {
        status: response.statusCode,
        method: request.method,
        headers: response.headers,
        body: rest === undefined ? head : undefined
      }, context)
      if (outcome.rejected) this.#options.observe?.('token_rejected', target)
      if (outcome.rejected && outcome.replacement !== undefined && replayable && !replayed && request.signal?.aborted !== true) {
        rest?.destroy()
        request.log.info({ status: response.statusCode }, 'replaying the request with a new credential')
        authorization = outcome.replacement
        continue
      }
      if (response.statusCode === 403 && target.mirror !== undefined) {
        const denial = pullThroughDenial(target.mirror, rest === undefined ? head : undefined)
        request.log.warn({ registry: registry.name, mirror: target.mirror.host, prefix: target.mirror.prefix, upstreamRepository: target.upstreamName, permission: denial.permission }, denial.message)
      }
      // The client gets the registry's answer whole: the part read, then the rest.
      const body = rest === undefined ? Readable.from([head]) : Readable.from(concatenated(head, rest))
      return { statusCode: response.statusCode, headers: response.headers, body: streamBody(body), pooled: false, replayed }
    }
  }

  async #send (target: Target, origin: string, request: UpstreamRequest, authorization: Authorization): Promise<TransportResponse> {
    const transport = this.#transportFor(target, request)
    try {
      return await transport.request({
        origin,
        method: request.method,
        path: request.path,
        headers: upstreamRequestHeaders(request.headers, authorization.header),
        body: request.body
      })
    } catch (err) {
      const failure = toUpstreamError(err, origin)
      this.#options.observe?.(failure.kind, target)
      throw failure
    }
  }

  /**
   * The blob client where blob bytes pass through: bodiless blob GETs to a registry that may send
   * them itself. An ECR registry redirects them to S3 instead; that redirect takes the agents.
   */
  #transportFor (target: Target, request: UpstreamRequest): Transport {
    const blobs = this.#options.blobTransport
    if (blobs !== undefined && request.kind === 'blob' && request.method === 'GET' && request.body === undefined && !target.registry.redirectsBlobs) return blobs
    return this.#options.transport
  }

  async #redirected (target: Target, origin: string, request: UpstreamRequest, response: TransportResponse, replayed: boolean): Promise<UpstreamResponse> {
    const redirects = this.#options.redirects
    if (redirects === undefined || !redirects.applies(request.kind, request.method, response.statusCode)) return { ...response, replayed }
    const storage = await redirects.follow(response, {
      method: request.method,
      path: request.path,
      headers: request.headers,
      registryOrigin: origin,
      region: target.registry.region,
      log: request.log,
      signal: request.signal
    })
    return { ...storage, replayed }
  }
}

export { UpstreamError }
