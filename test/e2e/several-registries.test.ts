/**
 * One proxy, two ECR registries in two regions, each named by its production hostname: one config
 * file (`registries:` with an alias and an explicit upstream each), two real registries that each
 * accept only the live tokens of their own region, one ECR API stand-in that issues a region's
 * token to a request signed for that region. The proxy's own AWS_REGION is a third region, so a
 * token asked for in the wrong region would show (and be refused by the stand-in).
 *
 * Real clients name the registries the ways the proxy routes them: containerd's mirror
 * (`ctr images pull --hosts-dir`, `?ns=<host>`), the hostname as the first path component
 * (skopeo, docker) and an alias (skopeo, podman). Every hosts.toml sets the root `server` to a
 * closed port on 127.0.0.1 and dockerd's HTTP(S)_PROXY to another, so nothing leaves the machine.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Containerd, curl, DockerEngine, mirrorHostsDir, Podman, Skopeo } from './harness/clients.js'
import { digestAfter } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { skopeoPull } from './harness/pulls.js'
import type { ManifestView } from './harness/registry-http.js'
import { registryRequests } from './harness/registry.js'
import { startSeveralStack, type RegionalUpstream } from './harness/stack.js'
import { closedPort, httpStatus, tempDir, waitFor } from './harness/util.js'

const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const EU = '600423610423.dkr.ecr.eu-west-1.amazonaws.com'
const GET_AUTHORIZATION_TOKEN = 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken'

const stack = await startSeveralStack(t, [{ host: PROD, alias: 'prod' }, { host: EU, alias: 'eu' }], { proxyEnv: { AWS_REGION: 'ap-southeast-2' } })
const [prod, eu] = stack.upstreams as [RegionalUpstream, RegionalUpstream]
const proxy = stack.proxy.host
// Ready = a token held for every registry; the proxy fetches them at start, before any client.
await waitFor('the proxy to hold a token for both registries', async () => (await httpStatus(`${stack.proxy.url}/readyz`)) === 200 ? true : undefined,
  { timeoutMs: 30_000, detail: () => stack.proxy.service.logTail(20) })
const tokenCalls = () => stack.ecrApi.calls.filter((call) => call.target === GET_AUTHORIZATION_TOKEN).map((call) => call.region ?? '(unsigned)')
const callsAtStart = tokenCalls()

const dir = tempDir(t, 'several')
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const containerd = await Containerd.start(t, join(dir, 'containerd'))
const engine = await DockerEngine.start(t, join(dir, 'docker'), containerd, { outboundProxy: await closedPort() })

/** The same repository and tag in both registries, holding different images: a misroute shows as the wrong digest. */
const REPO = 'team/app'
const TAG = '1.2'
async function seed (upstream: RegionalUpstream, copyArgs: string[], image: 'base' | 'multi'): Promise<ManifestView> {
  const creds = `${upstream.registry.verifier.user}:${upstream.registry.verifier.password}`
  await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', creds, ...copyArgs, images.ref(image), `docker://${upstream.registry.host}/${REPO}:${TAG}`])
  return await upstream.direct.manifest(REPO, TAG)
}
const seeded = new Map<RegionalUpstream, ManifestView>([
  [prod, await seed(prod, ['--format', 'v2s2'], 'base')],
  [eu, await seed(eu, ['--all'], 'multi')],
])
const held = (upstream: RegionalUpstream): string => seeded.get(upstream)?.digest ?? ''

interface ProxyLogLine { msg?: string, method?: string, path?: string, registry?: string, status?: number }
function proxyRequests (): ProxyLogLine[] {
  return stack.proxy.service.logTail(1_000_000).split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as ProxyLogLine).filter((line) => line.msg === 'request')
}

t.test('one GetAuthorizationToken per region at start; each registry accepts its own region\'s token only', async (t) => {
  t.same([...callsAtStart].sort(), ['eu-west-1', 'us-east-2'], 'the ECR API saw one token request signed for each registry\'s region, none for AWS_REGION')
  const ready = JSON.parse((await curl([`${stack.proxy.url}/readyz`])).body) as { upstreams: Array<{ registry: string, alias?: string, credential: string }> }
  t.same(ready.upstreams.map(({ registry, alias, credential }) => ({ registry, alias, credential })), [
    { registry: PROD, alias: 'prod', credential: 'ecr:us-east-2' },
    { registry: EU, alias: 'eu', credential: 'ecr:eu-west-1' },
  ], '/readyz names both registries by hostname, each with its region\'s credential')
  for (const [own, other] of [[prod, eu], [eu, prod]] as const) {
    const token = own.tokens.current()
    t.ok(token, `${own.region}: a token was issued`)
    const basic = { authorization: `Basic ${token?.authorizationToken ?? ''}` }
    t.equal(await httpStatus(`${own.registry.url}/v2/`, { headers: basic }), 200, `the ${own.region} token opens the ${own.region} registry`)
    t.equal(await httpStatus(`${other.registry.url}/v2/`, { headers: basic }), 401, `and is refused by the ${other.region} registry`)
  }
  t.not(held(prod), held(eu), `${REPO}:${TAG} holds a different image in each registry`)
})

t.test('ctr pulls from both registries by their production names, through hosts.toml mirrors', async (t) => {
  const hostsDir = mirrorHostsDir(join(dir, 'hosts'), [PROD, EU], stack.proxy.url, `http://127.0.0.1:${await closedPort()}`)
  t.comment(`${PROD}/hosts.toml:\n${readFileSync(join(hostsDir, PROD, 'hosts.toml'), 'utf8')}`)
  for (const upstream of [prod, eu]) {
    const image = `${upstream.host}/${REPO}:${TAG}`
    const all = upstream === eu ? ['--all-platforms'] : []
    await containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, ...all, image])
    t.equal(await containerd.imageDigest(image), held(upstream), `ctr pulled ${image}: the ${upstream.region} registry's digest`)
  }
  // Bare paths, routed by ?ns= alone (there is no default registry); ns never reaches a registry.
  const manifests = proxyRequests().filter((line) => line.path === `/v2/${REPO}/manifests/${TAG}` && line.status === 200)
  t.same([...new Set(manifests.map((line) => line.registry))].sort(), [EU, PROD].sort(), `/v2/${REPO}/manifests/${TAG} went to each registry by its ns=`)
  for (const upstream of [prod, eu]) {
    const uris = registryRequests(upstream.registry).map((line) => line.uri)
    t.notOk(uris.some((uri) => uri.includes('ns=')), `the ${upstream.region} registry never saw ns=`)
    t.ok(uris.some((uri) => uri === `/v2/${REPO}/manifests/${TAG}`), `the ${upstream.region} registry served the bare manifest path`)
  }
})

t.test('skopeo pushes and pulls by hostname in the path and by alias', async (t) => {
  // Push to the second registry by its hostname.
  const toEu = join(dir, 'eu-pushed.digest')
  await skopeo.run(['copy', '--dest-tls-verify=false', '--digestfile', toEu, '--format', 'oci', images.ref('base'), `docker://${proxy}/${EU}/team/pushed:1`])
  const euStored = await eu.direct.manifest('team/pushed', '1')
  t.equal(readFileSync(toEu, 'utf8').trim(), euStored.digest, `push to ${proxy}/${EU}/team/pushed:1: skopeo reports the digest the eu-west-1 registry holds`)
  t.equal(euStored.digest, images.digest('base'), 'the very bytes pushed')
  for (const layer of euStored.json.layers ?? []) t.equal(await eu.direct.blobStatus('team/pushed', layer.digest), 200, `layer ${layer.digest.slice(0, 19)} is in the eu-west-1 registry`)
  t.equal((await prod.direct.request('GET', '/v2/team/pushed/tags/list')).status, 404, 'nothing of it reached the us-east-2 registry')

  // Push to the first by its alias (the same layers: a mount from the other registry must not be asked of this one).
  const toProd = join(dir, 'prod-pushed.digest')
  await skopeo.run(['copy', '--dest-tls-verify=false', '--digestfile', toProd, '--all', images.ref('multi'), `docker://${proxy}/prod/team/pushed:1`])
  const prodStored = await prod.direct.manifest('team/pushed', '1')
  t.equal(readFileSync(toProd, 'utf8').trim(), prodStored.digest, `push to ${proxy}/prod/team/pushed:1: skopeo reports the digest the us-east-2 registry holds`)
  t.equal(prodStored.digest, images.digest('multi'), 'the very bytes pushed (an OCI index)')
  t.same(await eu.direct.tags('team/pushed'), ['1'], 'the eu-west-1 registry still holds its own')
  t.equal((await eu.direct.manifest('team/pushed', '1')).digest, euStored.digest)

  // tags/list answers under the name the client used (here the hostname in the path).
  const listed = JSON.parse((await skopeo.run(['list-tags', '--tls-verify=false', `docker://${proxy}/${EU}/team/pushed`])).stdout) as { Repository: string, Tags: string[] }
  t.same(listed, { Repository: `${proxy}/${EU}/team/pushed`, Tags: ['1'] }, 'list-tags by hostname: the eu-west-1 registry\'s tags')

  // Pulls, each form against each registry; the digest checked against what the registry holds.
  for (const [image, upstream] of [
    [`${proxy}/${PROD}/${REPO}:${TAG}`, prod],
    [`${proxy}/${EU}/${REPO}:${TAG}`, eu],
    [`${proxy}/prod/${REPO}:${TAG}`, prod],
    [`${proxy}/eu/${REPO}:${TAG}`, eu],
    [`${proxy}/eu/team/pushed:1`, eu],
    [`${proxy}/${PROD}/team/pushed:1`, prod],
  ] as const) {
    const expected = image.includes('pushed') ? await upstream.direct.manifest('team/pushed', '1') : seeded.get(upstream) as ManifestView
    await skopeoPull(skopeo, dir, image, expected)
    t.pass(`skopeo pulled ${image}: the ${upstream.region} registry's ${expected.digest.slice(0, 19)}`)
  }
})

t.test('docker pulls from both registries by hostname in the path', async (t) => {
  for (const upstream of [prod, eu]) {
    const image = `${proxy}/${upstream.host}/${REPO}:${TAG}`
    const pulled = await engine.docker(['pull', image])
    t.equal(digestAfter('Digest:', pulled.stdout), held(upstream), `docker pull ${image}: the ${upstream.region} registry's digest`)
    const { stdout } = await engine.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', image])
    t.ok((JSON.parse(stdout) as string[]).includes(`${proxy}/${upstream.host}/${REPO}@${held(upstream)}`), 'recorded under the name pulled')
  }
})

t.test('docker pushes by hostname in the path: a mount within one registry, none across', async (t) => {
  const pulled = `${proxy}/${EU}/${REPO}:${TAG}`
  const pushes = [
    { target: `${proxy}/${EU}/team/docker:1`, upstream: eu, repository: 'team/docker' },
    // Same layers, same registry: docker asks for a mount from ${EU}/team/docker (from= names the host).
    { target: `${proxy}/${EU}/team/docker-mounted:1`, upstream: eu, repository: 'team/docker-mounted', mountedFrom: `${EU}/team/docker` },
    // Same layers, the other registry: docker's mount from ${EU}/… is dropped, an ordinary upload follows.
    { target: `${proxy}/${PROD}/team/docker:1`, upstream: prod, repository: 'team/docker' },
  ] as const
  for (const { target, upstream, repository, ...rest } of pushes) {
    await engine.docker(['tag', pulled, target])
    const pushed = await engine.docker(['push', target])
    const stored = await upstream.direct.manifest(repository, '1')
    t.equal(digestAfter('digest:', pushed.stdout), stored.digest, `docker push ${target}: the digest the ${upstream.region} registry holds`)
    for (const layer of stored.json.layers ?? []) t.equal(await upstream.direct.blobStatus(repository, layer.digest), 200, `layer ${layer.digest.slice(0, 19)} is in the ${upstream.region} registry`)
    if ('mountedFrom' in rest) t.match(pushed.stdout, `Mounted from ${rest.mountedFrom}`, `layers mounted from ${rest.mountedFrom}, not uploaded again`)
    else t.notMatch(pushed.stdout, 'Mounted from', 'nothing mounted')
  }
})

t.test('podman pulls and pushes by alias', async (t) => {
  const podman = new Podman(join(dir, 'podman'))
  const image = `${proxy}/eu/${REPO}:${TAG}`
  await podman.run(['pull', '--tls-verify=false', image])
  const { stdout } = await podman.run(['image', 'inspect', '--format', '{{json .RepoDigests}}', image])
  t.ok((JSON.parse(stdout) as string[]).includes(`${proxy}/eu/${REPO}@${held(eu)}`), `podman pull ${image}: the eu-west-1 registry's digest`)
  // What came from one registry goes to the other, by its alias.
  const digestFile = join(dir, 'podman.digest')
  await podman.run(['push', '--tls-verify=false', '--format', 'oci', '--digestfile', digestFile, image, `docker://${proxy}/prod/team/podman:1`])
  const stored = await prod.direct.manifest('team/podman', '1')
  t.equal(readFileSync(digestFile, 'utf8').trim(), stored.digest, `podman push to ${proxy}/prod/team/podman:1: the digest the us-east-2 registry holds`)
  for (const layer of stored.json.layers ?? []) t.equal(await prod.direct.blobStatus('team/podman', layer.digest), 200, `layer ${layer.digest.slice(0, 19)} is in the us-east-2 registry`)
})

t.test('with no default registry, the proxy answers the bare ping and refuses bare names', async (t) => {
  const ping = await curl([`${stack.proxy.url}/v2/`])
  t.equal(ping.status, 200, 'GET /v2/ answered by the proxy')
  const bare = await curl([`${stack.proxy.url}/v2/${REPO}/manifests/${TAG}`])
  t.equal(bare.status, 404)
  t.match(JSON.parse(bare.body), { errors: [{ code: 'NAME_UNKNOWN' }] }, 'a bare name reaches no registry')
})

t.test('still one token per region at the end', async (t) => {
  t.same(tokenCalls(), callsAtStart, 'no GetAuthorizationToken after the start: every client was served with the tokens fetched then')
  t.same([prod.tokens.issued.length, eu.tokens.issued.length], [1, 1], 'one token issued per region')
  for (const upstream of [prod, eu]) {
    // A hostname, an alias or ns= is the proxy's to read: none reached a registry, not even in a mount's from=.
    const leaked = registryRequests(upstream.registry).map((line) => line.uri).filter((uri) => /dkr\.ecr|[?&]ns=|^\/v2\/(?:prod|eu)\/|from=(?:prod|eu)(?:\/|%2F)/i.test(uri))
    t.same(leaked, [], `the ${upstream.region} registry saw only its own repository names`)
    const refused = registryRequests(upstream.registry).filter((line) => line.status === 401 && line.user === undefined && line.uri !== '/v2/')
    t.same(refused.map((line) => `${line.method} ${line.uri}`), [], `the ${upstream.region} registry refused no request of the proxy`)
  }
})
