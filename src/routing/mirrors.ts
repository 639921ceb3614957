import type { RegistryRequest } from '../oci/grammar.js'
import type { Registry } from './registry.js'

/**
 * A public registry served from an ECR pull-through cache: requests naming `host` go to
 * `registry` as `/v2/<prefix>/<name>/…` (ECR's pull-through-cache URL form), and come back under
 * the name the client used.
 */
export interface Mirror {
  /** The public registry as clients name it, canonical (`docker.io`, never `registry-1.docker.io`). */
  host: string
  registry: Registry
  /** The pull-through-cache rule's repository prefix on the registry, e.g. `docker-hub`. */
  prefix: string
}

export const DOCKER_HUB = 'docker.io'

/**
 * Docker Hub goes by three hostnames: docker.io in image references, registry-1.docker.io for the
 * API and index.docker.io in old configurations (distribution/reference normalize.go).
 */
const DOCKER_HUB_HOSTS = new Set([DOCKER_HUB, 'registry-1.docker.io', 'index.docker.io'])

/** The hostname a mirror is keyed by: lower case, Docker Hub's names folded into `docker.io`. */
export function canonicalMirrorHost (host: string): string {
  const lower = host.toLowerCase()
  return DOCKER_HUB_HOSTS.has(lower) ? DOCKER_HUB : lower
}

/**
 * The repository on the registry for `name` on the mirrored host. Docker Hub's official images
 * live under `library/` (docker pull nginx → library/nginx), and ECR's pull-through cache wants
 * that component spelt out.
 */
export function mirroredName (mirror: Mirror, name: string): string {
  const path = mirror.host === DOCKER_HUB && !name.includes('/') ? `library/${name}` : name
  return `${mirror.prefix}/${path}`
}

/**
 * Docker's own rule for the first component of a reference: a hostname if it has a dot or a port,
 * or is `localhost` (distribution/reference splitDockerDomain). Such a name is never a Docker Hub
 * repository.
 */
export function looksLikeHost (component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost'
}

export interface MirrorRefusal {
  status: 403
  code: 'DENIED'
  message: string
}

/**
 * A pull-through cache only pulls: push, delete and uploads through a mirrored name are refused
 * before anything is sent (the registry would create a repository under the cache's prefix).
 */
export function pullOnlyRefusal (method: string, request: RegistryRequest, mirror: Mirror | undefined): MirrorRefusal | undefined {
  if (mirror === undefined) return undefined
  if ((method === 'GET' || method === 'HEAD') && request.kind !== 'upload') return undefined
  const what = request.kind === 'upload' ? 'blob uploads' : `${method} on a ${request.kind}`
  return { status: 403, code: 'DENIED', message: `${mirror.host} is served pull-only from a pull-through cache: ${what} is not allowed` }
}

/** What a warning says about a 403 from a pull-through cache. */
export interface PullThroughDenial {
  /** The permission ECR's message names, or the two a first pull needs when it names none. */
  permission: string
  message: string
}

const NAMED_PERMISSION = /not authorized to perform:? (ecr:[A-Za-z]+)/

/**
 * A 403 to a mirrored name: the first pull of an image through a cache rule imports it
 * (ecr:BatchImportUpstreamImage) and the first of a repository creates it
 * (ecr:CreateRepository) — permissions that plain pulls never needed, so this is the usual cause
 * (docs/mirrors.md). The body, when read, names the action ECR refused.
 */
export function pullThroughDenial (mirror: Mirror, body: Buffer | undefined): PullThroughDenial {
  const named = body === undefined ? undefined : NAMED_PERMISSION.exec(body.toString('utf8'))?.[1]
  const permission = named ?? 'ecr:BatchImportUpstreamImage or ecr:CreateRepository'
  return {
    permission,
    message: `the pull-through cache of ${mirror.registry.name} refused a ${mirror.host} pull under prefix ${mirror.prefix}: its identity likely lacks ${permission} (a first pull imports the image and may create the repository)`
  }
}
