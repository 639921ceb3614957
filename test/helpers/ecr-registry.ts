import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline, Transform, type Readable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { isDigest, sha256Digest, syntheticBytes } from './digest.js'
import { closeServer, listen } from './listen.js'
import { PageTokens } from './page-token.js'
import { RegistryStore, type Repository, type StoredManifest, type Upload } from './registry-store.js'
import { startS3, type S3StandIn } from './s3.js'
import type { TokenAuthority } from './token-authority.js'

export interface RecordedRequest { method: string, url: string, headers: IncomingHttpHeaders, bodyBytes: number }

export interface EcrRegistry {
  url: string
  publicOrigin: string
  authority: TokenAuthority
  s3: S3StandIn
  requests: RecordedRequest[]
  dir: string
  putBlob (repo: string, data: Buffer): string
  /** Streams `size` bytes of syntheticBytes(size, seed) to disk (same seed, same bytes and digest). */
  putSyntheticBlob (repo: string, size: number, seed?: string): Promise<string>
  putManifest (repo: string, reference: string, body: Buffer, mediaType: string): string
  /** Resolves once every request received so far has had its body read to the end (or lost). */
  settled (): Promise<void>
  close (): Promise<void>
}

export interface EcrRegistryOptions {
  authority: TokenAuthority
  publicOrigin?: string
  /** ECR's BLOB_MOUNTING account setting; off by default, as on ECR. */
  blobMounting?: boolean
  /** Smallest upload part accepted before another part (ECR: 5 MiB). */
  minChunkBytes?: number
  /** Keep PATCH's Range stuck at the first part's end, as ECR has been seen to do. */
  staleUploadRange?: boolean
  registryId?: string
  host?: string
  port?: number
}

const MEDIA_TYPES = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
}
const IMAGE_MANIFEST_TYPES = new Set([MEDIA_TYPES.dockerManifest, MEDIA_TYPES.ociManifest])
const INDEX_TYPES = new Set([MEDIA_TYPES.dockerList, MEDIA_TYPES.ociIndex])
const NAME_PATTERN = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/
const TAG_PATTERN = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/
const MANIFEST_MAX_BYTES = 4 * 1024 * 1024
const FIVE_MIB = 5 * 1024 * 1024
// ECR pages tags/list at 100 when no n is given and rejects n > 1000 (maxResults of its
// ListImages API): seen by reg (genuinetools/reg#206) and crane (go-containerregistry#681).
const DEFAULT_PAGE_SIZE = 100
const MAX_PAGE_SIZE = 1000
const JSON_UTF8 = 'application/json; charset=utf-8'

type Headers = Record<string, string | number>

class RegistryError extends Error {
  constructor (readonly status: number, readonly code: string, message: string, readonly detail?: unknown, readonly headers: Headers = {}) {
    super(message)
  }
}

type Route =
  | { kind: 'ping' }
  | { kind: 'catalog' }
  | { kind: 'manifest', name: string, reference: string }
  | { kind: 'blob', name: string, digest: string }
  | { kind: 'uploads', name: string }
  | { kind: 'upload', name: string, id: string }
  | { kind: 'tags', name: string }
  | { kind: 'referrers', name: string, digest: string }
  | { kind: 'unknown' }

const ROUTES: Array<[RegExp, (m: string[]) => Route]> = [
  [/^\/v2\/?$/, () => ({ kind: 'ping' })],
  [/^\/v2\/_catalog$/, () => ({ kind: 'catalog' })],
  [/^\/v2\/(.+)\/manifests\/([^/]+)$/, (m) => ({ kind: 'manifest', name: m[1] as string, reference: m[2] as string })],
  [/^\/v2\/(.+)\/blobs\/uploads\/?$/, (m) => ({ kind: 'uploads', name: m[1] as string })],
  [/^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, (m) => ({ kind: 'upload', name: m[1] as string, id: m[2] as string })],
  [/^\/v2\/(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: 'blob', name: m[1] as string, digest: m[2] as string })],
  [/^\/v2\/(.+)\/tags\/list$/, (m) => ({ kind: 'tags', name: m[1] as string })],
  [/^\/v2\/(.+)\/referrers\/([^/]+)$/, (m) => ({ kind: 'referrers', name: m[1] as string, digest: m[2] as string })],
]

function classify (pathname: string): Route {
  for (const [pattern, build] of ROUTES) {
    const match = pattern.exec(pathname)
    if (match !== null) return build(match.map((part) => safeDecode(part)))
  }
  return { kind: 'unknown' }
}

function safeDecode (part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    return part
  }
}

/** One request as the handlers see it: the body comes through a counter that feeds `record.bodyBytes`. */
interface Exchange { req: IncomingMessage, res: ServerResponse, url: URL, body: Readable, record: RecordedRequest }

function countedBody (req: IncomingMessage, record: RecordedRequest): Readable {
  const counter = new Transform({
    transform (chunk: Buffer, _encoding, callback) {
      record.bodyBytes += chunk.length
      callback(null, chunk)
    },
  })
  pipeline(req, counter, () => {})
  return counter
}

function reply (ex: Exchange, status: number, headers: Headers, body: string | Buffer = ''): void {
  ex.res.writeHead(status, {
    'docker-distribution-api-version': 'registry/2.0',
    'content-length': Buffer.byteLength(body),
    ...headers,
  })
  ex.res.end(ex.req.method === 'HEAD' ? undefined : body)
}

function replyError (ex: Exchange, error: RegistryError): void {
  const entry: Record<string, unknown> = { code: error.code, message: error.message }
  if (error.detail !== undefined) entry.detail = error.detail
  reply(ex, error.status, { 'content-type': JSON_UTF8, ...error.headers }, JSON.stringify({ errors: [entry] }))
}

const unsupported = (): RegistryError => new RegistryError(405, 'UNSUPPORTED', 'The operation is unsupported.')

/** The page size ECR would use, or the error it answers for an `n` outside 1..1000. */
function pageSize (n: string | null): number {
  if (n === null) return DEFAULT_PAGE_SIZE
  const value = Number(n)
  if (!Number.isInteger(value) || value < 1) {
    throw new RegistryError(400, 'UNSUPPORTED', "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value greater than or equal to 1'")
  }
  if (value > MAX_PAGE_SIZE) {
    throw new RegistryError(400, 'UNSUPPORTED', "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value less than or equal to 1000'")
  }
  return value
}

function parseManifest (body: Buffer, mediaType: string): Record<string, unknown> {
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    throw new RegistryError(400, 'MANIFEST_INVALID', 'manifest invalid', 'the manifest is not valid JSON')
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || (parsed as { schemaVersion?: unknown }).schemaVersion !== 2) {
    throw new RegistryError(400, 'MANIFEST_INVALID', 'manifest invalid', 'schemaVersion must be 2')
  }
  const declared = (parsed as { mediaType?: unknown }).mediaType
  if (declared !== undefined && declared !== mediaType) {
    throw new RegistryError(400, 'MANIFEST_INVALID', 'manifest invalid', `mediaType ${String(declared)} does not match Content-Type ${mediaType}`)
  }
  return parsed as Record<string, unknown>
}

function descriptorDigests (value: unknown): string[] {
  if (!Array.isArray(value)) return []
  return value.map((entry: { digest?: unknown }) => String(entry?.digest))
}

/**
 * A registry endpoint that behaves like ECR's (`<acct>.dkr.ecr.<region>.amazonaws.com`):
 * Basic token auth, 307 blob downloads to an S3 stand-in, absolute Locations and Links,
 * 201 on PATCH, 5 MiB parts, opaque tag-page tokens. Every request is recorded as received.
 */
export async function startEcrRegistry (opts: EcrRegistryOptions): Promise<EcrRegistry> {
  const { authority } = opts
  const registryId = opts.registryId ?? '600423610423'
  const minChunkBytes = opts.minChunkBytes ?? FIVE_MIB
  const dir = await mkdtemp(join(tmpdir(), 'ecr-registry-'))
  const store = new RegistryStore(dir)
  await store.init()
  const pageTokens = new PageTokens()
  const requests: RecordedRequest[] = []
  const bodiesInFlight = new Set<Promise<void>>()
  const s3 = await startS3({
    now: authority.now,
    readBlob: (key) => {
      const blob = store.blobs.get(key)
      return blob === undefined ? undefined : { size: blob.size, open: (start, end) => store.openBlob(key, start, end) }
    },
  })
  let publicOrigin = ''

  const nameUnknown = (name: string): RegistryError =>
    new RegistryError(404, 'NAME_UNKNOWN', `The repository with name '${name}' does not exist in the registry with id '${registryId}'`)

  function existingRepo (name: string): Repository {
    const repo = store.repos.get(name)
    if (repo === undefined) throw nameUnknown(name)
    return repo
  }

  function authenticate (ex: Exchange): boolean {
    const check = authority.check(ex.req.headers.authorization)
    if (check === 'missing' || check === 'invalid') {
      reply(ex, 401, {
        'www-authenticate': `Basic realm="${publicOrigin}/",service="ecr.amazonaws.com"`,
        'content-type': 'text/plain; charset=utf-8',
      }, 'Not Authorized\n')
      return false
    }
    if (check === 'expired' || check === 'revoked') {
      replyError(ex, new RegistryError(403, 'DENIED', 'Your authorization token has expired. Reauthenticate and try again.'))
      return false
    }
    return true
  }

  /** Builds the next-page Link; the query is opaque and must come back byte-for-byte. */
  function pageLink (path: string, scope: string, last: string, n: string | null): string {
    const query = `last=${pageTokens.encode(scope, last)}${n === null ? '' : `&n=${n}`}`
    return `<${publicOrigin}${path}?${query}>; rel="next"`
  }

  /** One page of sorted `items` after the `last=` token; sets the Link header when more remain. */
  function paginate (ex: Exchange, items: string[], scope: string): { page: string[], headers: Headers } {
    const n = ex.url.searchParams.get('n')
    const size = pageSize(n)
    const lastToken = ex.url.searchParams.get('last')
    let after: string | undefined
    if (lastToken !== null) {
      after = pageTokens.decode(scope, lastToken)
      // The message is a guess: ECR's wording for a corrupted token is not documented.
      if (after === undefined) throw new RegistryError(400, 'UNSUPPORTED', "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Member must be a valid pagination token'")
    }
    const remaining = items.sort().filter((item) => after === undefined || item > after)
    const page = remaining.slice(0, size)
    const headers: Headers = {}
    if (remaining.length > size) headers.link = pageLink(ex.url.pathname, scope, page[page.length - 1] as string, n)
    return { page, headers }
  }

  // ---- blobs -------------------------------------------------------------------------------

  function getBlob (ex: Exchange, name: string, digest: string): void {
    // ECR never deletes blobs (DELETE included): they go with the images that reference them.
    if (ex.req.method !== 'GET' && ex.req.method !== 'HEAD') throw unsupported()
    if (!isDigest(digest)) throw new RegistryError(400, 'DIGEST_INVALID', 'provided digest did not match uploaded content', { digest })
    const repo = existingRepo(name)
    const blob = store.blobs.get(digest)
    if (!repo.blobs.has(digest) || blob === undefined) throw new RegistryError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest })
    if (ex.req.method === 'HEAD') {
      reply(ex, 200, { 'content-type': 'application/octet-stream', 'content-length': blob.size, 'docker-content-digest': digest })
      return
    }
    // ECR never serves layer bytes itself: it redirects to a presigned URL on another host.
    reply(ex, 307, { location: s3.presign(digest) })
  }

  // ---- uploads -----------------------------------------------------------------------------

  const uploadLocation = (name: string, id: string): string => `${publicOrigin}/v2/${name}/blobs/uploads/${id}`
  const blobLocation = (name: string, digest: string): string => `${publicOrigin}/v2/${name}/blobs/${digest}`
  const rangeHeader = (end: number): string => `0-${Math.max(end, 0)}`

  function replyBlobCreated (ex: Exchange, name: string, digest: string): void {
    reply(ex, 201, { location: blobLocation(name, digest), 'docker-content-digest': digest })
  }

  async function startUpload (ex: Exchange, name: string): Promise<void> {
    if (ex.req.method !== 'POST') throw unsupported()
    const mount = ex.url.searchParams.get('mount')
    const from = ex.url.searchParams.get('from')
    const digest = ex.url.searchParams.get('digest')
    if (mount !== null && opts.blobMounting === true && from !== null && store.repos.get(from)?.blobs.has(mount) === true) {
      store.ensureRepo(name).blobs.add(mount)
      return replyBlobCreated(ex, name, mount)
    }
    store.ensureRepo(name)
    const upload = await store.startUpload(name)
    if (digest !== null) {
      await store.append(upload, ex.body)
      return await finishUpload(ex, name, upload, digest)
    }
    // ECR answers with an absolute Location and no Docker-Upload-UUID: clients take the
    // upload id from the last path segment.
    reply(ex, 202, { location: uploadLocation(name, upload.id) })
  }

  function existingUpload (name: string, id: string): Upload {
    const upload = store.uploads.get(id)
    if (upload === undefined || upload.repo !== name) throw new RegistryError(404, 'BLOB_UPLOAD_UNKNOWN', 'blob upload unknown to registry', { uuid: id })
    return upload
  }

  function checkContentRange (ex: Exchange, upload: Upload): void {
    const header = ex.req.headers['content-range']
    if (header === undefined) return
    const match = /^(?:bytes )?(\d+)-(\d+)$/.exec(header.trim())
    if (match === null || Number(match[1]) !== upload.size) {
      throw new RegistryError(416, 'BLOB_UPLOAD_INVALID', 'blob upload invalid', `Content-Range ${header} does not start at ${upload.size}`, {
        location: uploadLocation(upload.repo, upload.id),
        range: rangeHeader(upload.size - 1),
      })
    }
  }

  function tooSmallPart (upload: Upload): RegistryError {
    return new RegistryError(400, 'BLOB_UPLOAD_INVALID', `Upload part is smaller than the minimum allowed size of ${minChunkBytes} bytes; only the last part may be smaller`, {
      previousPartBytes: upload.lastPartBytes,
    })
  }

  async function patchUpload (ex: Exchange, upload: Upload): Promise<void> {
    if (upload.lastPartBytes !== undefined && upload.lastPartBytes < minChunkBytes) throw tooSmallPart(upload)
    checkContentRange(ex, upload)
    const { bytes } = await store.append(upload, ex.body)
    upload.lastPartBytes = bytes
    upload.firstPartEnd ??= upload.size - 1
    const end = opts.staleUploadRange === true ? upload.firstPartEnd : upload.size - 1
    // ECR answers an intermediate PATCH with 201 Created, not the spec's 202 Accepted.
    reply(ex, 201, { location: uploadLocation(upload.repo, upload.id), range: rangeHeader(end) })
  }

  async function finishUpload (ex: Exchange, name: string, upload: Upload, digest: string | null): Promise<void> {
    if (digest === null || !isDigest(digest)) {
      await store.cancelUpload(upload)
      throw new RegistryError(400, 'DIGEST_INVALID', 'provided digest did not match uploaded content', { digest })
    }
    if (!(await store.finishUpload(upload, digest))) {
      throw new RegistryError(400, 'DIGEST_INVALID', 'provided digest did not match uploaded content', { digest })
    }
    replyBlobCreated(ex, name, digest)
  }

  async function putUpload (ex: Exchange, upload: Upload): Promise<void> {
    checkContentRange(ex, upload)
    const appended = await store.append(upload, ex.body)
    if (appended.bytes > 0 && upload.lastPartBytes !== undefined && upload.lastPartBytes < minChunkBytes) {
      await appended.rollback()
      throw tooSmallPart(upload)
    }
    await finishUpload(ex, upload.repo, upload, ex.url.searchParams.get('digest'))
  }

  async function handleUpload (ex: Exchange, name: string, id: string): Promise<void> {
    const upload = existingUpload(name, id)
    if (ex.req.method === 'GET') {
      reply(ex, 204, { location: uploadLocation(name, id), range: rangeHeader(upload.size - 1) })
      return
    }
    if (ex.req.method === 'DELETE') {
      await store.cancelUpload(upload)
      reply(ex, 204, {})
      return
    }
    if (ex.req.method !== 'PATCH' && ex.req.method !== 'PUT') throw unsupported()
    if (upload.busy) throw new RegistryError(400, 'BLOB_UPLOAD_INVALID', 'blob upload invalid', 'another request is writing to this upload')
    upload.busy = true
    try {
      if (ex.req.method === 'PATCH') await patchUpload(ex, upload)
      else await putUpload(ex, upload)
    } finally {
      upload.busy = false
    }
  }

  // ---- manifests ---------------------------------------------------------------------------

  async function readManifestBody (ex: Exchange): Promise<Buffer> {
    const chunks: Buffer[] = []
    let total = 0
    for await (const chunk of ex.body) {
      total += (chunk as Buffer).length
      if (total > MANIFEST_MAX_BYTES) throw new RegistryError(400, 'MANIFEST_INVALID', 'manifest invalid', `manifest exceeds ${MANIFEST_MAX_BYTES} bytes`)
      chunks.push(chunk as Buffer)
    }
    return Buffer.concat(chunks)
  }

  function checkReferences (name: string, repo: Repository, mediaType: string, manifest: Record<string, unknown>): void {
    const missingBlobs = IMAGE_MANIFEST_TYPES.has(mediaType)
      ? [String((manifest.config as { digest?: unknown } | undefined)?.digest), ...descriptorDigests(manifest.layers)].filter((d) => !repo.blobs.has(d))
      : []
    if (missingBlobs.length > 0) {
      throw new RegistryError(400, 'MANIFEST_BLOB_UNKNOWN',
        `Layers with digests '[${missingBlobs.join(', ')}]' required for pushing image into repository with name '${name}' in the registry with id '${registryId}' do not exist`,
        { digests: missingBlobs })
    }
    const missingManifests = INDEX_TYPES.has(mediaType) ? descriptorDigests(manifest.manifests).filter((d) => !repo.manifests.has(d)) : []
    if (missingManifests.length > 0) {
      throw new RegistryError(400, 'MANIFEST_BLOB_UNKNOWN', 'manifest blob unknown to registry', { digests: missingManifests })
    }
  }

  async function putManifest (ex: Exchange, name: string, reference: string): Promise<void> {
    const mediaType = String(ex.req.headers['content-type'] ?? '').split(';')[0]?.trim() ?? ''
    const body = await readManifestBody(ex)
    if (!IMAGE_MANIFEST_TYPES.has(mediaType) && !INDEX_TYPES.has(mediaType)) {
      throw new RegistryError(400, 'MANIFEST_INVALID', 'manifest invalid', `unsupported manifest media type ${JSON.stringify(mediaType)}`)
    }
    if (!isDigest(reference) && !TAG_PATTERN.test(reference)) throw new RegistryError(400, 'TAG_INVALID', 'manifest tag did not match URI', { tag: reference })
    if (isDigest(reference) && reference !== sha256Digest(body)) {
      throw new RegistryError(400, 'DIGEST_INVALID', 'provided digest did not match uploaded content', { digest: reference })
    }
    const parsed = parseManifest(body, mediaType)
    const repo = store.ensureRepo(name)
    checkReferences(name, repo, mediaType, parsed)
    const stored = store.storeManifest(name, reference, body, mediaType)
    const headers: Headers = { 'docker-content-digest': stored.digest }
    if (stored.subject !== undefined) headers['oci-subject'] = stored.subject
    // ECR sends no Location on manifest PUT (apple/swift-container-plugin#27).
    reply(ex, 201, headers)
  }

  function deleteManifest (ex: Exchange, name: string, reference: string): void {
    const repo = existingRepo(name)
    const manifest = repo.resolve(reference)
    if (manifest === undefined) throw new RegistryError(404, 'MANIFEST_UNKNOWN', 'Requested image not found')
    if (isDigest(reference)) {
      repo.manifests.delete(manifest.digest)
      for (const [tag, digest] of repo.tags) if (digest === manifest.digest) repo.tags.delete(tag)
    } else {
      repo.tags.delete(reference)
    }
    reply(ex, 202, {})
  }

  async function handleManifest (ex: Exchange, name: string, reference: string): Promise<void> {
    switch (ex.req.method) {
      case 'PUT': return await putManifest(ex, name, reference)
      case 'DELETE': return deleteManifest(ex, name, reference)
      case 'GET':
      case 'HEAD': {
        const manifest = existingRepo(name).resolve(reference)
        if (manifest === undefined) throw new RegistryError(404, 'MANIFEST_UNKNOWN', 'Requested image not found')
        reply(ex, 200, { 'content-type': manifest.mediaType, 'docker-content-digest': manifest.digest }, manifest.body)
        return
      }
      default: throw unsupported()
    }
  }

  // ---- listings ----------------------------------------------------------------------------

  function listTags (ex: Exchange, name: string): void {
    if (ex.req.method !== 'GET') throw unsupported()
    const repo = existingRepo(name)
    const { page, headers } = paginate(ex, [...repo.tags.keys()], `tags:${name}`)
    // ECR labels this JSON text/plain (observed in deitch/docker_registry2#34).
    reply(ex, 200, { 'content-type': 'text/plain; charset=utf-8', ...headers }, JSON.stringify({ name, tags: page }))
  }

  function listCatalog (ex: Exchange): void {
    if (ex.req.method !== 'GET') throw unsupported()
    // ECR does serve _catalog (backed by DescribeRepositories), with the same maxResults limit.
    const { page, headers } = paginate(ex, [...store.repos.keys()], 'catalog')
    reply(ex, 200, { 'content-type': JSON_UTF8, ...headers }, JSON.stringify({ repositories: page }))
  }

  function listReferrers (ex: Exchange, name: string, digest: string): void {
    if (ex.req.method !== 'GET') throw unsupported()
    if (!isDigest(digest)) throw new RegistryError(400, 'DIGEST_INVALID', 'invalid digest', { digest })
    const repo = existingRepo(name)
    const artifactType = ex.url.searchParams.get('artifactType')
    const referrers = [...repo.manifests.values()]
      .filter((m) => m.subject === digest && (artifactType === null || m.artifactType === artifactType))
      .map(descriptorOf)
    const headers: Headers = { 'content-type': MEDIA_TYPES.ociIndex }
    if (artifactType !== null) headers['oci-filters-applied'] = 'artifactType'
    reply(ex, 200, headers, JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: referrers }))
  }

  // ---- dispatch ----------------------------------------------------------------------------

  async function dispatch (ex: Exchange, route: Route): Promise<void> {
    if ('name' in route && (!NAME_PATTERN.test(route.name) || route.name.length > 255)) {
      throw new RegistryError(400, 'NAME_INVALID', 'invalid repository name', { name: route.name })
    }
    switch (route.kind) {
      case 'ping':
        if (ex.req.method !== 'GET' && ex.req.method !== 'HEAD') throw unsupported()
        return reply(ex, 200, { 'content-type': JSON_UTF8 }, '{}')
      case 'catalog': return listCatalog(ex)
      case 'manifest': return await handleManifest(ex, route.name, route.reference)
      case 'blob': return getBlob(ex, route.name, route.digest)
      case 'uploads': return await startUpload(ex, route.name)
      case 'upload': return await handleUpload(ex, route.name, route.id)
      case 'tags': return listTags(ex, route.name)
      case 'referrers': return listReferrers(ex, route.name, route.digest)
      case 'unknown': throw new RegistryError(404, 'NOT_FOUND', '404 page not found')
    }
  }

  async function handle (ex: Exchange): Promise<void> {
    if (!ex.url.pathname.startsWith('/v2')) throw new RegistryError(404, 'NOT_FOUND', '404 page not found')
    if (!authenticate(ex)) return
    await dispatch(ex, classify(ex.url.pathname))
  }

  const server = createServer({ requestTimeout: 0 }, (req, res) => {
    const record: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyBytes: 0 }
    requests.push(record)
    const ex: Exchange = { req, res, url: new URL(req.url ?? '/', 'http://registry.invalid'), body: countedBody(req, record), record }
    const bodyDone = finished(ex.body).catch(() => {}).finally(() => bodiesInFlight.delete(bodyDone))
    bodiesInFlight.add(bodyDone)
    // Whatever the handler left unread is still drained (and counted) once the answer is out.
    res.on('finish', () => ex.body.resume())
    handle(ex).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy()
        return
      }
      if (err instanceof RegistryError) return replyError(ex, err)
      if (req.destroyed || ex.body.destroyed) return res.destroy()
      replyError(ex, new RegistryError(500, 'UNKNOWN', 'unknown error', String(err)))
    })
  })
  const url = await listen(server, opts.host, opts.port)
  publicOrigin = (opts.publicOrigin ?? url).replace(/\/+$/, '')

  return {
    url,
    publicOrigin,
    authority,
    s3,
    requests,
    dir,
    putBlob: (repo, data) => store.putBlobSync(repo, data),
    putSyntheticBlob: async (repo, size, seed) => await store.putStream(repo, syntheticBytes(size, seed)),
    putManifest: (repo, reference, body, mediaType) => store.storeManifest(repo, reference, body, mediaType).digest,
    settled: async () => { await Promise.all([...bodiesInFlight]) },
    async close () {
      await closeServer(server)
      await s3.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

function descriptorOf (manifest: StoredManifest): Record<string, unknown> {
  const descriptor: Record<string, unknown> = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.body.length }
  if (manifest.artifactType !== undefined) descriptor.artifactType = manifest.artifactType
  if (manifest.annotations !== undefined) descriptor.annotations = manifest.annotations
  return descriptor
}
