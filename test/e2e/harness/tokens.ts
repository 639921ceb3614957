import type { IssuedToken, TokenAuthority } from '../../helpers/token-authority.js'
import { BCRYPT_KEY_BYTES, type Htpasswd } from './registry.js'

export interface TokenEvent { at: number, kind: 'issued' | 'expired' | 'revoked', token: IssuedToken }

/**
 * Makes the real registry enforce what the stand-in ECR API hands out: every token the
 * authority issues is written into the registry's htpasswd (before the API answers, so it
 * works as soon as the proxy holds it), and removed when it expires or is revoked.
 */
export class TokenLedger {
  readonly events: TokenEvent[] = []
  readonly #htpasswd: Htpasswd
  readonly #authority: TokenAuthority
  readonly #timers = new Map<string, NodeJS.Timeout>()
  readonly #live = new Map<string, IssuedToken>()

  constructor (authority: TokenAuthority, htpasswd: Htpasswd) {
    this.#authority = authority
    this.#htpasswd = htpasswd
    authority.onIssue = (token) => this.#admit(token)
  }

  #admit (token: IssuedToken): void {
    const key = token.password.slice(0, BCRYPT_KEY_BYTES)
    for (const other of this.#live.values()) {
      // bcrypt could not tell them apart, so revoking one would not revoke it at the registry.
      if (other.password.slice(0, BCRYPT_KEY_BYTES) === key) throw new Error('two live tokens share their first 72 bytes')
    }
    this.#live.set(token.authorizationToken, token)
    this.#htpasswd.set(token.authorizationToken, 'AWS', token.password, token.issuedAt)
    this.events.push({ at: Date.now(), kind: 'issued', token })
    const timer = setTimeout(() => this.#remove(token, 'expired'), Math.max(0, token.expiresAt - Date.now()))
    timer.unref()
    this.#timers.set(token.authorizationToken, timer)
  }

  #remove (token: IssuedToken, kind: 'expired' | 'revoked'): void {
    clearTimeout(this.#timers.get(token.authorizationToken))
    this.#timers.delete(token.authorizationToken)
    if (!this.#live.delete(token.authorizationToken)) return
    this.#htpasswd.delete(token.authorizationToken)
    this.events.push({ at: Date.now(), kind, token })
  }

  /** Revokes early: the authority forgets it and the registry stops accepting it at once. */
  revoke (token: IssuedToken): void {
    this.#authority.revoke(token.authorizationToken)
    this.#remove(token, 'revoked')
  }

  /** The token the registry accepts now (the newest live one), if any. */
  current (): IssuedToken | undefined {
    let newest: IssuedToken | undefined
    for (const token of this.#live.values()) if (newest === undefined || token.issuedAt >= newest.issuedAt) newest = token
    return newest
  }

  get issued (): readonly IssuedToken[] {
    return this.#authority.issued
  }

  close (): void {
    for (const timer of this.#timers.values()) clearTimeout(timer)
    this.#timers.clear()
  }
}
