/**
 * Classifies a `/v2/…` path into the registry operation it addresses (OCI distribution-spec
 * v1.1 §"Endpoints"). Repository names contain slashes, so the operation is recognised from
 * the end of the path.
 */
export type RouteKind = 'ping' | 'catalog' | 'manifest' | 'blob' | 'upload' | 'tags' | 'referrers'

export interface RegistryRequest {
  kind: RouteKind
  /** Repository name, e.g. `team/app`; absent for ping and catalog. */
  name?: string
  /** Tag or digest of a manifest. */
  reference?: string
  /** Digest of a blob, or the subject of a referrers query. */
  digest?: string
  /** Upload session id; empty string for the POST that starts an upload. */
  uploadId?: string
}

export type Classification =
  | { ok: true, request: RegistryRequest }
  | { ok: false, code: 'NAME_INVALID' | 'DIGEST_INVALID' | 'MANIFEST_INVALID' | 'BLOB_UPLOAD_INVALID' | 'NOT_FOUND', message: string }

const NAME_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/
const SHA256_HEX = /^[a-f0-9]{64}$/
const SHA512_HEX = /^[a-f0-9]{128}$/
const UPLOAD_ID = /^[A-Za-z0-9._~=-]{1,1024}$/
const MAX_NAME_LENGTH = 255

const TAIL = /^(.+)\/(manifests|blobs|referrers)\/([^/]+)$/
const UPLOAD_TAIL = /^(.+)\/blobs\/uploads\/([^/]*)$/
const TAGS_TAIL = /^(.+)\/tags\/list$/

export function isValidName (name: string): boolean {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) return false
  for (const component of name.split('/')) {
    if (!NAME_COMPONENT.test(component)) return false
  }
  return true
}

export function isValidTag (tag: string): boolean {
  return TAG.test(tag)
}

export function isValidDigest (digest: string): boolean {
  if (!DIGEST.test(digest)) return false
  const [algorithm, hex] = digest.split(':') as [string, string]
  if (algorithm === 'sha256') return SHA256_HEX.test(hex)
  if (algorithm === 'sha512') return SHA512_HEX.test(hex)
  return true
}

/**
 * @param path the request path after `/v2/`, without the query string, still percent-encoded.
 */
export function classify (path: string): Classification {
  if (path === '') return { ok: true, request: { kind: 'ping' } }
  if (path === '_catalog') return { ok: true, request: { kind: 'catalog' } }

  let match = UPLOAD_TAIL.exec(path)
  if (match !== null) {
    const [, name, uploadId] = match as unknown as [string, string, string]
    if (!isValidName(name)) return invalidName(name)
    if (uploadId !== '' && !UPLOAD_ID.test(uploadId)) {
      return { ok: false, code: 'BLOB_UPLOAD_INVALID', message: `invalid upload id "${printable(uploadId)}"` }
    }
    return { ok: true, request: { kind: 'upload', name, uploadId } }
  }

  match = TAGS_TAIL.exec(path)
  if (match !== null) {
    const name = match[1] as string
    if (!isValidName(name)) return invalidName(name)
    return { ok: true, request: { kind: 'tags', name } }
  }

  match = TAIL.exec(path)
  if (match !== null) {
    const [, name, operation, target] = match as unknown as [string, string, string, string]
    if (!isValidName(name)) return invalidName(name)
    if (operation === 'manifests') {
      if (isValidTag(target) || isValidDigest(target)) {
        return { ok: true, request: { kind: 'manifest', name, reference: target } }
      }
      return target.includes(':')
        ? { ok: false, code: 'DIGEST_INVALID', message: `invalid digest "${printable(target)}"` }
        : { ok: false, code: 'MANIFEST_INVALID', message: `invalid tag "${printable(target)}"` }
    }
    if (!isValidDigest(target)) {
      return { ok: false, code: 'DIGEST_INVALID', message: `invalid digest "${printable(target)}"` }
    }
    return { ok: true, request: { kind: operation === 'blobs' ? 'blob' : 'referrers', name, digest: target } }
  }

  return { ok: false, code: 'NOT_FOUND', message: 'not a registry API endpoint' }
}

function invalidName (name: string): Classification {
  return { ok: false, code: 'NAME_INVALID', message: `invalid repository name "${printable(name)}"` }
}

/** Keeps error messages one short, printable line whatever the client sent. */
export function printable (value: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = value.replace(/[\u0000-\u001f\u007f]/g, '?')
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean
}
