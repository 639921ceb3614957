import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import type { Registry as MetricsRegistry } from 'prom-client'
import type { Clock } from '../credentials/clock.js'
import { TokenUnavailableError } from '../credentials/refresher.js'
import { isVerifiable } from '../oci/digest.js'
import type { RegistryRequest } from '../oci/grammar.js'
import type { Target } from '../routing/resolve.js'
import { UpstreamError } from '../upstream/errors.js'
import { OriginUnknownError, type UpstreamResponse } from '../upstream/fetch.js'
import { streamBody } from '../upstream/transport/agents.js'
import { concatenated, firstHeader, readLimited } from '../upstream/transport/body-io.js'
import type { ResponseBody } from '../upstream/transport/types.js'
import { committedSource, fileBody, fillSource, type ByteSource } from './body.js'
import { RegistryKnowledge } from './confirmations.js'
import { nodeFileSystem, type CacheFileSystem } from './file-system.js'
import { Fill, type FillFailedError } from './fill.js'
import { CacheMetrics } from './metrics.js'
import { parseRange } from './range.js'
import { CacheStore, type Entry, type StoredHeaders } from './store.js'

export interface LayerCacheOptions {
  dir: string
  maxSize: number
  /** How long a registry's confirmation that a repository has a digest lets the cache serve it. */
  confirmMs: number
  /** Answer tags from the cache when the registry cannot be reached. */
  serveStale: boolean
  clock: Clock
  log: Logger
  fs?: CacheFileSystem | undefined
  metrics?: MetricsRegistry | undefined
  lockRefreshMs?: number | undefined
}

/** One GET or HEAD of a blob or manifest, after client authentication and the access policy. */
export interface CacheableRequest {
  method: string
  call: RegistryRequest
  target: Target
  headers: IncomingHttpHeaders
  log: Logger
  /** Sends the request to the registry with these method and headers (not tied to the client's connection). */
  fetch: (method: string, headers: IncomingHttpHeaders) => Promise<UpstreamResponse>
}

/** Largest manifest read whole to be cached (the registry's own limit is 4 MiB). */
const MANIFEST_LIMIT = 4 * 1024 * 1024
/** Client headers that would make the registry send less than the whole content. */
const PARTIAL_HEADERS = ['range', 'if-range', 'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since']
const KEPT_HEADERS = ['content-type', 'etag', 'accept-ranges', 'last-modified'] as const
export const STALE_HEADER = 'ecr-proxy-cache'

/**
 * The layer cache between the registry route and the registry: blobs and manifests by digest
 * served from verified files, one upstream fetch per digest however many clients ask, and never
 * through a repository the registry has not confirmed has that digest.
 */
export class LayerCache {
  readonly #store: CacheStore
  readonly #options: LayerCacheOptions
  readonly #fills = new Map<string, Fill>()
  readonly #knowledge: RegistryKnowledge
  readonly #metrics: CacheMetrics | undefined
  #diskFailing = false

  private constructor (store: CacheStore, options: LayerCacheOptions, metrics: CacheMetrics | undefined) {
    this.#store = store
    this.#options = options
    this.#metrics = metrics
    this.#knowledge = new RegistryKnowledge(options.clock, options.confirmMs)
  }

  static async open (options: LayerCacheOptions): Promise<LayerCache> {
    const opened: { store?: CacheStore } = {}
    const metrics = options.metrics === undefined ? undefined : new CacheMetrics(options.metrics, { size: () => opened.store?.size ?? 0, entries: () => opened.store?.entries ?? 0 })
    const store = opened.store = await CacheStore.open({
      dir: options.dir,
      maxSize: options.maxSize,
      fs: options.fs ?? nodeFileSystem,
      clock: options.clock,
      log: options.log,
      ...(options.lockRefreshMs === undefined ? {} : { lockRefreshMs: options.lockRefreshMs }),
      onEvict: () => { metrics?.evictions.inc() },
      onCorrupt: () => { metrics?.verificationFailures.inc() }
    })
    return new LayerCache(store, options, metrics)
  }

  /** GET and HEAD of blobs and manifests; everything else passes by. */
  applies (method: string, call: RegistryRequest): boolean {
    return (method === 'GET' || method === 'HEAD') && (call.kind === 'blob' || call.kind === 'manifest')
  }

  /** For /readyz. */
  state (): Record<string, unknown> {
    return {
      dir: this.#store.dir,
      bytes: this.#store.size,
      maxBytes: this.#store.maxSize,
      entries: this.#store.entries,
      fills: this.#fills.size,
      diskFailing: this.#diskFailing,
      serveStale: this.#options.serveStale
    }
  }

  async close (): Promise<void> {
    await this.#store.close()
  }

  async respond (request: CacheableRequest): Promise<UpstreamResponse> {
    const { call } = request
    const digest = call.kind === 'blob' ? call.digest : call.reference
    if (digest === undefined) return await this.#passThrough(request)
    if (call.kind === 'manifest' && !digest.includes(':')) return await this.#tag(request, digest)
    if (!isVerifiable(digest)) return await this.#passThrough(request)
    const kind = call.kind === 'blob' ? 'blob' : 'manifest'

    if (this.#store.has(digest) || this.#fills.has(digest)) {
      if (await this.#confirmed(request, digest)) {
        const hit = await this.#hit(request, digest, kind, true)
        if (hit !== undefined) return hit
      } else {
        return await this.#passThrough(request)
      }
    }
    this.#metrics?.misses.inc({ kind })
    if (request.method === 'HEAD') {
      const response = await this.#passThrough(request)
      if (response.statusCode === 200) this.#confirm(request, digest)
      return response
    }
    return await this.#fill(request, digest, kind)
  }

  async #passThrough (request: CacheableRequest): Promise<UpstreamResponse> {
    return await request.fetch(request.method, request.headers)
  }

  #confirm (request: CacheableRequest, digest: string): void {
    this.#knowledge.confirm(request.target.registry.name, request.target.upstreamName ?? '', digest)
  }

  /**
   * Whether the registry says this repository has the digest: fresh from an earlier answer, or a
   * HEAD now. Offline, with --cache-serve-stale, the last confirmation stands.
   */
  async #confirmed (request: CacheableRequest, digest: string): Promise<boolean> {
    const registry = request.target.registry.name
    const repository = request.target.upstreamName ?? ''
    if (this.#knowledge.isFresh(registry, repository, digest)) return true
    let response: UpstreamResponse
    try {
      response = await request.fetch('HEAD', withoutPartialHeaders(request.headers))
    } catch (err) {
      if (this.#options.serveStale && isOffline(err) && this.#knowledge.wasConfirmed(registry, repository, digest)) {
        request.log.warn({ digest, reason: (err as Error).message }, 'the registry cannot be reached: served from the cache on an earlier confirmation')
        return true
      }
      throw err
    }
    response.body.discard()
    if (response.statusCode === 200) {
      this.#confirm(request, digest)
      return true
    }
    // A 5xx is the registry out of reach too (issue 13, item 7), not a "no" for this repository.
    if (response.statusCode >= 500 && this.#options.serveStale && this.#knowledge.wasConfirmed(registry, repository, digest)) {
      request.log.warn({ digest, reason: `the registry answered ${response.statusCode}` }, 'the registry cannot be reached: served from the cache on an earlier confirmation')
      return true
    }
    return false
  }

  /** An answer from a committed entry or a fill under way; undefined when neither is there any more. */
  async #hit (request: CacheableRequest, digest: string, kind: 'blob' | 'manifest', saved: boolean, extraHeaders: Record<string, string> = {}): Promise<UpstreamResponse | undefined> {
    const fill = this.#fills.get(digest)
    let source: ByteSource
    let verify: string | undefined
    let headers: StoredHeaders
    if (fill !== undefined) {
      if (!await fill.started) return undefined
      if (fill.failure !== undefined) return undefined
      source = fillSource(fill)
      headers = fill.headers
    } else {
      const entry = this.#store.get(digest)
      if (entry === undefined) return undefined
      const file = await this.#store.openEntry(digest)
      if (file === undefined) return undefined
      source = committedSource(file, entry.size)
      headers = entry.headers
      verify = digest
    }
    if (saved) this.#metrics?.hits.inc({ kind })
    return this.#answer(request, digest, kind, source, headers, { saved, verify, extraHeaders })
  }

  #answer (request: CacheableRequest, digest: string, kind: 'blob' | 'manifest', source: ByteSource, stored: StoredHeaders, how: { saved: boolean, verify: string | undefined, extraHeaders: Record<string, string> }): UpstreamResponse {
    const size = source.size
    const headers: IncomingHttpHeaders = {
      ...stored,
      'docker-content-digest': digest,
      'docker-distribution-api-version': 'registry/2.0',
      ...how.extraHeaders
    }
    if (headers['content-type'] === undefined && kind === 'blob') headers['content-type'] = 'application/octet-stream'
    const range = request.method === 'GET' ? parseRange(request.headers, size, stored.etag) : { kind: 'whole' as const }
    if (range.kind === 'unsatisfiable') {
      source.release()
      throw new UpstreamError('the requested range is not satisfiable', 'other', undefined, { status: 416, errorCode: 'UNSUPPORTED', headers: { 'content-range': `bytes */${size}` } })
    }
    const start = range.kind === 'part' ? range.start : 0
    const end = range.kind === 'part' ? range.end : size - 1
    headers['content-length'] = String(end + 1 - start)
    if (range.kind === 'part') headers['content-range'] = `bytes ${start}-${end}/${size}`
    const metrics = this.#metrics
    const body = fileBody({
      source,
      start,
      end,
      // A whole committed file is checked as it is sent: bit rot cuts the client off, never reaches it whole.
      verify: range.kind === 'whole' ? how.verify : undefined,
      onBytes: metrics === undefined
        ? undefined
        : (bytes) => {
            metrics.servedBytes.inc({ kind }, bytes)
            if (how.saved) metrics.savedBytes.inc({ kind }, bytes)
          },
      onCorrupt: (reason) => {
        request.log.error({ digest, reason }, 'a cache file does not match its digest: removed, client cut off')
        this.#metrics?.verificationFailures.inc()
        this.#store.remove(digest)
      },
      resume: async (position, last) => await this.#resume(request, position, last)
    })
    return { statusCode: range.kind === 'part' ? 206 : 200, headers, body, pooled: true, replayed: false }
  }

  /** The rest of a body whose fill could not be written to disk, from the registry, uncached. */
  async #resume (request: CacheableRequest, position: number, end: number): Promise<ResponseBody> {
    const response = await request.fetch('GET', { ...withoutPartialHeaders(request.headers), range: `bytes=${position}-${end}` })
    if (response.statusCode !== 206) {
      response.body.discard()
      throw new UpstreamError(`the registry answered ${response.statusCode} to the rest of a blob the cache could not store`, 'other', undefined)
    }
    return response.body
  }

  /** The one upstream fetch of a digest; every client of it reads the file as it is written. */
  async #fill (request: CacheableRequest, digest: string, kind: 'blob' | 'manifest'): Promise<UpstreamResponse> {
    const fill = new Fill(digest)
    this.#fills.set(digest, fill)
    let response: UpstreamResponse
    try {
      response = await request.fetch('GET', withoutPartialHeaders(request.headers))
    } catch (err) {
      this.#endFill(fill)
      fill.abandon()
      throw err
    }
    const announced = response.headers['docker-content-digest']
    const length = Number(response.headers['content-length'])
    const uncached = (why?: string): UpstreamResponse => {
      if (why !== undefined) request.log.info({ digest, reason: why }, 'not cached')
      this.#endFill(fill)
      fill.abandon()
      return response
    }
    if (response.statusCode !== 200) return uncached()
    this.#confirm(request, digest)
    if (announced !== undefined && announced !== digest) return uncached(`the registry named it ${String(announced)}`)
    if (!Number.isSafeInteger(length) || response.headers['content-length'] === undefined) return uncached('no Content-Length')
    const reservation = this.#store.reserve(length)
    if (reservation === undefined) return uncached(`${length} bytes do not fit in the cache (--cache-max-size)`)
    let temp
    try {
      temp = await this.#store.createTemp(digest)
    } catch (err) {
      reservation.release()
      this.#diskFailure(request.log, err as Error)
      return uncached()
    }
    const headers: StoredHeaders = {}
    for (const name of KEPT_HEADERS) {
      const value = response.headers[name]
      if (typeof value === 'string') headers[name] = value
    }
    fill.begin({
      body: response.body,
      size: length,
      headers,
      temp,
      reservation,
      store: this.#store,
      log: request.log,
      onEnd: (failure) => { this.#fillEnded(request.log, fill, failure) }
    })
    // The client that started the fill reads it like any other; its bytes were fetched, not saved.
    const answer = this.#answer(request, digest, kind, fillSource(fill), headers, { saved: false, verify: undefined, extraHeaders: {} })
    return answer
  }

  #endFill (fill: Fill): void {
    if (this.#fills.get(fill.digest) === fill) this.#fills.delete(fill.digest)
  }

  #fillEnded (log: Logger, fill: Fill, failure: FillFailedError | undefined): void {
    this.#endFill(fill)
    if (failure === undefined) {
      if (this.#diskFailing) log.info('the cache directory is writable again: caching resumed')
      this.#diskFailing = false
      log.debug({ digest: fill.digest, size: fill.size }, 'cached')
      return
    }
    if (failure.reason === 'verification') {
      this.#metrics?.verificationFailures.inc()
      log.error({ digest: fill.digest, reason: failure.message }, 'the registry sent a body that does not match its digest: not cached, clients cut off')
    } else if (failure.reason === 'disk') {
      this.#diskFailure(log, failure.cause as Error)
    } else {
      log.warn({ digest: fill.digest, reason: failure.message }, 'a cache fill ended early: not cached')
    }
  }

  /** A full or failing disk: caching is off for the request, logged once until a fill succeeds again. */
  #diskFailure (log: Logger, err: Error): void {
    if (this.#diskFailing) {
      log.debug({ code: (err as { code?: string }).code, reason: err.message }, 'the cache directory still cannot be written')
      return
    }
    this.#diskFailing = true
    log.warn({ code: (err as { code?: string }).code, reason: err.message, cacheDir: this.#store.dir }, 'the cache directory cannot be written: serving without caching until it can')
  }

  /** A manifest by tag: always asked of the registry; its answer is cached under its digest. */
  async #tag (request: CacheableRequest, tag: string): Promise<UpstreamResponse> {
    const registry = request.target.registry.name
    const repository = request.target.upstreamName ?? ''
    let response: UpstreamResponse
    try {
      response = await this.#passThrough(request)
    } catch (err) {
      if (isOffline(err)) {
        const stale = await this.#stale(request, tag, (err as Error).message)
        if (stale !== undefined) return stale
      }
      throw err
    }
    if (response.statusCode >= 500) {
      const stale = await this.#stale(request, tag, `the registry answered ${response.statusCode}`)
      if (stale !== undefined) {
        response.body.discard()
        return stale
      }
    }
    if (response.statusCode !== 200) return response
    const announced = firstHeader(response.headers, 'docker-content-digest')
    if (request.method === 'HEAD') {
      if (announced !== undefined && isVerifiable(announced)) {
        this.#knowledge.rememberTag(registry, repository, tag, announced)
        this.#confirm(request, announced)
      }
      return response
    }
    const read = await readLimited(response.body.stream(), MANIFEST_LIMIT)
    if (read.rest !== undefined) return { ...response, body: streamBody(Readable.from(concatenated(read.head, read.rest))) }
    const body = read.head
    const algorithm = announced !== undefined && isVerifiable(announced) ? announced.slice(0, announced.indexOf(':')) : 'sha256'
    const digest = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`
    if (announced !== undefined && announced !== digest) {
      request.log.warn({ tag, announced, computed: digest }, 'the registry\'s Docker-Content-Digest does not match the manifest: not cached')
      this.#metrics?.verificationFailures.inc()
    } else {
      this.#knowledge.rememberTag(registry, repository, tag, digest)
      this.#confirm(request, digest)
      const stored: StoredHeaders = {}
      for (const name of KEPT_HEADERS) {
        const value = response.headers[name]
        if (typeof value === 'string') stored[name] = value
      }
      const entry: Entry = { digest, size: body.length, headers: stored }
      try {
        await this.#store.put(entry, body)
      } catch (err) {
        this.#diskFailure(request.log, err as Error)
      }
    }
    return { ...response, body: streamBody(Readable.from([body])) }
  }

  /** --cache-serve-stale: the registry is out of reach; the tag's last digest, if cached. */
  async #stale (request: CacheableRequest, tag: string, reason: string): Promise<UpstreamResponse | undefined> {
    if (!this.#options.serveStale) return undefined
    const known = this.#knowledge.tag(request.target.registry.name, request.target.upstreamName ?? '', tag)
    if (known === undefined) return undefined
    const at = new Date(known.at).toISOString()
    const hit = await this.#hit(request, known.digest, 'manifest', true, { [STALE_HEADER]: `stale; tag-resolved-at=${at}` })
    if (hit === undefined) return undefined
    this.#metrics?.staleAnswers.inc()
    request.log.warn({ tag, digest: known.digest, resolvedAt: at, reason }, 'the registry cannot be reached: tag answered from the cache (stale)')
    return hit
  }
}

/** The registry or the ECR API cannot be reached, or no valid token can be had. */
function isOffline (err: unknown): boolean {
  return (err instanceof UpstreamError && err.status !== 416) || err instanceof TokenUnavailableError || err instanceof OriginUnknownError
}

function withoutPartialHeaders (headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const copy = { ...headers }
  for (const name of PARTIAL_HEADERS) delete copy[name]
  return copy
}
