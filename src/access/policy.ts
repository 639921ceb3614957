import picomatch from 'picomatch'
import type { RegistryErrorCode } from '../oci/errors.js'
import type { RegistryQuery, RegistryRequest } from '../oci/grammar.js'

export interface PolicyOptions {
  readOnly: boolean
  /** Repository globs (picomatch: `*` within a path segment, `**` across); empty: every repository. */
  allowRepositories: readonly string[]
  denyRepositories: readonly string[]
}

export interface Refusal {
  status: number
  code: RegistryErrorCode
  message: string
}

/**
 * Decides, before anything is sent upstream, whether a well-formed registry request may go.
 * `request.name` is the repository on the registry; `registryNames` are the registry's hostname
 * and alias, under which patterns may also name it (`<host>/team/*`, `prod/team/*`).
 */
export type AccessPolicy = (method: string, request: RegistryRequest, query: RegistryQuery, registryNames?: readonly string[]) => Refusal | undefined

const READ_METHODS = new Set(['GET', 'HEAD'])

function denied (message: string): Refusal {
  return { status: 403, code: 'DENIED', message }
}

export function repositoryMatcher (allow: readonly string[], deny: readonly string[]): (name: string, registryNames?: readonly string[]) => boolean {
  const options = { dot: true, nocase: false }
  const allowed = allow.length === 0 ? () => true : picomatch([...allow], options)
  const refused = deny.length === 0 ? () => false : picomatch([...deny], options)
  // Every name the repository goes by: bare, and under the registry's hostname and alias. A deny
  // pattern matching any of them wins over an allow pattern matching any.
  return (name, registryNames = []) => {
    const forms = [name, ...registryNames.map((registry) => `${registry}/${name}`)]
    return forms.some((form) => allowed(form)) && !forms.some((form) => refused(form))
  }
}

export function createPolicy (options: PolicyOptions): AccessPolicy {
  const patterns = options.allowRepositories.length > 0 || options.denyRepositories.length > 0
  const permitted = repositoryMatcher(options.allowRepositories, options.denyRepositories)

  return (method, request, query, registryNames = []) => {
    if (options.readOnly && (!READ_METHODS.has(method) || request.kind === 'upload')) {
      return denied(`this proxy is read-only: ${method} on ${request.kind === 'upload' ? 'blob uploads' : `a ${request.kind}`} is not allowed`)
    }
    if (!patterns) return undefined
    if (request.kind === 'catalog') {
      return denied('the catalog is not served while repository patterns are configured: it would list repositories outside them')
    }
    if (request.name !== undefined && !permitted(request.name, registryNames)) {
      return denied(`repository "${request.name}" is not allowed by this proxy's repository patterns`)
    }
    if (query.mount !== undefined) {
      // Without from= a registry may look for the blob in any repository, denied ones included.
      if (query.from === undefined) return denied('a cross-repository mount needs from= while repository patterns are configured')
      if (!permitted(query.from, registryNames)) {
        return denied(`mounting from repository "${query.from}" is not allowed by this proxy's repository patterns`)
      }
    }
    return undefined
  }
}
