/**
 * The layer cache (`--cache-dir`) with real clients and the real registry. Each part runs its own
 * proxy on its own cache directory, so every first pull is a real fill:
 *
 * - docker pulls, `docker rmi`, pulls again: the second pull sends no blob GET to the registry;
 * - ctr pulls into one containerd, then into a second one (a second content store): same;
 * - the registry stopped: a pull by digest still works from the cache; a pull by tag works only
 *   through the proxy started with `--cache-serve-stale`, whose manifest answer carries
 *   `Ecr-Proxy-Cache: stale; tag-resolved-at=…`.
 *
 * What reached the registry is read from its own log (`registryRequests`), never from the proxy.
 * dockerd's HTTP(S)_PROXY and every hosts.toml fallback point at closed 127.0.0.1 ports.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Containerd, curl, DockerEngine, Skopeo } from './harness/clients.js'
import { digestAfter, seedDirect } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { startProxy, type Proxy } from './harness/proxy.js'
import { MANIFEST_TYPES } from './harness/registry-http.js'
import { registryRequests } from './harness/registry.js'
import { startUpstream } from './harness/stack.js'
import { closedPort, tempDir } from './harness/util.js'

const REPO = 'e2e/cache'
const upstream = await startUpstream(t)
const dir = tempDir(t, 'cache')
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const stored = await seedDirect(upstream, skopeo, images, REPO)
const digestOf = (tag: 'v2s2' | 'oci' | 'index' | 'list'): string => stored.get(tag)?.digest ?? ''

/** A proxy of its own on a cache directory of its own (in the run directory). */
async function cachingProxy (name: string, extra: string[] = []): Promise<Proxy & { cacheDir: string }> {
  const proxyDir = join(dir, `proxy-${name}`)
  mkdirSync(proxyDir)
  const cacheDir = join(proxyDir, 'cache')
  const proxy = await startProxy(t, proxyDir, { upstream: upstream.registry.url, ecrApiUrl: upstream.ecrApi.url, args: ['--cache-dir', cacheDir, ...extra] })
  t.teardown(() => {
    if (t.passing() === false) process.stderr.write(`\n[e2e] proxy ${name} (last 30 lines)\n${proxy.service.logTail(30)}\n`)
  })
  return { ...proxy, cacheDir }
}

/** How many requests the registry has answered so far (a mark to count from). */
const mark = (): number => registryRequests(upstream.registry).length
/** The blob GETs the registry answered since `from`. */
const blobGetsSince = (from: number): string[] =>
  registryRequests(upstream.registry).slice(from).filter((line) => line.method === 'GET' && line.uri.includes('/blobs/')).map((line) => `${line.uri} -> ${line.status}`)
/** Whether the registry answered a request for the manifest of `tag` since `from`. */
const tagAskedSince = (from: number, tag: string): boolean =>
  registryRequests(upstream.registry).slice(from).some((line) => line.uri === `/v2/${REPO}/manifests/${tag}` && line.status === 200)

let containerds = 0
async function freshContainerd (): Promise<Containerd> {
  containerds += 1
  return await Containerd.start(t, join(dir, `containerd-${containerds}`))
}

t.test('docker: pull, rmi, pull again — the second pull fetches no blob from the registry', async (t) => {
  const proxy = await cachingProxy('docker')
  const containerd = await freshContainerd()
  const engine = await DockerEngine.start(t, join(dir, 'docker'), containerd, { outboundProxy: await closedPort() })
  const image = `${proxy.host}/${REPO}:v2s2`

  const before = mark()
  let started = Date.now()
  const first = await engine.docker(['pull', image])
  t.comment(`first pull ${Date.now() - started} ms`)
  t.equal(digestAfter('Digest:', first.stdout), digestOf('v2s2'), 'first pull: the registry\'s digest')
  const filled = blobGetsSince(before)
  // config + 3 layers
  t.equal(filled.length, 4, `first pull: the registry served the config and the three layers (${filled.join(', ')})`)

  await engine.docker(['rmi', image])
  const gone = await engine.docker(['image', 'ls', '--quiet', image])
  t.equal(gone.stdout.trim(), '', 'the image is gone from docker')

  const between = mark()
  started = Date.now()
  const second = await engine.docker(['pull', image])
  t.comment(`second pull ${Date.now() - started} ms`)
  t.equal(digestAfter('Digest:', second.stdout), digestOf('v2s2'), 'second pull: the same digest')
  t.match(second.stdout, /Pull complete/, 'docker did download the layers again (from the proxy)')
  t.same(blobGetsSince(between), [], 'second pull: no blob GET reached the registry')
  t.ok(tagAskedSince(between, 'v2s2'), 'the tag itself was still asked of the registry (tags always go upstream)')
  const { stdout } = await engine.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', image])
  t.ok((JSON.parse(stdout) as string[]).includes(`${proxy.host}/${REPO}@${digestOf('v2s2')}`), 'recorded under the registry\'s digest')
})

t.test('ctr: pull into one content store, then into a second — no blob GET the second time', async (t) => {
  const proxy = await cachingProxy('ctr')
  const image = `${proxy.host}/${REPO}:oci`
  const [first, second] = [await freshContainerd(), await freshContainerd()]

  const before = mark()
  await first.ctr(['images', 'pull', '--plain-http', image])
  t.equal(await first.imageDigest(image), digestOf('oci'), 'first pull: the registry\'s digest')
  t.equal(blobGetsSince(before).length, 4, 'first pull: the registry served the config and the three layers')

  const between = mark()
  await second.ctr(['images', 'pull', '--plain-http', image])
  t.equal(await second.imageDigest(image), digestOf('oci'), 'second pull (another containerd): the same digest')
  t.same(blobGetsSince(between), [], 'second pull: no blob GET reached the registry')
  t.ok(tagAskedSince(between, 'oci'), 'the tag itself was still asked of the registry (tags always go upstream)')
  const { stdout } = await second.ctr(['content', 'ls', '--quiet'])
  const layers = stored.get('oci')?.json.layers ?? []
  for (const layer of layers) t.ok(stdout.includes(layer.digest), `the second content store holds layer ${layer.digest.slice(0, 19)}`)
})

t.test('registry stopped: by digest from the cache; by tag only with --cache-serve-stale', async (t) => {
  const plain = await cachingProxy('offline-plain')
  const stale = await cachingProxy('offline-stale', ['--cache-serve-stale'])
  const digest = digestOf('oci')
  // Both caches filled while the registry is up (ctr: HEAD by tag, manifest, config, layers).
  for (const proxy of [plain, stale]) {
    const containerd = await freshContainerd()
    await containerd.ctr(['images', 'pull', '--plain-http', `${proxy.host}/${REPO}:oci`])
    t.equal(await containerd.imageDigest(`${proxy.host}/${REPO}:oci`), digest, `${proxy.host}: filled (registry up)`)
  }
  const online = await curl(['-H', `Accept: ${MANIFEST_TYPES.join(', ')}`, `${stale.url}/v2/${REPO}/manifests/oci`])
  t.equal(online.status, 200, 'registry up: GET manifest by tag -> 200')
  t.notOk('ecr-proxy-cache' in online.headers, 'registry up: a tag is answered by the registry, no stale header')

  await upstream.registry.service.stop()
  t.notOk(upstream.registry.service.running, 'the registry is stopped')

  for (const [name, proxy] of [['without --cache-serve-stale', plain], ['with --cache-serve-stale', stale]] as const) {
    const byDigest = `${proxy.host}/${REPO}@${digest}`
    const containerd = await freshContainerd()
    await containerd.ctr(['images', 'pull', '--plain-http', byDigest])
    t.equal(await containerd.imageDigest(byDigest), digest, `${name}: ctr pulls ${REPO}@${digest.slice(0, 19)} from the cache alone`)
  }

  const byTagPlain = `${plain.host}/${REPO}:oci`
  const refusedContainerd = await freshContainerd()
  const refused = await refusedContainerd.ctr(['images', 'pull', '--plain-http', byTagPlain]).then(() => undefined, (error: unknown) => error)
  t.ok(refused instanceof Error, 'without --cache-serve-stale: ctr cannot pull by tag')
  t.comment(`ctr says: ${refused instanceof Error ? (refused.message.split('\n')[0] ?? '') : '(it succeeded)'}`)
  const plainManifest = await curl(['-H', `Accept: ${MANIFEST_TYPES.join(', ')}`, `${plain.url}/v2/${REPO}/manifests/oci`])
  t.ok(plainManifest.status >= 500, `without --cache-serve-stale: GET manifest by tag -> ${plainManifest.status}`)
  t.notOk('ecr-proxy-cache' in plainManifest.headers, 'and no stale header')

  const byTagStale = `${stale.host}/${REPO}:oci`
  const staleContainerd = await freshContainerd()
  await staleContainerd.ctr(['images', 'pull', '--plain-http', byTagStale])
  t.equal(await staleContainerd.imageDigest(byTagStale), digest, 'with --cache-serve-stale: ctr pulls by tag, the last digest')
  const staleManifest = await curl(['-H', `Accept: ${MANIFEST_TYPES.join(', ')}`, `${stale.url}/v2/${REPO}/manifests/oci`])
  t.equal(staleManifest.status, 200, 'with --cache-serve-stale: GET manifest by tag -> 200')
  t.equal(staleManifest.headers['docker-content-digest'], digest, 'Docker-Content-Digest: the last digest')
  t.match(staleManifest.headers['ecr-proxy-cache'] ?? '', /^stale; tag-resolved-at=\d{4}-\d\d-\d\dT[\d:.]+Z$/, `Ecr-Proxy-Cache: ${staleManifest.headers['ecr-proxy-cache'] ?? '(absent)'}`)
  t.match(stale.service.logTail(200), /tag answered from the cache \(stale\)/, 'the proxy logged the stale answer')
})
