import type { CredentialKey } from '../credentials/pool.js'
import { regionOfRegistry } from './endpoint.js'

/** How a registry authorizes requests: ECR's Basic token, or ECR Public's bearer token flow. */
export type RegistryKind = 'ecr' | 'ecr-public'

export interface RegistryOptions {
  /** The hostname clients name the registry by; undefined for the caller's own registry until learnt. */
  host?: string | undefined
  /** Where requests go: `https://<host>` unless an explicit upstream is configured. */
  origin?: string | undefined
  credential: CredentialKey
  /** A region for what the origin does not say (follow mode's S3 hosts for an explicit upstream). */
  region?: string | undefined
  alias?: string | undefined
  /**
   * Bare names (no hostname or alias in front) go here. Left unset, a lone registry still takes
   * them (the Router's rule); `false` says it must not (`default: false` in the config).
   */
  isDefault?: boolean
  kind?: RegistryKind
}

/**
 * One registry the proxy forwards to. Its origin is known from the configuration, except for a
 * registry configured by region alone: that is the caller's own account's registry, whose origin
 * GetAuthorizationToken names (proxyEndpoint). It is learnt once and never changes after.
 */
export class Registry {
  readonly kind: RegistryKind
  readonly credential: CredentialKey
  readonly region: string | undefined
  readonly alias: string | undefined
  readonly isDefault: boolean
  /** `isDefault: false` was said explicitly: not the default even when alone. */
  readonly defaultRefused: boolean
  #host: string | undefined
  #origin: string | undefined
  #originHost: string | undefined
  #policyNames: readonly string[] | undefined

  constructor (options: RegistryOptions) {
    this.kind = options.kind ?? 'ecr'
    this.credential = options.credential
    this.region = options.region
    this.alias = options.alias
    this.isDefault = options.isDefault ?? false
    this.defaultRefused = options.isDefault === false
    this.#origin = options.origin
    this.#host = options.host
  }

  /** `scheme://host[:port]`; undefined until learnt. */
  get origin (): string | undefined {
    return this.#origin
  }

  /** The hostname clients use for it (host-in-path, `ns=`); undefined until known. */
  get host (): string | undefined {
    return this.#host
  }

  /**
   * How logs, metrics and /readyz name the registry: its hostname, else its origin's host, or
   * `pending` before either is known.
   */
  get name (): string {
    if (this.#host !== undefined) return this.#host
    // Read on every request (access log, metrics): the origin's host is parsed once.
    if (this.#origin !== undefined) this.#originHost ??= new URL(this.#origin).host
    return this.#originHost ?? 'pending'
  }

  /**
   * ECR hostnames answer blob GETs with a redirect to S3, so no blob bytes pass the registry
   * connection; any other origin (a local registry) may send the bytes itself.
   */
  get redirectsBlobs (): boolean {
    // ECR Public redirects blob GETs to CloudFront.
    return this.#origin !== undefined && (regionOfRegistry(this.#origin) !== undefined || this.#origin === 'https://public.ecr.aws')
  }

  /** The names policy patterns may put in front of a repository: its hostname and alias. */
  get policyNames (): readonly string[] {
    this.#policyNames ??= [this.#host, this.alias].filter((name): name is string => name !== undefined)
    return this.#policyNames
  }

  /** Sets the origin GetAuthorizationToken named, the first time only; true if it was learnt now. */
  learnOrigin (origin: string): boolean {
    if (this.#origin !== undefined) return false
    this.#origin = origin
    this.#host ??= new URL(origin).hostname
    this.#policyNames = undefined
    return true
  }
}
