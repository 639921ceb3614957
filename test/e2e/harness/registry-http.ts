import { sha256Digest } from '../../helpers/digest.js'

export const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
] as const

export interface ManifestView {
  digest: string
  mediaType: string
  bytes: Buffer
  json: { mediaType?: string, manifests?: Array<{ digest: string, platform?: { architecture: string, os: string } }>, layers?: Array<{ digest: string, mediaType: string, size: number }>, config?: { digest: string } }
}

export interface HttpExchange { method: string, url: string, status: number, headers: Record<string, string>, body: string }

/** Describes a response in a failure message: method, URL, status, headers, start of the body. */
export function describeExchange (exchange: HttpExchange): string {
  const headers = Object.entries(exchange.headers).map(([name, value]) => `  ${name}: ${value}`).join('\n')
  return `${exchange.method} ${exchange.url} -> ${exchange.status}\n${headers}\n  ${exchange.body.slice(0, 600)}`
}

/**
 * A minimal registry API client, used directly against the registry (with the verifier's
 * credentials) to learn what it really holds, and against the proxy (no credentials) for
 * the checks that need exact headers.
 */
export class RegistryHttp {
  readonly base: string
  readonly #authorization: string | undefined

  constructor (base: string, credentials?: { user: string, password: string }) {
    this.base = base
    this.#authorization = credentials === undefined ? undefined : `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString('base64')}`
  }

  async request (method: string, path: string, init: { headers?: Record<string, string>, body?: Buffer | string } = {}): Promise<HttpExchange & { bytes: Buffer }> {
    const headers: Record<string, string> = { ...init.headers }
    if (this.#authorization !== undefined) headers.authorization = this.#authorization
    const url = new URL(path, this.base).toString()
    const body = typeof init.body === 'string' || init.body === undefined ? init.body : new Uint8Array(init.body)
    const res = await fetch(url, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(30_000) })
    const bytes = Buffer.from(await res.arrayBuffer())
    return { method, url, status: res.status, headers: Object.fromEntries(res.headers), body: bytes.toString('utf8'), bytes }
  }

  /** The manifest as stored, its digest checked against both the header and the bytes. */
  async manifest (repository: string, reference: string): Promise<ManifestView> {
    const res = await this.request('GET', `/v2/${repository}/manifests/${reference}`, { headers: { accept: MANIFEST_TYPES.join(', ') } })
    if (res.status !== 200) throw new Error(`manifest ${repository}:${reference} not readable:\n${describeExchange(res)}`)
    const computed = sha256Digest(res.bytes)
    const header = res.headers['docker-content-digest']
    if (header !== computed) throw new Error(`manifest ${repository}:${reference}: Docker-Content-Digest ${String(header)} but the bytes hash to ${computed}`)
    return {
      digest: computed,
      mediaType: res.headers['content-type'] ?? '',
      bytes: res.bytes,
      json: JSON.parse(res.body) as ManifestView['json'],
    }
  }

  /** Every tag of a repository, sorted (one unpaged request). */
  async tags (repository: string): Promise<string[]> {
    const res = await this.request('GET', `/v2/${repository}/tags/list`)
    if (res.status !== 200) throw new Error(`tags of ${repository} not readable:\n${describeExchange(res)}`)
    const { tags } = JSON.parse(res.body) as { tags: string[] | null }
    return [...(tags ?? [])].sort()
  }

  async putManifest (repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<string> {
    const res = await this.request('PUT', `/v2/${repository}/manifests/${reference}`, { headers: { 'content-type': mediaType }, body: bytes })
    if (res.status !== 201) throw new Error(`manifest PUT ${repository}:${reference} refused:\n${describeExchange(res)}`)
    return res.headers['docker-content-digest'] ?? ''
  }

  /** A two-request upload (POST, then PUT with the digest): distribution 2.8 has no single-POST one. */
  async uploadBlob (repository: string, bytes: Buffer): Promise<string> {
    const digest = sha256Digest(bytes)
    const started = await this.request('POST', `/v2/${repository}/blobs/uploads/`)
    if (started.status !== 202) throw new Error(`upload to ${repository} not started:\n${describeExchange(started)}`)
    const target = new URL(started.headers.location ?? '', this.base)
    target.searchParams.set('digest', digest)
    const done = await this.request('PUT', target.toString(), { headers: { 'content-type': 'application/octet-stream' }, body: bytes })
    if (done.status !== 201) throw new Error(`upload to ${repository} not completed:\n${describeExchange(done)}`)
    return digest
  }

  /** The smallest valid image (a config, no layers) under each of `tags`; returns its digest. */
  async putTinyImage (repository: string, tags: string[]): Promise<string> {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
    const configDigest = await this.uploadBlob(repository, config)
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: [],
    }))
    for (const tag of tags) await this.putManifest(repository, tag, manifest, 'application/vnd.oci.image.manifest.v1+json')
    return sha256Digest(manifest)
  }

  async blobStatus (repository: string, digest: string): Promise<number> {
    return (await this.request('HEAD', `/v2/${repository}/blobs/${digest}`)).status
  }
}
