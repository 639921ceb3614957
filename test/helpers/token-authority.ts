import { randomBytes } from 'node:crypto'

export interface IssuedToken {
  password: string
  authorizationToken: string
  issuedAt: number
  expiresAt: number
}

export type TokenCheck = 'ok' | 'missing' | 'invalid' | 'expired' | 'revoked'

export interface TokenAuthorityOptions {
  lifetimeMs?: number
  now?: () => number
}

const TWELVE_HOURS_MS = 12 * 60 * 60 * 1000
// 2625 random bytes → 3500 base64url chars; base64('AWS:' + that) is ~4.7 KB, the size
// of real ECR tokens (an nginx proxy with a 4 KB header line buffer broke on them).
const PASSWORD_BYTES = 2625

/**
 * Issues and checks ECR-style registry tokens: what GetAuthorizationToken hands out and
 * what the registry endpoint accepts as `Authorization: Basic <authorizationToken>`.
 */
export class TokenAuthority {
  lifetimeMs: number
  readonly now: () => number
  readonly issued: IssuedToken[] = []
  onIssue?: (token: IssuedToken) => void
  readonly #byToken = new Map<string, IssuedToken>()
  readonly #revoked = new Set<string>()

  constructor (opts: TokenAuthorityOptions = {}) {
    this.lifetimeMs = opts.lifetimeMs ?? TWELVE_HOURS_MS
    this.now = opts.now ?? Date.now
  }

  issue (): IssuedToken {
    const password = randomBytes(PASSWORD_BYTES).toString('base64url')
    const issuedAt = this.now()
    const token: IssuedToken = {
      password,
      authorizationToken: Buffer.from(`AWS:${password}`).toString('base64'),
      issuedAt,
      expiresAt: issuedAt + this.lifetimeMs,
    }
    this.issued.push(token)
    this.#byToken.set(token.authorizationToken, token)
    this.onIssue?.(token)
    return token
  }

  revoke (authorizationToken: string): void {
    this.#revoked.add(authorizationToken)
  }

  check (authorizationHeader: string | undefined): TokenCheck {
    if (authorizationHeader === undefined || authorizationHeader.trim() === '') return 'missing'
    const match = /^Basic +(\S+)\s*$/i.exec(authorizationHeader)
    if (match === null) return 'invalid'
    const token = this.#byToken.get(match[1] as string)
    if (token === undefined) return 'invalid'
    if (this.#revoked.has(token.authorizationToken)) return 'revoked'
    if (this.now() >= token.expiresAt) return 'expired'
    return 'ok'
  }
}
