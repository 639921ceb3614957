import type { RegistryRequest } from '../oci/grammar.js'
import type { Registry } from './registry.js'

/** Where one request goes: the registry, and the repository name there and as the client said it. */
export interface Target {
  registry: Registry
  /** The repository on the registry; undefined for ping and catalog. */
  upstreamName: string | undefined
  /** The repository as the client named it (Location, Link and listings go back under it). */
  clientName: string | undefined
}

/** A request that reaches no configured registry: 404 NAME_UNKNOWN, nothing sent anywhere. */
export class NoRegistryError extends Error {
  override name = 'NoRegistryError'
}

/**
 * Decides which configured registry a request goes to and under which name. One registry today,
 * reached by every name; several registries, aliases and mirror prefixes plug in here.
 *
 * @param rawQuery the query after `?`, still percent-encoded (containerd's `ns=` will be read here).
 */
export class Router {
  readonly registries: readonly Registry[]

  constructor (registries: readonly Registry[]) {
    if (registries.length === 0) throw new Error('no registry configured')
    this.registries = registries
  }

  resolve (request: RegistryRequest, _rawQuery: string): Target {
    const registry = this.registries[0] as Registry
    return { registry, upstreamName: request.name, clientName: request.name }
  }

  /** The path on the registry for a path the client sent: `/v2/<clientName>/…` → `/v2/<upstreamName>/…`. */
  upstreamPath (target: Target, path: string): string {
    const { upstreamName, clientName } = target
    if (upstreamName === undefined || clientName === undefined || upstreamName === clientName) return path
    return `/v2/${upstreamName}/${path.slice(`/v2/${clientName}/`.length)}`
  }
}
