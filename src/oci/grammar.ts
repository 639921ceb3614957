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
    if (uploadId !== '' && (!UPLOAD_ID.test(uploadId) || uploadId === '.' || uploadId === '..')) {
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

/** The query parameters the proxy checks (and the policy reads), decoded. */
export interface RegistryQuery {
  /** `?digest=` of a monolithic POST or of the PUT that completes an upload. */
  digest?: string
  /** `?mount=<digest>&from=<repository>` of a cross-repository mount. */
  mount?: string
  from?: string
}

export type RequestCheck =
  | { ok: true, query: RegistryQuery }
  | { ok: false, status: 400 | 405, code: 'NAME_INVALID' | 'DIGEST_INVALID' | 'UNSUPPORTED', message: string, allow?: string }

const METHODS: Record<Exclude<RouteKind, 'upload'>, readonly string[]> = {
  ping: ['GET', 'HEAD'],
  catalog: ['GET', 'HEAD'],
  manifest: ['GET', 'HEAD', 'PUT', 'DELETE'],
  blob: ['GET', 'HEAD', 'DELETE'],
  tags: ['GET', 'HEAD'],
  referrers: ['GET', 'HEAD']
}
const UPLOAD_START_METHODS = ['POST']
const UPLOAD_METHODS = ['GET', 'PATCH', 'PUT', 'DELETE']
/** Parameters that may appear once at most: two copies could be read differently here and upstream. */
const SINGLE_PARAMETERS = new Set(['digest', 'mount', 'from', 'n', 'last', 'ns'])
const PAGE_SIZE = /^[0-9]{1,6}$/
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/

/** The methods the registry API defines for a route. */
export function allowedMethods (request: RegistryRequest): readonly string[] {
  if (request.kind === 'upload') return request.uploadId === '' ? UPLOAD_START_METHODS : UPLOAD_METHODS
  return METHODS[request.kind]
}

/**
 * Checks the method and the query of a classified request against the API: the method must be
 * one the route defines; `digest=`, `mount=` and `from=` only where the API uses them and then
 * well-formed; no parameter the proxy reads may come twice; nothing decodes to a control character.
 * Other parameters (`_state`, …) pass to the registry untouched; `ns` (containerd's mirror
 * parameter) is read by the router and not forwarded.
 *
 * @param rawQuery the query string after `?`, still percent-encoded.
 */
export function checkRequest (method: string, request: RegistryRequest, rawQuery: string): RequestCheck {
  const allow = allowedMethods(request)
  if (!allow.includes(method)) {
    return { ok: false, status: 405, code: 'UNSUPPORTED', message: `method ${method} is not part of the registry API for this endpoint`, allow: allow.join(', ') }
  }
  const params = new Map<string, string>()
  for (const part of rawQuery === '' ? [] : rawQuery.split('&')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    const key = decodeQueryPart(eq === -1 ? part : part.slice(0, eq))
    const value = decodeQueryPart(eq === -1 ? '' : part.slice(eq + 1))
    if (key === undefined || value === undefined) return badQuery('the query holds malformed percent-encoding')
    if (CONTROL.test(key) || CONTROL.test(value)) return badQuery('the query holds control characters')
    if (SINGLE_PARAMETERS.has(key)) {
      if (params.has(key)) return badQuery(`query parameter "${key}" is given more than once`)
      params.set(key, value)
    }
  }

  const query: RegistryQuery = {}
  const digest = params.get('digest')
  const mount = params.get('mount')
  const from = params.get('from')
  const uploadStart = request.kind === 'upload' && request.uploadId === ''
  const uploadEnd = request.kind === 'upload' && request.uploadId !== '' && method === 'PUT'

  if (digest !== undefined) {
    if (!uploadStart && !uploadEnd) return badQuery('query parameter "digest" belongs to POST …/blobs/uploads/ and the PUT that completes an upload')
    if (!isValidDigest(digest)) return { ok: false, status: 400, code: 'DIGEST_INVALID', message: `invalid digest "${printable(digest)}"` }
    query.digest = digest
  } else if (uploadEnd) {
    return { ok: false, status: 400, code: 'DIGEST_INVALID', message: 'completing an upload needs ?digest=' }
  }
  if (mount !== undefined || from !== undefined) {
    if (!uploadStart) return badQuery('query parameters "mount" and "from" belong to POST …/blobs/uploads/')
    if (mount === undefined) return badQuery('query parameter "from" needs "mount"')
    if (digest !== undefined) return badQuery('a request is either a mount or a monolithic upload, not both')
    if (!isValidDigest(mount)) return { ok: false, status: 400, code: 'DIGEST_INVALID', message: `invalid digest "${printable(mount)}"` }
    query.mount = mount
    if (from !== undefined) {
      if (!isValidName(from)) return { ok: false, status: 400, code: 'NAME_INVALID', message: `invalid repository name "${printable(from)}"` }
      query.from = from
    }
  }
  const n = params.get('n')
  if (n !== undefined && !PAGE_SIZE.test(n)) return badQuery(`query parameter "n" must be a number, got "${printable(n)}"`)
  return { ok: true, query }
}

function badQuery (message: string): RequestCheck {
  return { ok: false, status: 400, code: 'UNSUPPORTED', message }
}

/** application/x-www-form-urlencoded decoding, as registries read queries; undefined if malformed. */
function decodeQueryPart (part: string): string | undefined {
  try {
    return decodeURIComponent(part.replace(/\+/g, ' '))
  } catch {
    return undefined
  }
}
