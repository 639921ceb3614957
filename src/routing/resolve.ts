import type { RegistryRequest } from '../oci/grammar.js'
import { parseEcrHost } from './endpoint.js'
import { canonicalMirrorHost, DOCKER_HUB, looksLikeHost, mirroredName, type Mirror } from './mirrors.js'
import type { Registry } from './registry.js'

/** How the client named the registry: the order in which they are tried. */
export type Addressing = 'ns' | 'host' | 'alias' | 'default' | 'docker-hub'

/** Where one request goes: the registry, and the repository name there and as the client said it. */
export interface Target {
  registry: Registry
  /** The repository on the registry; undefined for ping and catalog. */
  upstreamName: string | undefined
  /** The repository as the client named it (Location, Link and listings go back under it). */
  clientName: string | undefined
  addressing?: Addressing
  /** Set when the name is a mirrored public registry's, served from a pull-through cache. */
  mirror?: Mirror
}

/** A request that reaches no configured registry: 404 NAME_UNKNOWN, nothing sent anywhere. */
export class NoRegistryError extends Error {
  override name = 'NoRegistryError'
}

const HOW = 'registries are addressed by containerd\'s ?ns=<registry host>, by the registry host or an alias as the first path component (localhost:5000/<host>/team/app), or bare for the default registry'

export interface RouterOptions {
  /** Serve any hostname of ECR's private-registry grammar: create its registry on first use. */
  anyEcrRegistry?: ((host: string) => Registry) | undefined
  /** Public registries served from pull-through caches of configured registries. */
  mirrors?: readonly Mirror[] | undefined
}

/**
 * Decides which configured registry a request goes to and under which name, in this order:
 * containerd's mirror parameter `ns=<host>`; the registry's hostname as the first path component;
 * an alias as the first path component; the default registry. A name that reaches none — and a
 * first component that looks like an ECR hostname but is not configured — is refused, never
 * taken for a repository of the default registry.
 */
export class Router {
  readonly #byHost = new Map<string, Registry>()
  readonly #byAlias = new Map<string, Registry>()
  readonly #registries: Registry[]
  readonly #default: Registry | undefined
  readonly #anyEcrRegistry: ((host: string) => Registry) | undefined
  readonly #mirrors = new Map<string, Mirror>()

  constructor (registries: readonly Registry[], options: RouterOptions = {}) {
    if (registries.length === 0) throw new Error('no registry configured')
    this.#registries = [...registries]
    for (const registry of registries) {
      if (registry.host !== undefined) this.#byHost.set(registry.host, registry)
      if (registry.alias !== undefined) this.#byAlias.set(registry.alias, registry)
    }
    // A lone registry is the default unless it says otherwise (`default: false`: with docker.io
    // mirrored, bare names are then Docker Hub names, as Docker's registry-mirrors sends them).
    const lone = registries.length === 1 ? registries[0] : undefined
    this.#default = registries.find((r) => r.isDefault) ?? (lone?.defaultRefused === true ? undefined : lone)
    this.#anyEcrRegistry = options.anyEcrRegistry
    for (const mirror of options.mirrors ?? []) this.#mirrors.set(canonicalMirrorHost(mirror.host), mirror)
  }

  /**
   * With no default registry, bare names that reach no registry are Docker Hub names when docker.io
   * is mirrored: Docker's `registry-mirrors` sends `/v2/library/nginx/…` and names no registry.
   */
  get dockerHubMirror (): Mirror | undefined {
    return this.#default === undefined ? this.#mirrors.get(DOCKER_HUB) : undefined
  }

  /** Only Docker Hub's mirror, for a listener that serves nothing else (--docker-hub-mirror-port). */
  resolveDockerHub (request: RegistryRequest): Target {
    const mirror = this.#mirrors.get(DOCKER_HUB)
    if (mirror === undefined) throw new NoRegistryError('docker.io is not mirrored by this proxy')
    // As on the main listener: a hostname first (Docker's rule) is never a Docker Hub repository.
    const first = request.name?.split('/')[0]
    if (first !== undefined && request.name?.includes('/') === true && looksLikeHost(first)) {
      throw new NoRegistryError(`"${request.name}" names a registry host; this port serves only Docker Hub names (library/nginx)`)
    }
    return mirrored(mirror, request.name, request.name, 'docker-hub')
  }

  /** The configured registries, and those created since for `anyEcrRegistry`. */
  get registries (): readonly Registry[] {
    return this.#registries
  }

  get defaultRegistry (): Registry | undefined {
    return this.#default
  }

  /** A registry by hostname or alias (e.g. `/readyz?registry=`). */
  find (hostOrAlias: string): Registry | undefined {
    const key = hostOrAlias.toLowerCase()
    return this.#registryByHost(key) ?? this.#byAlias.get(key) ?? this.#registries.find((r) => r.name === key)
  }

  /**
   * @param rawQuery the query after `?`, still percent-encoded.
   * @throws NoRegistryError
   */
  resolve (request: RegistryRequest, rawQuery: string): Target {
    const ns = namespaceOf(rawQuery)
    const name = request.name
    if (ns !== undefined) {
      const mirror = this.#registryByHost(ns) === undefined ? this.#mirrors.get(canonicalMirrorHost(ns)) : undefined
      if (mirror !== undefined) return mirrored(mirror, name, name, 'ns')
      const registry = this.#hostOrRefuse(ns, `?ns=${ns}`)
      return { registry, upstreamName: name, clientName: name, addressing: 'ns' }
    }
    if (name !== undefined) {
      const slash = name.indexOf('/')
      const first = slash === -1 ? undefined : name.slice(0, slash)
      if (first !== undefined) {
        const rest = name.slice(slash + 1)
        const byHost = this.#registryByHost(first) ?? (first.includes('.') && looksLikeEcrHost(first) ? this.#hostOrRefuse(first, first) : undefined)
        if (byHost !== undefined) return { registry: byHost, upstreamName: rest, clientName: name, addressing: 'host' }
        const mirror = this.#mirrors.get(canonicalMirrorHost(first))
        if (mirror !== undefined) return mirrored(mirror, rest, name, 'host')
        const byAlias = this.#byAlias.get(first)
        if (byAlias !== undefined) return { registry: byAlias, upstreamName: rest, clientName: name, addressing: 'alias' }
      }
    }
    if (this.#default !== undefined) return { registry: this.#default, upstreamName: name, clientName: name, addressing: 'default' }
    const hub = this.dockerHubMirror
    // A hostname first (Docker's rule) is never a Docker Hub repository: refused, not mirrored.
    if (hub !== undefined && name !== undefined && !looksLikeHost(name.split('/')[0] as string)) return mirrored(hub, name, name, 'docker-hub')
    throw new NoRegistryError(`${name === undefined ? 'this request' : `"${name}"`} names no configured registry: ${HOW}`)
  }

  /** The path on the registry for a path the client sent: `/v2/<clientName>/…` → `/v2/<upstreamName>/…`. */
  upstreamPath (target: Target, path: string): string {
    const { upstreamName, clientName } = target
    if (upstreamName === undefined || clientName === undefined || upstreamName === clientName) return path
    return `/v2/${upstreamName}/${path.slice(`/v2/${clientName}/`.length)}`
  }

  /**
   * The query for the registry: `ns` is the proxy's, not the registry's; a mount's `from=` is
   * named the way the registry knows it — and dropped, with `mount`, when it names another
   * registry (the registry then starts an ordinary upload, as the API allows).
   */
  upstreamQuery (target: Target, rawQuery: string): string {
    if (rawQuery === '') return ''
    const parts = rawQuery.split('&')
    if (!parts.some((part) => part.startsWith('ns=') || part.startsWith('from='))) return rawQuery
    const kept: string[] = []
    let crossRegistry = false
    for (const part of parts) {
      if (part.startsWith('ns=')) continue
      if (part.startsWith('from=')) {
        const from = this.fromOnRegistry(target, decodeURIComponent(part.slice(5).replace(/\+/g, ' ')))
        if (from === undefined) crossRegistry = true
        else kept.push(`from=${encodeURIComponent(from).replace(/%2F/g, '/')}`)
        continue
      }
      kept.push(part)
    }
    return (crossRegistry ? kept.filter((part) => !part.startsWith('mount=')) : kept).join('&')
  }

  /** The repository a mount's `from=` names on the target's registry; undefined if another registry. */
  fromOnRegistry (target: Target, from: string): string | undefined {
    if (target.addressing === 'ns') return from
    let resolved: Target
    try {
      resolved = this.resolve({ kind: 'blob', name: from }, '')
    } catch {
      return undefined
    }
    return resolved.registry === target.registry ? resolved.upstreamName : undefined
  }

  #registryByHost (host: string): Registry | undefined {
    return this.#byHost.get(host.toLowerCase())
  }

  #hostOrRefuse (host: string, said: string): Registry {
    const registry = this.#registryByHost(host)
    if (registry !== undefined) return registry
    const lower = host.toLowerCase()
    if (this.#anyEcrRegistry !== undefined && parseEcrHost(lower) !== undefined) {
      const created = this.#anyEcrRegistry(lower)
      this.#byHost.set(lower, created)
      this.#registries.push(created)
      return created
    }
    throw new NoRegistryError(`${said} is not a registry this proxy serves: ${HOW}`)
  }
}

function mirrored (mirror: Mirror, name: string | undefined, clientName: string | undefined, addressing: Addressing): Target {
  return { registry: mirror.registry, upstreamName: name === undefined ? undefined : mirroredName(mirror, name), clientName, addressing, mirror }
}

/** Loose enough to refuse look-alikes of ECR hostnames; exact matching is parseEcrHost's job. */
function looksLikeEcrHost (component: string): boolean {
  return /\.dkr[.-]ecr/.test(component) || parseEcrHost(component) !== undefined
}

/** containerd's mirror parameter `ns` (`:` may come as %3A), undefined when absent. */
export function namespaceOf (rawQuery: string): string | undefined {
  if (rawQuery === '' || !rawQuery.includes('ns=')) return undefined
  for (const part of rawQuery.split('&')) {
    if (!part.startsWith('ns=')) continue
    try {
      return decodeURIComponent(part.slice(3)).toLowerCase()
    } catch {
      return undefined
    }
  }
  return undefined
}
