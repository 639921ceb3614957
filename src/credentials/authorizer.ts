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

/** How requests to one kind of registry are authorized, and what a rejection means there. */
export interface Authorizer {
  /** Throws TokenUnavailableError when no credential can be had. */
  authorize: (credential: CredentialKey) => Promise<Authorization>
  onChallenge: (credential: CredentialKey, used: Authorization, challenge: Challenge) => Promise<ChallengeOutcome>
}

/** ECR: `Authorization: Basic <token>` with the token of GetAuthorizationToken. */
export class EcrBasicAuthorizer implements Authorizer {
  readonly #pool: CredentialPool

  constructor (pool: CredentialPool) {
    this.#pool = pool
  }

  async authorize (credential: CredentialKey): Promise<Authorization> {
    const { token } = await this.#pool.get(credential).get()
    return { header: `Basic ${token}`, token }
  }

  /**
   * ECR answers 401 to a token it does not know and 403 DENIED to an expired one. Either way the
   * token is replaced now (rate-limited by the refresher). A HEAD answer has no body to carry the
   * DENIED code: any 403 to a HEAD may be an expired token.
   */
  async onChallenge (credential: CredentialKey, used: Authorization, challenge: Challenge): Promise<ChallengeOutcome> {
    const rejected = challenge.status === 401 ||
      (challenge.status === 403 && (challenge.method === 'HEAD' || (challenge.body !== undefined && isDenied(challenge.body))))
    if (!rejected) return { rejected: false }
    const replacement = await this.#pool.get(credential).replacementFor(used.token)
    return replacement === undefined ? { rejected: true } : { rejected: true, replacement: { header: `Basic ${replacement.token}`, token: replacement.token } }
  }
}

function isDenied (body: Buffer): boolean {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown }> }
    return Array.isArray(parsed.errors) && parsed.errors.some((e) => e.code === 'DENIED')
  } catch {
    return false
  }
}
