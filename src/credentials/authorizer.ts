import type { AuthorizationToken } from './ecr-token.js'
import type { CredentialKey, CredentialPool } from './pool.js'

/** The Authorization header one request was sent with, and the secret it was made from. */
export interface Authorization {
  header: string
  /** The token inside the header: identifies the credential a rejection is about. Never logged. */
  token: string
}

/** The parts of a 401/403 answer an authorizer reads. */
export interface Challenge {
  status: number
  method: string
  headers: Readonly<Record<string, string | string[] | undefined>>
  /** The body when it was small enough to read whole; undefined otherwise. */
  body: Buffer | undefined
}

export type ChallengeOutcome =
  /** Not about the credential (e.g. a permission denial): the client gets the answer as it is. */
  | { rejected: false }
  /** The credential was rejected; `replacement` is the one to use from now on, if there is one. */
  | { rejected: true, replacement?: Authorization }

/** What a request is for: token flows scope their tokens by registry and repository. */
export interface AuthorizeContext {
  /** The registry's origin, once known. */
  origin?: string | undefined
  /** The repository on the registry; undefined for ping and catalog. */
  repository?: string | undefined
}

/** How requests to one kind of registry are authorized, and what a rejection means there. */
export interface Authorizer {
  /**
   * Throws TokenUnavailableError when no credential can be had. An empty `header` sends the
   * request without Authorization.
   */
  authorize: (credential: CredentialKey, context?: AuthorizeContext) => Promise<Authorization>
  onChallenge: (credential: CredentialKey, used: Authorization, challenge: Challenge, context?: AuthorizeContext) => Promise<ChallengeOutcome>
  /** The statuses that may be about the credential; default 401 and 403. */
  challengeStatuses?: () => readonly number[]
}

/** ECR: `Authorization: Basic <token>` with the token of GetAuthorizationToken. */
export class EcrBasicAuthorizer implements Authorizer {
  readonly #pool: CredentialPool
  /**
   * One header per token, not one per request: an ECR token is ~4.7 KB, and a fresh copy for each
   * request in flight was the largest thing on the heap under 512 clients (docs/performance.md,
   * finding 9).
   */
  readonly #headers = new WeakMap<AuthorizationToken, Authorization>()

  constructor (pool: CredentialPool) {
    this.#pool = pool
  }

  async authorize (credential: CredentialKey): Promise<Authorization> {
    return this.#authorization(await this.#pool.get(credential).get())
  }

  #authorization (issued: AuthorizationToken): Authorization {
    let authorization = this.#headers.get(issued)
    if (authorization === undefined) {
      authorization = Object.freeze({ header: `Basic ${issued.token}`, token: issued.token })
      this.#headers.set(issued, authorization)
    }
    return authorization
  }

  /**
   * ECR answers 401 to a token it does not know and 403 DENIED to an expired one ("Your
   * authorization token has expired"); either way the token is replaced now (rate-limited by the
   * refresher). A 403 DENIED that says the principal "is not authorized to perform" an action is a
   * permission denial on that repository: the token is fine — and shared by other registries of
   * the region — so it is left alone. A HEAD answer has no body: any 403 to a HEAD may be an
   * expired token.
   */
  async onChallenge (credential: CredentialKey, used: Authorization, challenge: Challenge): Promise<ChallengeOutcome> {
    const rejected = challenge.status === 401 ||
      (challenge.status === 403 && (challenge.method === 'HEAD' || (challenge.body !== undefined && isTokenDenial(challenge.body))))
    if (!rejected) return { rejected: false }
    const replacement = await this.#pool.get(credential).replacementFor(used.token)
    return replacement === undefined ? { rejected: true } : { rejected: true, replacement: this.#authorization(replacement) }
  }
}

const PERMISSION_DENIAL = /not authorized to perform|explicit deny|no identity-based policy allows|no resource-based policy allows/i

/** A DENIED error about the token, not about what the principal may do. */
function isTokenDenial (body: Buffer): boolean {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown, message?: unknown }> }
    return Array.isArray(parsed.errors) && parsed.errors.some((e) => e.code === 'DENIED' && !PERMISSION_DENIAL.test(String(e.message ?? '')))
  } catch {
    return false
  }
}
