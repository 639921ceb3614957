import type { Logger } from 'pino'
import { systemClock, type Clock } from './clock.js'
import { describeTokenError, type AuthorizationToken, type FetchToken } from './ecr-token.js'

export interface RefresherOptions {
  fetchToken: FetchToken
  log: Logger
  clock?: Clock
  /** Refresh when this fraction of the token's remaining life has passed. */
  refreshFraction?: number
  minRetryMs?: number
  maxRetryMs?: number
  /** Least time between refreshes forced by the registry rejecting a token. */
  rejectedIntervalMs?: number
  random?: () => number
}

export interface TokenStatus {
  ready: boolean
  expiresAt?: string
  refreshAt?: string
  error?: string
}

/** No usable token: the request is answered 503 UNAVAILABLE with this message. */
export class TokenUnavailableError extends Error {
  override name = 'TokenUnavailableError'
}

interface HeldToken extends AuthorizationToken {
  /** Treat the token as expired this long before `expiresAt`, for clock skew and transit. */
  marginMs: number
}

/**
 * Holds the current ECR token and fetches the next one in the background, well before expiry.
 * One fetch is in flight at a time; requests that arrive while there is no valid token wait for
 * that fetch instead of starting their own.
 */
export class TokenRefresher {
  readonly #fetchToken: FetchToken
  readonly #log: Logger
  readonly #clock: Clock
  readonly #refreshFraction: number
  readonly #minRetryMs: number
  readonly #maxRetryMs: number
  readonly #rejectedIntervalMs: number
  readonly #random: () => number

  #current: HeldToken | undefined
  #inflight: Promise<AuthorizationToken> | undefined
  #lastError: string | undefined
  #failures = 0
  #timer: unknown
  #refreshAt: number | undefined
  #lastForcedAt = Number.NEGATIVE_INFINITY
  #stopped = false
  #listeners: Array<(token: AuthorizationToken) => void> = []
  #failureListeners: Array<(message: string) => void> = []

  constructor (options: RefresherOptions) {
    this.#fetchToken = options.fetchToken
    this.#log = options.log
    this.#clock = options.clock ?? systemClock
    this.#refreshFraction = options.refreshFraction ?? 0.5
    this.#minRetryMs = options.minRetryMs ?? 1000
    this.#maxRetryMs = options.maxRetryMs ?? 60_000
    this.#rejectedIntervalMs = options.rejectedIntervalMs ?? 10_000
    this.#random = options.random ?? Math.random
  }

  /** Starts the first fetch; later ones schedule themselves. */
  start (): void {
    this.#stopped = false
    this.#refresh('startup').catch(() => {})
  }

  stop (): void {
    this.#stopped = true
    this.#clearTimer()
  }

  /** Called for every new token (the upstream may come from its proxyEndpoint). */
  onToken (listener: (token: AuthorizationToken) => void): void {
    this.#listeners.push(listener)
  }

  /** Called for every failed fetch, with the operator-facing reason. */
  onFailure (listener: (message: string) => void): void {
    this.#failureListeners.push(listener)
  }

  /** A token that is valid now, waiting for an in-flight fetch if there is none. */
  async get (): Promise<AuthorizationToken> {
    const current = this.#current
    if (current !== undefined && this.#isValid(current)) return current
    let next = this.#inflight
    // A scheduled refresh that is late (e.g. the host slept) is done now rather than failing.
    if (next === undefined && this.#lastError === undefined && !this.#stopped) next = this.#refresh('expired')
    if (next !== undefined) {
      try {
        return await next
      } catch {}
    }
    throw this.#unavailable()
  }

  #unavailable (): TokenUnavailableError {
    const reason = this.#lastError ?? 'the proxy is shutting down'
    const current = this.#current
    return new TokenUnavailableError(current === undefined
      ? `no ECR token: ${reason}`
      : `the ECR token expired at ${current.expiresAt.toISOString()} and no new one could be fetched: ${reason}`)
  }

  /**
   * The registry answered 401 or 403 DENIED to a request made with `rejectedToken`. Returns a
   * different token to replay with, or undefined when there is none: a refresh is forced at most
   * once per `rejectedIntervalMs`, so a principal without pull rights does not hammer the API.
   */
  async replacementFor (rejectedToken: string): Promise<AuthorizationToken | undefined> {
    const current = this.#current
    if (current !== undefined && current.token !== rejectedToken && this.#isValid(current)) return current
    let next: Promise<AuthorizationToken>
    if (this.#inflight !== undefined) {
      next = this.#inflight
    } else {
      const now = this.#clock.now()
      if (now - this.#lastForcedAt < this.#rejectedIntervalMs || this.#stopped) return undefined
      this.#lastForcedAt = now
      this.#log.warn('the registry rejected the ECR token; fetching a new one now')
      next = this.#refresh('rejected')
    }
    try {
      const token = await next
      return token.token === rejectedToken ? undefined : token
    } catch {
      return undefined
    }
  }

  status (): TokenStatus {
    const current = this.#current
    const ready = current !== undefined && this.#isValid(current)
    return {
      ready,
      ...(current === undefined ? {} : { expiresAt: current.expiresAt.toISOString() }),
      ...(this.#refreshAt === undefined ? {} : { refreshAt: new Date(this.#refreshAt).toISOString() }),
      ...(this.#lastError === undefined ? {} : { error: this.#lastError })
    }
  }

  #isValid (token: HeldToken): boolean {
    return token.expiresAt.getTime() - token.marginMs > this.#clock.now()
  }

  #refresh (reason: 'startup' | 'scheduled' | 'retry' | 'rejected' | 'expired'): Promise<AuthorizationToken> {
    if (this.#inflight !== undefined) return this.#inflight
    this.#clearTimer()
    const inflight = this.#fetchAndSchedule(reason).finally(() => {
      this.#inflight = undefined
    })
    this.#inflight = inflight
    return inflight
  }

  async #fetchAndSchedule (reason: string): Promise<AuthorizationToken> {
    const startedAt = this.#clock.now()
    let token: AuthorizationToken
    try {
      token = await this.#fetchToken()
      const lifetimeMs = token.expiresAt.getTime() - startedAt
      if (!(lifetimeMs > 0)) {
        throw new Error(`GetAuthorizationToken returned a token that expired at ${token.expiresAt.toISOString()}`)
      }
      const marginMs = Math.min(60_000, lifetimeMs * 0.05)
      this.#current = { ...token, marginMs }
    } catch (err) {
      this.#failures += 1
      this.#lastError = describeTokenError(err)
      const delay = this.#retryDelay()
      this.#schedule(delay, 'retry')
      // A fetch that ends after stop() (the proxy is closing or failed to start) says nothing more.
      if (!this.#stopped) {
        this.#log.error({
          reason,
          attempt: this.#failures,
          retryAt: new Date(this.#clock.now() + delay).toISOString(),
          tokenValidUntil: this.#current === undefined ? null : this.#current.expiresAt.toISOString()
        }, `ECR token refresh failed: ${this.#lastError}`)
      }
      for (const listener of this.#failureListeners) listener(this.#lastError)
      throw new TokenUnavailableError(this.#lastError)
    }
    this.#failures = 0
    this.#lastError = undefined
    const now = this.#clock.now()
    const delay = Math.max(0, (token.expiresAt.getTime() - now) * this.#refreshFraction)
    this.#schedule(delay, 'scheduled')
    this.#log.info({
      reason,
      expiresAt: token.expiresAt.toISOString(),
      refreshAt: new Date(now + delay).toISOString(),
      proxyEndpoint: token.proxyEndpoint
    }, 'ECR token refreshed')
    for (const listener of this.#listeners) listener(token)
    return token
  }

  /** Capped exponential backoff with equal jitter: half fixed, half random. */
  #retryDelay (): number {
    const ceiling = Math.min(this.#maxRetryMs, this.#minRetryMs * 2 ** (this.#failures - 1))
    return ceiling / 2 + (ceiling / 2) * this.#random()
  }

  #schedule (delayMs: number, reason: 'scheduled' | 'retry'): void {
    this.#clearTimer()
    if (this.#stopped) {
      this.#refreshAt = undefined
      return
    }
    this.#refreshAt = this.#clock.now() + delayMs
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined
      this.#refresh(reason).catch(() => {})
    }, delayMs)
  }

  #clearTimer (): void {
    if (this.#timer !== undefined) {
      this.#clock.clearTimeout(this.#timer)
      this.#timer = undefined
    }
  }
}
