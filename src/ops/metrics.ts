import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { TokenRefresher } from '../credentials/refresher.js'

export type UpstreamErrorKind = 'connect' | 'timeout' | 'tls' | 'reset' | 'token_rejected' | 'other'

export interface RequestObservation {
  method: string
  kind: string
  status: number
  repository: string | null
  durationSeconds: number
  bytesIn: number
  bytesOut: number
}

/**
 * Prometheus metrics. Labels are bounded: route kind, method and status, never raw URLs;
 * the repository label only when the operator asks for it (their repositories are a known set).
 */
export class ProxyMetrics {
  readonly registry = new Registry()
  readonly #requests: Counter<'method' | 'kind' | 'status' | 'repository'>
  readonly #duration: Histogram<'method' | 'kind'>
  readonly #bytesIn: Counter<'kind'>
  readonly #bytesOut: Counter<'kind'>
  readonly #upstreamErrors: Counter<'kind'>
  readonly #refreshes: Counter<'result'>
  readonly #repositoryLabel: boolean

  constructor (options: { repositoryLabel?: boolean } = {}) {
    this.#repositoryLabel = options.repositoryLabel ?? false
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry })
    this.#requests = new Counter({
      name: 'ecr_proxy_requests_total',
      help: 'Registry API requests answered, by method, route kind and status',
      labelNames: this.#repositoryLabel ? ['method', 'kind', 'status', 'repository'] : ['method', 'kind', 'status'],
      registers
    })
    this.#duration = new Histogram({
      name: 'ecr_proxy_request_duration_seconds',
      help: 'Time from request to the last byte of the response',
      labelNames: ['method', 'kind'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers
    })
    this.#bytesIn = new Counter({ name: 'ecr_proxy_received_bytes_total', help: 'Bytes received from clients', labelNames: ['kind'], registers })
    this.#bytesOut = new Counter({ name: 'ecr_proxy_sent_bytes_total', help: 'Bytes sent to clients', labelNames: ['kind'], registers })
    this.#upstreamErrors = new Counter({
      name: 'ecr_proxy_upstream_errors_total',
      help: 'Failures talking to the registry: connect, timeout, tls, reset, token_rejected, other',
      labelNames: ['kind'],
      registers
    })
    this.#refreshes = new Counter({ name: 'ecr_proxy_token_refreshes_total', help: 'ECR token fetches by result', labelNames: ['result'], registers })
  }

  /** Token gauges read the refresher when scraped, so they are never stale. */
  watchCredentials (credentials: TokenRefresher, now: () => number = Date.now): void {
    credentials.onToken(() => this.#refreshes.inc({ result: 'success' }))
    credentials.onFailure(() => this.#refreshes.inc({ result: 'failure' }))
    const expiry = () => {
      const expiresAt = credentials.status().expiresAt
      return expiresAt === undefined ? undefined : Date.parse(expiresAt)
    }
    const gauge = (name: string, help: string, read: () => number | undefined) => {
      this.registry.registerMetric(new Gauge({
        name,
        help,
        registers: [],
        collect () {
          const value = read()
          if (value !== undefined) this.set(value)
        }
      }))
    }
    gauge('ecr_proxy_token_expiry_timestamp_seconds', 'When the current ECR token expires (Unix time)', () => {
      const at = expiry()
      return at === undefined ? undefined : at / 1000
    })
    gauge('ecr_proxy_token_seconds_until_expiry', 'Seconds until the current ECR token expires (negative once expired)', () => {
      const at = expiry()
      return at === undefined ? undefined : (at - now()) / 1000
    })
    gauge('ecr_proxy_token_ready', '1 while a valid ECR token is held', () => credentials.status().ready ? 1 : 0)
  }

  observeRequest (o: RequestObservation): void {
    const status = String(o.status)
    if (this.#repositoryLabel) {
      this.#requests.inc({ method: o.method, kind: o.kind, status, repository: o.repository ?? '' })
    } else {
      this.#requests.inc({ method: o.method, kind: o.kind, status })
    }
    this.#duration.observe({ method: o.method, kind: o.kind }, o.durationSeconds)
    if (o.bytesIn > 0) this.#bytesIn.inc({ kind: o.kind }, o.bytesIn)
    if (o.bytesOut > 0) this.#bytesOut.inc({ kind: o.kind }, o.bytesOut)
  }

  upstreamError (kind: UpstreamErrorKind): void {
    this.#upstreamErrors.inc({ kind })
  }
}
