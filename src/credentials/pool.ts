import { createHash } from 'node:crypto'
import type { EcrIdentity } from './ecr-token.js'
import { TokenRefresher } from './refresher.js'

/**
 * Which credential a registry uses. ECR: one token per region and identity, valid for every
 * registry of that region the identity may read, so registries that share a key share a token.
 */
export interface CredentialKey {
  /** Stable, secret-free name for logs, metrics and /readyz, e.g. `ecr:us-east-2`. */
  readonly id: string
  readonly region?: string | undefined
  /** Who asks for the token; absent: the SDK's default credential chain. */
  readonly identity?: EcrIdentity | undefined
  /** ECR Public's Basic credential (ecr-public:GetAuthorizationToken) instead of a regional ECR token. */
  readonly kind?: 'ecr-public'
  /** ECR Public: never ask AWS, pull anonymously. */
  readonly anonymous?: boolean
}

/**
 * ECR Public's credential: one per identity, from us-east-1 — or none at all (`anonymous`), for
 * which the pool holds an empty token so that /readyz reports the registry ready.
 */
export function ecrPublicCredentialKey (anonymous: boolean, identity: EcrIdentity = {}): CredentialKey {
  if (anonymous) return { id: 'ecr-public:anonymous', region: 'us-east-1', kind: 'ecr-public', anonymous: true }
  const key = ecrCredentialKey('us-east-1', identity)
  return { ...key, id: key.id.replace(/^ecr:/, 'ecr-public:'), kind: 'ecr-public' }
}

/**
 * The key of an ECR token: its region and the identity asking. The external id is a shared
 * secret of sorts: it only changes the key through a short hash.
 */
export function ecrCredentialKey (region: string | undefined, identity: EcrIdentity = {}): CredentialKey {
  let id = `ecr:${region ?? 'default'}`
  if (identity.profile !== undefined) id += `/profile:${identity.profile}`
  if (identity.roleArn !== undefined) id += `/role:${identity.roleArn}`
  if (identity.externalId !== undefined) id += `#${createHash('sha256').update(identity.externalId).digest('hex').slice(0, 8)}`
  if (identity.roleSessionName !== undefined) id += `/session:${identity.roleSessionName}`
  const defined = Object.fromEntries(Object.entries(identity).filter(([, v]) => v !== undefined)) as EcrIdentity
  return { id, region, ...(Object.keys(defined).length === 0 ? {} : { identity: defined }) }
}

/**
 * The refreshers, one per credential, created on first use and started with the pool. Each keeps
 * its own background refresh; the pool only owns their lifetime.
 */
export class CredentialPool {
  readonly #create: (key: CredentialKey) => TokenRefresher
  readonly #refreshers = new Map<string, TokenRefresher>()
  readonly #created: Array<(id: string, refresher: TokenRefresher) => void> = []
  #started = false

  constructor (create: (key: CredentialKey) => TokenRefresher) {
    this.#create = create
  }

  get (key: CredentialKey): TokenRefresher {
    let refresher = this.#refreshers.get(key.id)
    if (refresher === undefined) {
      refresher = this.#create(key)
      this.#refreshers.set(key.id, refresher)
      for (const listener of this.#created) listener(key.id, refresher)
      if (this.#started) refresher.start()
    }
    return refresher
  }

  /** Called for every refresher created, now and later (metrics watch each one). */
  onCreated (listener: (id: string, refresher: TokenRefresher) => void): void {
    this.#created.push(listener)
    for (const [id, refresher] of this.#refreshers) listener(id, refresher)
  }

  entries (): IterableIterator<[string, TokenRefresher]> {
    return this.#refreshers.entries()
  }

  start (): void {
    this.#started = true
    for (const refresher of this.#refreshers.values()) refresher.start()
  }

  stop (): void {
    this.#started = false
    for (const refresher of this.#refreshers.values()) refresher.stop()
  }
}
