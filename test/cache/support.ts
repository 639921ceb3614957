import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { Agent, request } from 'undici'
import { buildApp, type AppDeps } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config/index.js'
import { closeServer, listen } from '../helpers/listen.js'
import { logSink, type LogSink } from '../helpers/log-sink.js'
import { PROXY_TOKEN } from '../helpers/proxy-for.js'

export function sha256 (data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

export function pattern (size: number, seed = 1): Buffer {
  const data = Buffer.alloc(size)
  for (let i = 0; i < size; i++) data[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff
  return data
}

interface StoredBlob {
  data: Buffer
  repos: Set<string>
  wrongBytes?: boolean
  truncate?: boolean
  hold?: Promise<void>
  /** A Docker-Content-Digest other than the digest asked for. */
  announce?: string
  /** Sent chunked, without Content-Length. */
  chunked?: boolean
  /** Range ignored: always the whole body with 200. */
  ignoreRange?: boolean
}

export interface RecordedRequest { method: string, url: string, headers: IncomingHttpHeaders }

/**
 * A registry that sends blob bytes itself, with faults on demand: wrong bytes for a digest, a body
 * cut short, a body held after its first half until the test releases it.
 */
export class FakeRegistry {
  readonly blobs = new Map<string, StoredBlob>()
  readonly manifests = new Map<string, { body: Buffer, mediaType: string, announce?: string }>()
  readonly requests: RecordedRequest[] = []
  server: Server | undefined
  url = ''
  down = false

  addBlob (repos: string[], data: Buffer): string {
    const digest = sha256(data)
    this.blobs.set(digest, { data, repos: new Set(repos) })
    return digest
  }

  addManifest (repo: string, tag: string, body: Buffer, mediaType = 'application/vnd.oci.image.manifest.v1+json'): string {
    const digest = sha256(body)
    this.manifests.set(`${repo}:${tag}`, { body, mediaType })
    this.manifests.set(`${repo}@${digest}`, { body, mediaType })
    return digest
  }

  /** Holds every GET of the digest after half its bytes; resolves the returned function to go on. */
  hold (digest: string): () => void {
    let release!: () => void
    const blob = this.blobs.get(digest) as StoredBlob
    blob.hold = new Promise((resolve) => { release = resolve })
    return () => { delete blob.hold; release() }
  }

  blobGets (digest: string): RecordedRequest[] {
    return this.requests.filter((r) => r.method === 'GET' && r.url.includes(`/blobs/${digest}`))
  }

  async start (t: Test): Promise<void> {
    this.server = createServer((req, res) => {
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
      if (this.down) { res.writeHead(503, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"down"}]}'); return }
      const blob = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(req.url ?? '')
      const manifest = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(req.url ?? '')
      const json = { 'content-type': 'application/json; charset=utf-8', 'docker-distribution-api-version': 'registry/2.0' }
      if (blob !== null) {
        const [repo, digest] = [blob[1] as string, blob[2] as string]
        const stored = this.blobs.get(digest)
        if (stored === undefined || !stored.repos.has(repo)) {
          res.writeHead(404, json).end(req.method === 'HEAD' ? undefined : '{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}')
          return
        }
        const size = stored.data.length
        const headers = { 'content-type': 'application/octet-stream', 'docker-content-digest': stored.announce ?? digest, etag: `"${digest}"`, 'accept-ranges': 'bytes', 'docker-distribution-api-version': 'registry/2.0' }
        if (req.method === 'HEAD') { res.writeHead(200, { ...headers, 'content-length': size }).end(); return }
        const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
        let data = stored.data
        if (stored.wrongBytes === true) data = Buffer.from(data.map((b) => b ^ 1))
        if (range !== null && stored.ignoreRange !== true) {
          const start = Number(range[1])
          const end = range[2] === '' ? size - 1 : Number(range[2])
          res.writeHead(206, { ...headers, 'content-length': end + 1 - start, 'content-range': `bytes ${start}-${end}/${size}` }).end(data.subarray(start, end + 1))
          return
        }
        res.writeHead(200, stored.chunked === true ? headers : { ...headers, 'content-length': size })
        const half = Math.floor(size / 2)
        if (stored.truncate === true) { res.write(data.subarray(0, half), () => { setImmediate(() => res.destroy()) }); return }
        res.write(data.subarray(0, half))
        const rest = () => { res.end(data.subarray(half)) }
        if (stored.hold !== undefined) stored.hold.then(rest, rest)
        else rest()
        return
      }
      if (manifest !== null) {
        const [repo, ref] = [manifest[1] as string, manifest[2] as string]
        const stored = this.manifests.get(ref.includes(':') ? `${repo}@${ref}` : `${repo}:${ref}`)
        if (stored === undefined) { res.writeHead(404, json).end(req.method === 'HEAD' ? undefined : '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'); return }
        res.writeHead(200, { 'content-type': stored.mediaType, 'content-length': stored.body.length, 'docker-content-digest': stored.announce ?? sha256(stored.body), 'docker-distribution-api-version': 'registry/2.0' })
        res.end(req.method === 'HEAD' ? undefined : stored.body)
        return
      }
      res.writeHead(404, json).end('{"errors":[{"code":"NOT_FOUND","message":"?"}]}')
    })
    this.url = await listen(this.server)
    t.teardown(async () => { await this.stop() })
  }

  async stop (): Promise<void> {
    if (this.server === undefined) return
    const server = this.server
    this.server = undefined
    server.closeAllConnections()
    await closeServer(server)
  }
}

export interface CachingProxy {
  url: string
  logs: LogSink
  dir: string
  metrics: () => Promise<string>
  close: () => Promise<void>
}

export async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ecr-proxy-cache-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

/** The proxy with --cache-dir in front of `upstreamUrl`, a fixed token, its logs and metrics at hand. */
export async function startCachingProxy (t: Test, upstreamUrl: string, dir: string, argv: string[] = [], deps: AppDeps = {}): Promise<CachingProxy> {
  const logs = logSink('debug')
  const { app, metrics } = await buildApp(loadConfig(parseCommandLine(['--upstream', upstreamUrl, '--cache-dir', dir, ...argv]), {}), {
    fetchToken: async () => ({ token: PROXY_TOKEN, expiresAt: new Date(Date.now() + 3_600_000) }),
    logger: logs.logger,
    ...deps
  })
  let closed = false
  const close = async () => { if (!closed) { closed = true; await app.close() } }
  t.teardown(close)
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { url, logs, dir, metrics: async () => await metrics.registry.metrics(), close }
}

export interface Fetched { status: number, headers: Record<string, string>, body: Buffer, error?: Error }

const agent = new Agent({ keepAliveTimeout: 10, pipelining: 0 })

/** A request whose body is read to its end; a cut body gives `error` and the bytes received. */
export async function fetch (url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET'): Promise<Fetched> {
  const res = await request(url, { method, headers, dispatcher: agent })
  const chunks: Buffer[] = []
  let error: Error | undefined
  try {
    for await (const chunk of res.body) chunks.push(chunk as Buffer)
  } catch (err) {
    error = err as Error
  }
  return { status: res.statusCode, headers: res.headers as Record<string, string>, body: Buffer.concat(chunks), ...(error === undefined ? {} : { error }) }
}

export function metricValue (text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels === '' ? ' ' : `{${labels}} `}`))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}
