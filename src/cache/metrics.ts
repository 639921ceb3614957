import { Counter, Gauge, type Registry } from 'prom-client'

export interface CacheGauges {
  size: () => number
  entries: () => number
}

/** The cache's Prometheus metrics, registered beside the proxy's own. */
export class CacheMetrics {
  readonly hits: Counter<'kind'>
  readonly misses: Counter<'kind'>
  readonly servedBytes: Counter<'kind'>
  readonly savedBytes: Counter<'kind'>
  readonly evictions: Counter
  readonly verificationFailures: Counter
  readonly staleAnswers: Counter

  constructor (registry: Registry, gauges: CacheGauges) {
    const registers = [registry]
    this.hits = new Counter({ name: 'ecr_proxy_cache_hits_total', help: 'Requests answered from the cache (blob or manifest)', labelNames: ['kind'], registers })
    this.misses = new Counter({ name: 'ecr_proxy_cache_misses_total', help: 'Cacheable requests that went to the registry for their bytes', labelNames: ['kind'], registers })
    this.servedBytes = new Counter({ name: 'ecr_proxy_cache_served_bytes_total', help: 'Bytes sent to clients from cache files (hits and fills)', labelNames: ['kind'], registers })
    this.savedBytes = new Counter({ name: 'ecr_proxy_cache_saved_bytes_total', help: 'Bytes sent from the cache that no upstream fetch was made for', labelNames: ['kind'], registers })
    this.evictions = new Counter({ name: 'ecr_proxy_cache_evictions_total', help: 'Entries evicted to stay under --cache-max-size', registers })
    this.verificationFailures = new Counter({ name: 'ecr_proxy_cache_verification_failures_total', help: 'Bodies or files that did not match their digest or size: never committed or served', registers })
    this.staleAnswers = new Counter({ name: 'ecr_proxy_cache_stale_total', help: 'Tag requests answered from the cache while the registry could not be reached (--cache-serve-stale)', registers })
    new Gauge({ name: 'ecr_proxy_cache_size_bytes', help: 'Bytes in the cache, fills under way included', registers, collect () { this.set(gauges.size()) } }) // eslint-disable-line no-new
    new Gauge({ name: 'ecr_proxy_cache_entries', help: 'Committed cache entries', registers, collect () { this.set(gauges.entries()) } }) // eslint-disable-line no-new
  }
}
