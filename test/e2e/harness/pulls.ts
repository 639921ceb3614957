import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { sha256Digest } from '../../helpers/digest.js'
import type { Skopeo } from './clients.js'
import { ClientError } from './process.js'
import { MANIFEST_TYPES, type ManifestView } from './registry-http.js'

/**
 * One complete pull with skopeo through the proxy into a fresh directory; throws (with
 * skopeo's stderr) on failure or when the manifest pulled is not the one the registry holds.
 */
export async function skopeoPull (skopeo: Skopeo, workDir: string, image: string, expected: ManifestView): Promise<void> {
  const out = mkdtempSync(join(workDir, 'pull-'))
  try {
    const all = expected.json.manifests === undefined ? [] : ['--all']
    await skopeo.run(['copy', '--src-tls-verify=false', ...all, `docker://${image}`, `dir:${out}`], { timeoutMs: 60_000 })
    const got = sha256Digest(readFileSync(join(out, 'manifest.json')))
    if (got !== expected.digest) throw new Error(`skopeo pulled manifest ${got} from ${image}, the registry holds ${expected.digest}`)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}

/**
 * A pull the way a client does it, over plain HTTP without credentials: the manifest, then
 * every blob it names, each checked against its digest.
 */
export async function httpPull (proxyUrl: string, repository: string, reference: string, expected: ManifestView): Promise<void> {
  const get = async (path: string, accept?: string): Promise<Buffer> => {
    const res = await fetch(new URL(path, proxyUrl), { headers: accept === undefined ? {} : { accept }, signal: AbortSignal.timeout(30_000) })
    const body = Buffer.from(await res.arrayBuffer())
    if (res.status !== 200) {
      throw new Error(`GET ${path} -> ${res.status} ${JSON.stringify(Object.fromEntries(res.headers))} ${body.toString('utf8').slice(0, 400)}`)
    }
    return body
  }
  const manifest = await get(`/v2/${repository}/manifests/${reference}`, MANIFEST_TYPES.join(', '))
  if (sha256Digest(manifest) !== expected.digest) throw new Error(`manifest ${repository}:${reference} is ${sha256Digest(manifest)}, the registry holds ${expected.digest}`)
  const parsed = JSON.parse(manifest.toString('utf8')) as ManifestView['json']
  const blobs = [parsed.config?.digest, ...(parsed.layers ?? []).map((layer) => layer.digest)].filter((digest) => digest !== undefined)
  for (const digest of blobs) {
    const body = await get(`/v2/${repository}/blobs/${digest}`)
    const got = `sha256:${createHash('sha256').update(body).digest('hex')}`
    if (got !== digest) throw new Error(`blob ${digest} arrived as ${got}`)
  }
}

/** The message of a failed pull, shortened to what identifies it. */
export function failureText (error: unknown): string {
  if (error instanceof ClientError) return error.message
  return error instanceof Error ? error.message : String(error)
}
