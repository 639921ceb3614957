import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { TokenRefresher } from '../credentials/refresher.js'

export type UpstreamErrorKind = 'connect' | 'timeout' | 'tls' | 'reset' | 'token_rejected' | 'other'

export interface RequestObservation {
  method: string
  kind: string
  status: number
  /** The registry the request went to (its host); empty for requests that reached none. */
  registry: string
  repository: string | null
  durationSeconds: number
  bytesIn: number
  bytesOut: number
}

/**
 * Prometheus metrics. Labels are bounded: route kind, method, status and the configured
 * registries, never raw URLs; the repository label only when the operator asks for it (their
 * repositories are a known set). Token metrics carry the credential (e.g. `ecr:us-east-2`).
 */
export class ProxyMetrics {
  readonly registry = new Registry()
  readonly #requests: Counter<'method' | 'kind' | 'status' | 'registry' | 'repository'>
  readonly #duration: Histogram<'method' | 'kind'>
  readonly #bytesIn: Counter<'kind' | 'registry'>
  readonly #bytesOut: Counter<'kind' | 'registry'>
  readonly #upstreamErrors: Counter<'kind' | 'registry'>
  readonly #refreshes: Counter<'result' | 'credential'>
  readonly #repositoryLabel: boolean
  readonly #credentials = new Map<string, TokenRefresher>()
  #now: () => number = Date.now

  constructor (options: { repositoryLabel?: boolean } = {}) {
    this.#repositoryLabel = options.repositoryLabel ?? false
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry })
    this.#requests = new Counter({
      name: 'ecr_proxy_requests_total',
      help: 'Registry API requests answered, by method, route kind, status and registry',
      labelNames: this.#repositoryLabel ? ['method', 'kind', 'status', 'registry', 'repository'] : ['method', 'kind', 'status', 'registry'],
      registers
    })
    this.#duration = new Histogram({
      name: 'ecr_proxy_request_duration_seconds',
      help: 'Time from request to the last byte of the response',
      labelNames: ['method', 'kind'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers
    })
    this.#bytesIn = new Counter({ name: 'ecr_proxy_received_bytes_total', help: 'Bytes received from clients', labelNames: ['kind', 'registry'], registers })
    this.#bytesOut = new Counter({ name: 'ecr_proxy_sent_bytes_total', help: 'Bytes sent to clients', labelNames: ['kind', 'registry'], registers })
    this.#upstreamErrors = new Counter({
      name: 'ecr_proxy_upstream_errors_total',
      help: 'Failures talking to a registry: connect, timeout, tls, reset, token_rejected, other',
      labelNames: ['kind', 'registry'],
      registers
    })
    this.#refreshes = new Counter({ name: 'ecr_proxy_token_refreshes_total', help: 'Token fetches by credential and result', labelNames: ['credential', 'result'], registers })
    const credentials = this.#credentials
    const now = () => this.#now()
    // Token gauges read the refreshers when scraped, so they are never stale.
    const gauge = (name: string, help: string, read: (refresher: TokenRefresher) => number | undefined) => new Gauge({
      name,
      help,
      labelNames: ['credential'],
      registers,
      collect () {
        this.reset()
        for (const [credential, refresher] of credentials) {
          const value = read(refresher)
          if (value !== undefined) this.set({ credential }, value)
        }
      }
    })
    const expiry = (refresher: TokenRefresher) => {
      const expiresAt = refresher.status().expiresAt
      return expiresAt === undefined ? undefined : Date.parse(expiresAt)
    }
    gauge('ecr_proxy_token_expiry_timestamp_seconds', 'When the current token expires (Unix time)', (refresher) => {
      const at = expiry(refresher)
      return at === undefined ? undefined : at / 1000
    })
    gauge('ecr_proxy_token_seconds_until_expiry', 'Seconds until the current token expires (negative once expired)', (refresher) => {
      const at = expiry(refresher)
      return at === undefined ? undefined : (at - now()) / 1000
    })
    gauge('ecr_proxy_token_ready', '1 while a valid token is held', (refresher) => refresher.status().ready ? 1 : 0)
  }

  /** Counts a credential's refreshes and exposes its token state, labelled with its id. */
  watchCredential (credential: string, refresher: TokenRefresher, now: () => number = Date.now): void {
    this.#now = now
    this.#credentials.set(credential, refresher)
    refresher.onToken(() => this.#refreshes.inc({ credential, result: 'success' }))
    refresher.onFailure(() => this.#refreshes.inc({ credential, result: 'failure' }))
  }

  observeRequest (o: RequestObservation): void {
    const status = String(o.status)
    if (this.#repositoryLabel) {
      this.#requests.inc({ method: o.method, kind: o.kind, status, registry: o.registry, repository: o.repository ?? '' })
    } else {
      this.#requests.inc({ method: o.method, kind: o.kind, status, registry: o.registry })
    }
    this.#duration.observe({ method: o.method, kind: o.kind }, o.durationSeconds)
    if (o.bytesIn > 0) this.#bytesIn.inc({ kind: o.kind, registry: o.registry }, o.bytesIn)
    if (o.bytesOut > 0) this.#bytesOut.inc({ kind: o.kind, registry: o.registry }, o.bytesOut)
  }

  upstreamError (kind: UpstreamErrorKind, registry: string): void {
    this.#upstreamErrors.inc({ kind, registry })
  }
}
