import type { CredentialKey } from '../credentials/pool.js'
import { regionOfRegistry } from './endpoint.js'

/** How a registry authorizes requests; ECR Basic is the one kind today. */
export type RegistryKind = 'ecr'

/**
 * One registry the proxy forwards to. Its origin is known from the configuration, except for a
 * registry configured by region alone: that is the caller's own account's registry, whose origin
 * GetAuthorizationToken names (proxyEndpoint). It is learnt once and never changes after.
 */
export class Registry {
  readonly kind: RegistryKind = 'ecr'
  readonly credential: CredentialKey
  /** A region for what the origin does not say (follow mode's S3 hosts for an explicit upstream). */
  readonly region: string | undefined
  #origin: string | undefined

  constructor (options: { origin?: string | undefined, credential: CredentialKey, region?: string | undefined }) {
    this.credential = options.credential
    this.region = options.region
    this.#origin = options.origin
  }

  /** `scheme://host[:port]`; undefined until learnt. */
  get origin (): string | undefined {
    return this.#origin
  }

  /** How logs, metrics and /readyz name the registry: its host, or `pending` before it is known. */
  get name (): string {
    return this.#origin === undefined ? 'pending' : new URL(this.#origin).host
  }

  /**
   * ECR hostnames answer blob GETs with a redirect to S3, so no blob bytes pass the registry
   * connection; any other origin (a local registry) may send the bytes itself.
   */
  get redirectsBlobs (): boolean {
    return this.#origin !== undefined && regionOfRegistry(this.#origin) !== undefined
  }

  /** Sets the origin GetAuthorizationToken named, the first time only; true if it was learnt now. */
  learnOrigin (origin: string): boolean {
    if (this.#origin !== undefined) return false
    this.#origin = origin
    return true
  }
}
