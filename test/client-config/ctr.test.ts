/**
 * The generated hosts.toml files, read by the real containerd client: `ctr images pull
 * --hosts-dir DIR <host>/team/app:1.0` for two registry hostnames, with the proxy played by a
 * small recording registry on 127.0.0.1 and each registry's own `server` pointing at a local
 * port, so that nothing leaves the machine. No --plain-http: the files alone must make ctr use
 * plain HTTP toward the proxy.
 *
 * ctr does the resolving and fetching itself but needs a containerd daemon for the content
 * store, so this starts one of its own the way the e2e harness does (own root, state and
 * socket; CRI plugin off). That needs root and the Debian `containerd` package (ctr 1.6):
 * without either the test is skipped, saying why.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { runClientConfig } from '../../src/client-config/command.js'
import { Containerd } from '../e2e/harness/clients.js'
import { run } from '../e2e/harness/process.js'
import { sha256Digest } from '../helpers/digest.js'
import { closeServer, listen } from '../helpers/listen.js'
import { descriptor, imageManifest, MEDIA_TYPE } from '../helpers/oci-image.js'
import { freePort } from '../helpers/cli-process.js'

const HOSTS = ['600423610423.dkr.ecr.us-east-2.amazonaws.com', '111122223333.dkr.ecr.eu-west-1.amazonaws.com'] as const

function skipReason (): string | false {
  const missing = ['ctr', 'containerd'].filter((bin) => spawnSync(bin, ['--version']).error !== undefined)
  if (missing.length > 0) return `needs ${missing.join(' and ')} (apt-get install containerd)`
  if (process.getuid?.() !== 0) return 'needs root to run a containerd of its own'
  return false
}

interface Recorded { method: string, path: string, ns: string | null }

/** One image per registry, told apart by `?ns=` the way the proxy must tell them apart. */
function imageFor (host: string): { manifest: Buffer, digest: string, configDigest: string, blobs: Map<string, Buffer> } {
  const layerTar = Buffer.alloc(1024) // an empty tar: two zero blocks
  const layer = gzipSync(layerTar)
  const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' } as Record<string, string>)[process.arch] ?? process.arch
  const config = Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256Digest(layerTar)] }, config: { Labels: { registry: host } } }))
  const manifest = imageManifest(descriptor(MEDIA_TYPE.ociConfig, config), [descriptor(MEDIA_TYPE.ociLayer, layer)], { annotations: { registry: host } })
  return { manifest, digest: sha256Digest(manifest), configDigest: sha256Digest(config), blobs: new Map([[sha256Digest(config), config], [sha256Digest(layer), layer]]) }
}

/** A registry that records every request and serves team/app:1.0 per `ns` (or nothing: 404). */
async function startRecorder (t: Test, serve: boolean): Promise<{ url: string, requests: Recorded[] }> {
  const images = new Map(HOSTS.map((h) => [h, imageFor(h)]))
  const requests: Recorded[] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://recorder')
    const ns = url.searchParams.get('ns')
    requests.push({ method: req.method ?? '?', path: url.pathname, ns })
    const image = serve && ns !== null ? images.get(ns as typeof HOSTS[number]) : undefined
    const m = /^\/v2\/team\/app\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname)
    let body: Buffer | undefined
    let type = 'application/octet-stream'
    if (image !== undefined && m?.[1] === 'manifests' && (m[2] === '1.0' || m[2] === image.digest)) {
      body = image.manifest
      type = MEDIA_TYPE.ociManifest
      res.setHeader('Docker-Content-Digest', image.digest)
    } else if (image !== undefined && m?.[1] === 'blobs') {
      body = image.blobs.get(m[2] as string)
    }
    if (body === undefined) {
      const error = Buffer.from(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }))
      res.writeHead(404, { 'Content-Type': 'application/json', 'Content-Length': error.length })
      res.end(req.method === 'HEAD' ? undefined : error)
      return
    }
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length })
    res.end(req.method === 'HEAD' ? undefined : body)
  })
  const url = await listen(server)
  t.teardown(() => closeServer(server))
  return { url, requests }
}

/** The files as `client-config containerd --dir` writes them (the code path the DaemonSet runs). */
async function writeHostsDir (t: Test, dir: string, proxy: string, server: string): Promise<void> {
  let stdout = ''
  let stderr = ''
  const argv = ['containerd', ...HOSTS.flatMap((h) => ['--registry', h]), '--proxy', proxy, '--server', server, '--dir', dir]
  const code = await runClientConfig(argv, [], { stdout: { write: (s: string) => { stdout += s } }, stderr: { write: (s: string) => { stderr += s } } })
  t.equal(code, 0, stderr)
  t.equal(stdout, HOSTS.map((h) => `wrote ${dir}/${h}/hosts.toml\n`).join(''))
}

t.test('ctr pulls each registry by its real name through the proxy the hosts files name', { skip: skipReason() }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'client-config-ctr-'))
  const started: Containerd[] = []
  // containerd stops before its directory goes.
  t.teardown(async () => {
    for (const c of started) await c.service.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  const daemon = await Containerd.start(t, join(dir, 'containerd'))
  started.push(daemon)
  const versions = await daemon.versions()
  t.comment(`ctr ${versions.ctr}, containerd ${versions.containerd}`)

  t.test('the proxy answers: every request carries ?ns=<host>, the registry itself gets none', async (t) => {
    const proxy = await startRecorder(t, true)
    // A listening stand-in for the registries themselves, so that "nothing reached them" is
    // observed rather than assumed.
    const origin = await startRecorder(t, false)
    const hostsDir = join(dir, 'hosts-served')
    await writeHostsDir(t, hostsDir, proxy.url, origin.url)
    for (const host of HOSTS) {
      const ref = `${host}/team/app:1.0`
      await daemon.ctr(['images', 'pull', '--hosts-dir', hostsDir, ref])
      t.equal(await daemon.imageDigest(ref), imageFor(host).digest, `${host}: ctr holds the image the proxy served for ns=${host}, under its real name`)
      const seen = proxy.requests.filter((r) => r.ns === host)
      t.match(seen[0], { method: 'HEAD', path: '/v2/team/app/manifests/1.0' }, `${host}: the tag is resolved through the proxy`)
      // The two images share their (empty) layer, which containerd fetches once; configs differ.
      t.ok(seen.some((r) => r.method === 'GET' && r.path === `/v2/team/app/blobs/${imageFor(host).configDigest}`), `${host}: its config blob comes through the proxy`)
    }
    t.same(proxy.requests.filter((r) => !HOSTS.includes(r.ns as typeof HOSTS[number])), [], 'no request without a registry in ns=')
    t.notOk(proxy.requests.some((r) => r.path === '/v2/' || r.path === '/v2'), 'no /v2/ ping')
    t.same(origin.requests, [], 'nothing reached the registries themselves')
  })

  t.test('the proxy has no such image: containerd asks it first, then only the server, on a closed port', async (t) => {
    const proxy = await startRecorder(t, false)
    const closed = await freePort()
    const hostsDir = join(dir, 'hosts-missing')
    await writeHostsDir(t, hostsDir, proxy.url, `http://127.0.0.1:${closed}`)
    const host = HOSTS[1]
    const result = await run('ctr', ['--address', daemon.address, '--namespace', daemon.namespace, 'images', 'pull', '--hosts-dir', hostsDir, `${host}/team/app:1.0`], { timeoutMs: 60_000 })
    t.not(result.code, 0, 'the pull fails')
    t.match(result.stderr, `127.0.0.1:${closed}`, 'the last host tried was the server')
    t.same(proxy.requests, [{ method: 'HEAD', path: '/v2/team/app/manifests/1.0', ns: host }], 'the proxy was asked first, with ns=<host>')
  })
})
