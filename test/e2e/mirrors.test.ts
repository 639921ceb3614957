/**
 * Mirrors: public registries served from an ECR pull-through cache. One ECR registry (named by
 * its production hostname, with the real registry as explicit upstream, alias `prod`) and
 * `mirrors: { docker.io: prod/docker-hub, registry.k8s.io: prod/k8s }`; no default registry, so
 * bare names are Docker Hub names. The cache's content is seeded straight into the registry
 * (images built offline with umoci), as a pull-through cache would hold it after a first pull.
 *
 * Real clients, named the way they are in production: dockerd with `registry-mirrors` pointing at
 * the proxy pulls `busybox:1.36`; ctr with hosts.toml files written by `client-config containerd`
 * pulls `docker.io/library/busybox:1.36` and `registry.k8s.io/pause:3.9`. Nothing may leave the
 * machine: dockerd's HTTP(S)_PROXY and every hosts.toml's `server` are closed 127.0.0.1 ports. A
 * push to a mirrored name is refused by the proxy, and nothing of it reaches the registry.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Containerd, curl, DockerEngine, Skopeo } from './harness/clients.js'
import { digestAfter } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { check } from './harness/process.js'
import { PROXY_CLI } from './harness/proxy.js'
import type { ManifestView } from './harness/registry-http.js'
import { registryRequests } from './harness/registry.js'
import { startSeveralStack, type RegionalUpstream } from './harness/stack.js'
import { closedPort, httpStatus, tempDir, waitFor } from './harness/util.js'

const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const EU = '600423610423.dkr.ecr.eu-west-1.amazonaws.com'

// Two registries, neither the default: bare names are Docker Hub names (a lone registry would be
// the default, and Docker's registry-mirrors would need --docker-hub-mirror-port).
const stack = await startSeveralStack(t, [{ host: PROD, alias: 'prod' }, { host: EU, alias: 'eu' }], {
  configLines: [
    'mirrors:',
    '  docker.io: { registry: prod, prefix: docker-hub }',
    '  registry.k8s.io: { registry: prod, prefix: k8s }',
  ],
})
const [prod, eu] = stack.upstreams as [RegionalUpstream, RegionalUpstream]
const proxy = stack.proxy.host
await waitFor('the proxy to hold a token', async () => (await httpStatus(`${stack.proxy.url}/readyz`)) === 200 ? true : undefined,
  { timeoutMs: 30_000, detail: () => stack.proxy.service.logTail(20) })

const dir = tempDir(t, 'mirrors')
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))

/** What the pull-through cache holds: busybox as a Docker manifest list, pause as an OCI manifest. */
async function seed (repository: string, tag: string, copyArgs: string[], image: 'base' | 'multi'): Promise<ManifestView> {
  const creds = `${prod.registry.verifier.user}:${prod.registry.verifier.password}`
  await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', creds, ...copyArgs, images.ref(image), `docker://${prod.registry.host}/${repository}:${tag}`])
  return await prod.direct.manifest(repository, tag)
}
const busybox = await seed('docker-hub/library/busybox', '1.36', ['--all', '--format', 'v2s2'], 'multi')
const pause = await seed('k8s/pause', '3.9', ['--format', 'oci'], 'base')

const containerd = await Containerd.start(t, join(dir, 'containerd'))

interface ProxyLogLine { msg?: string, method?: string, path?: string, status?: number, mirror?: string, upstreamRepository?: string }
function proxyRequests (): ProxyLogLine[] {
  return stack.proxy.service.logTail(1_000_000).split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as ProxyLogLine).filter((line) => line.msg === 'request')
}
const registryUris = (): string[] => registryRequests(prod.registry).map((line) => `${line.method} ${line.uri}`)

t.test('dockerd with registry-mirrors pulls busybox:1.36 from the cache', async (t) => {
  const engine = await DockerEngine.start(t, join(dir, 'docker'), containerd, {
    outboundProxy: await closedPort(),
    daemonConfig: { 'registry-mirrors': [stack.proxy.url] },
  })
  const info = await engine.docker(['info', '--format', '{{json .RegistryConfig.Mirrors}}'])
  t.same(JSON.parse(info.stdout), [`${stack.proxy.url}/`], 'dockerd took the proxy as its Docker Hub mirror')
  const pulled = await engine.docker(['pull', 'busybox:1.36'])
  t.equal(digestAfter('Digest:', pulled.stdout), busybox.digest, 'docker pull busybox:1.36: the digest the registry holds under docker-hub/library/busybox:1.36')
  const { stdout } = await engine.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', 'busybox:1.36'])
  t.same(JSON.parse(stdout), [`busybox@${busybox.digest}`], 'recorded as Docker Hub\'s busybox')
  t.ok(registryUris().includes('GET /v2/docker-hub/library/busybox/manifests/1.36'), 'the registry received GET /v2/docker-hub/library/busybox/manifests/1.36')
  const served = proxyRequests().filter((line) => line.path === '/v2/library/busybox/manifests/1.36' && line.status === 200)
  t.ok(served.length > 0 && served.every((line) => line.mirror === 'docker.io' && line.upstreamRepository === 'docker-hub/library/busybox'),
    'the proxy logged dockerd\'s bare /v2/library/busybox/manifests/1.36 as the docker.io mirror')
})

t.test('ctr pulls docker.io and registry.k8s.io names through hosts.toml files from client-config', async (t) => {
  const hostsDir = join(dir, 'hosts')
  const server = `http://127.0.0.1:${await closedPort()}`
  const written = await check('client-config', process.execPath, [PROXY_CLI, 'client-config', 'containerd', '--config', stack.configFile, '--dir', hostsDir, '--proxy', stack.proxy.url, '--server', server], { timeoutMs: 30_000 })
  t.comment(written.stdout.trim())
  for (const host of [PROD, EU, 'docker.io', 'registry.k8s.io']) {
    const toml = readFileSync(join(hostsDir, host, 'hosts.toml'), 'utf8')
    t.match(toml, `server = "${server}"`, `${host}/hosts.toml: the closed port is the last resort`)
    t.match(toml, `[host."${stack.proxy.url}"]`, `${host}/hosts.toml: the proxy is the mirror`)
  }
  t.comment(`docker.io/hosts.toml:\n${readFileSync(join(hostsDir, 'docker.io', 'hosts.toml'), 'utf8')}`)
  for (const [image, expected, upstreamPath] of [
    ['docker.io/library/busybox:1.36', busybox, 'docker-hub/library/busybox'],
    ['registry.k8s.io/pause:3.9', pause, 'k8s/pause'],
  ] as const) {
    await containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, image])
    t.equal(await containerd.imageDigest(image), expected.digest, `ctr pulled ${image}: the digest the registry holds under ${upstreamPath}`)
  }
  const uris = registryUris()
  t.ok(uris.some((uri) => uri.endsWith('/v2/k8s/pause/manifests/3.9')), 'the registry served /v2/k8s/pause/manifests/3.9')
  t.notOk(uris.some((uri) => uri.includes('ns=')), 'the registry never saw ns=')
  const routed = proxyRequests().filter((line) => line.path?.startsWith('/v2/pause/') === true)
  t.ok(routed.length > 0 && routed.every((line) => line.mirror === 'registry.k8s.io'), 'containerd\'s /v2/pause/… went to the registry.k8s.io mirror by its ns=')
})

t.test('a push to a mirrored name is refused with 403 DENIED, and nothing reaches the registry', async (t) => {
  const before = registryUris().length
  const pushed = await skopeo.attempt(['copy', '--dest-tls-verify=false', '--format', 'oci', images.ref('base'), `docker://${proxy}/docker.io/library/x:1`])
  t.not(pushed.code, 0, `skopeo copy to ${proxy}/docker.io/library/x:1 fails`)
  t.match(pushed.stderr, /denied|403/i, 'skopeo reports the refusal')
  for (const [what, url] of [
    ['hostname in the path', `${stack.proxy.url}/v2/docker.io/library/x/blobs/uploads/`],
    ['containerd\'s ns=', `${stack.proxy.url}/v2/pause/blobs/uploads/?ns=registry.k8s.io`],
    ['bare Docker Hub name', `${stack.proxy.url}/v2/library/x/blobs/uploads/`],
  ] as const) {
    const res = await curl(['-X', 'POST', url])
    t.equal(res.status, 403, `POST upload by ${what}: 403`)
    t.match(JSON.parse(res.body), { errors: [{ code: 'DENIED' }] }, `POST upload by ${what}: DENIED`)
  }
  const manifest = await curl(['-X', 'PUT', '-H', 'content-type: application/vnd.oci.image.manifest.v1+json', '--data-binary', '{}', `${stack.proxy.url}/v2/docker.io/library/busybox/manifests/1.36`])
  t.equal(manifest.status, 403, 'PUT manifest over docker.io/library/busybox:1.36: 403')
  t.match(JSON.parse(manifest.body), { errors: [{ code: 'DENIED' }] })
  const writes = registryUris().slice(before).filter((line) => !/^(GET|HEAD) /.test(line))
  t.same(writes, [], 'the registry received no POST, PUT, PATCH or DELETE')
  t.equal((await prod.direct.request('GET', '/v2/docker-hub/library/x/tags/list')).status, 404, 'no docker-hub/library/x in the registry')
  t.equal((await prod.direct.manifest('docker-hub/library/busybox', '1.36')).digest, busybox.digest, 'busybox:1.36 unchanged')
})

t.test('a lone registry with default: false: bare names are Docker Hub names (pull-only)', async (t) => {
  const lone = await startSeveralStack(t, [{ host: PROD, alias: 'prod', default: false }], { configLines: ['mirrors:', '  docker.io: { registry: prod, prefix: docker-hub }'] })
  const [only] = lone.upstreams as [RegionalUpstream]
  const creds = `${only.registry.verifier.user}:${only.registry.verifier.password}`
  await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', creds, '--format', 'oci', images.ref('base'), `docker://${only.registry.host}/docker-hub/library/busybox:1.36`])
  const held = await only.direct.manifest('docker-hub/library/busybox', '1.36')
  const pulled = await curl(['-H', `accept: ${held.mediaType}`, `${lone.proxy.url}/v2/library/busybox/manifests/1.36`])
  t.same([pulled.status, pulled.headers['docker-content-digest']], [200, held.digest], 'GET /v2/library/busybox/manifests/1.36 (Docker\'s mirror path) is docker-hub/library/busybox:1.36')
  const upload = await curl(['-X', 'POST', `${lone.proxy.url}/v2/library/x/blobs/uploads/`])
  t.equal(upload.status, 403, 'a bare push is refused')
  t.notOk(registryRequests(only.registry).some((line) => line.uri.includes('/library/x/')), 'nothing of it reached the registry')
})

t.test('one token per registry, and no request of the proxy refused by the registry', async (t) => {
  t.same([prod.tokens.issued.length, eu.tokens.issued.length], [1, 1], 'one token issued per registry')
  t.same(registryRequests(eu.registry).filter((line) => line.uri !== '/v2/').map((line) => `${line.method} ${line.uri}`), [], 'the registry without mirrors received nothing')
  const refused = registryRequests(prod.registry).filter((line) => line.status === 401 && line.user === undefined && line.uri !== '/v2/')
  t.same(refused.map((line) => `${line.method} ${line.uri}`), [], 'the registry refused no request of the proxy')
  t.notOk(registryUris().some((uri) => /docker\.io|registry\.k8s\.io|ns=/.test(uri)), 'the registry saw no public hostname and no ns=')
})
