import { TokenRefresher } from './refresher.js'

/**
 * Which credential a registry uses. ECR: one token per region and identity, valid for every
 * registry of that region the identity may read, so registries that share a key share a token.
 */
export interface CredentialKey {
  /** Stable, secret-free name for logs, metrics and /readyz, e.g. `ecr:us-east-2`. */
  readonly id: string
  readonly region?: string | undefined
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
