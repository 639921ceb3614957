import { createHash, randomUUID, type Hash } from 'node:crypto'
import { createReadStream, createWriteStream, writeFileSync } from 'node:fs'
import { mkdir, rename, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { digestOf, isDigest, sha256Digest } from './digest.js'

export interface StoredBlob { path: string, size: number }

export interface StoredManifest {
  digest: string
  body: Buffer
  mediaType: string
  subject?: string
  artifactType?: string
  annotations?: Record<string, string>
}

export class Repository {
  readonly blobs = new Set<string>()
  readonly manifests = new Map<string, StoredManifest>()
  readonly tags = new Map<string, string>()

  resolve (reference: string): StoredManifest | undefined {
    return this.manifests.get(isDigest(reference) ? reference : this.tags.get(reference) ?? '')
  }
}

export interface Upload {
  id: string
  repo: string
  path: string
  size: number
  hash: Hash
  /** Bytes in the latest PATCH; ECR (S3 multipart underneath) needs every part but the last ≥ 5 MiB. */
  lastPartBytes?: number
  /** End offset reported after the first PATCH (for the stale-Range quirk). */
  firstPartEnd?: number
  busy: boolean
}

export interface Appended { bytes: number, rollback: () => Promise<void> }

/** Repositories, manifests and blobs (on disk, content-addressed) of the test registry. */
export class RegistryStore {
  readonly repos = new Map<string, Repository>()
  readonly blobs = new Map<string, StoredBlob>()
  readonly uploads = new Map<string, Upload>()
  readonly dir: string

  constructor (dir: string) {
    this.dir = dir
  }

  blobPath (digest: string): string {
    return join(this.dir, 'blobs', digest.replace(':', '-'))
  }

  async init (): Promise<void> {
    await mkdir(join(this.dir, 'blobs'), { recursive: true })
    await mkdir(join(this.dir, 'uploads'), { recursive: true })
  }

  ensureRepo (name: string): Repository {
    let repo = this.repos.get(name)
    if (repo === undefined) {
      repo = new Repository()
      this.repos.set(name, repo)
    }
    return repo
  }

  openBlob (digest: string, start: number, end: number): Readable {
    return createReadStream(this.blobPath(digest), { start, end })
  }

  putBlobSync (repo: string, data: Buffer): string {
    const digest = sha256Digest(data)
    writeFileSync(this.blobPath(digest), data)
    this.blobs.set(digest, { path: this.blobPath(digest), size: data.length })
    this.ensureRepo(repo).blobs.add(digest)
    return digest
  }

  /** Streams `source` into the blob store of `repo`; resolves with its digest. */
  async putStream (repo: string, source: Readable): Promise<string> {
    const upload = await this.startUpload(repo)
    await this.append(upload, source)
    const digest = digestOf(upload.hash.copy())
    await this.finishUpload(upload, digest)
    return digest
  }

  async startUpload (repo: string): Promise<Upload> {
    const id = randomUUID()
    const upload: Upload = { id, repo, path: join(this.dir, 'uploads', id), size: 0, hash: createHash('sha256'), busy: false }
    await writeFile(upload.path, '')
    this.uploads.set(id, upload)
    return upload
  }

  /** Streams `source` onto the end of the upload while hashing; constant memory. */
  async append (upload: Upload, source: Readable): Promise<Appended> {
    const before = { size: upload.size, hash: upload.hash.copy() }
    const rollback = async (): Promise<void> => {
      upload.size = before.size
      upload.hash = before.hash.copy()
      await truncate(upload.path, before.size)
    }
    let bytes = 0
    const hasher = new Transform({
      transform (chunk: Buffer, _encoding, callback) {
        upload.hash.update(chunk)
        bytes += chunk.length
        callback(null, chunk)
      },
    })
    try {
      await pipeline(source, hasher, createWriteStream(upload.path, { flags: 'a' }))
    } catch (err) {
      await rollback()
      throw err
    }
    upload.size += bytes
    return { bytes, rollback }
  }

  /** Moves a finished upload into the blob store; false (and the upload gone) on a digest mismatch. */
  async finishUpload (upload: Upload, expected: string): Promise<boolean> {
    this.uploads.delete(upload.id)
    const digest = digestOf(upload.hash.copy())
    if (digest !== expected) {
      await rm(upload.path, { force: true })
      return false
    }
    if (this.blobs.has(digest)) await rm(upload.path, { force: true })
    else await rename(upload.path, this.blobPath(digest))
    this.blobs.set(digest, { path: this.blobPath(digest), size: (await stat(this.blobPath(digest))).size })
    this.ensureRepo(upload.repo).blobs.add(digest)
    return true
  }

  async cancelUpload (upload: Upload): Promise<void> {
    this.uploads.delete(upload.id)
    await rm(upload.path, { force: true })
  }

  storeManifest (repoName: string, reference: string, body: Buffer, mediaType: string): StoredManifest {
    const manifest: StoredManifest = { digest: sha256Digest(body), body, mediaType, ...describeManifest(body) }
    const repo = this.ensureRepo(repoName)
    repo.manifests.set(manifest.digest, manifest)
    if (!isDigest(reference)) repo.tags.set(reference, manifest.digest)
    return manifest
  }
}

/** The referrers-relevant fields of a manifest body (none for a body that is not JSON). */
function describeManifest (body: Buffer): Pick<StoredManifest, 'subject' | 'artifactType' | 'annotations'> {
  let parsed: { subject?: { digest?: unknown }, artifactType?: unknown, config?: { mediaType?: unknown }, annotations?: unknown }
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return {}
  }
  const result: Pick<StoredManifest, 'subject' | 'artifactType' | 'annotations'> = {}
  if (typeof parsed?.subject?.digest === 'string') result.subject = parsed.subject.digest
  const artifactType = parsed?.artifactType ?? parsed?.config?.mediaType
  if (typeof artifactType === 'string') result.artifactType = artifactType
  if (typeof parsed?.annotations === 'object' && parsed.annotations !== null) result.annotations = parsed.annotations as Record<string, string>
  return result
}
