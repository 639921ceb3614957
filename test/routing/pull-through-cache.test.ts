import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { request } from 'undici'
import { busyboxImage, buildConfiguredProxy, keptAliveClient } from '../helpers/configured-proxy.js'
import { startEcrApi } from '../helpers/ecr-api.js'
import { startEcrRegistry } from '../helpers/ecr-registry.js'
import { TokenAuthority } from '../helpers/token-authority.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const EU = '600423610423.dkr.ecr.eu-west-1.amazonaws.com'
const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`

/**
 * Two ECR-like registries behind the proxy, each holding what its pull-through cache would:
 * prod has docker-hub/library/busybox (Docker Hub's cache rule, prefix docker-hub), eu has
 * k8s/pause (registry.k8s.io's, prefix k8s).
 */
async function mirrorStack (t: Test, options: { withDefault: boolean }) {
  const east = new TokenAuthority()
  const west = new TokenAuthority()
  const prod = await startEcrRegistry({ authority: east, registryId: '600423610423' })
  const eu = await startEcrRegistry({ authority: west, registryId: '600423610423' })
  t.teardown(() => prod.close())
  t.teardown(() => eu.close())
  const api = await startEcrApi({ authority: east, proxyEndpoint: `https://${PROD}`, regions: { 'us-east-2': { authority: east, proxyEndpoint: `https://${PROD}` }, 'eu-west-1': { authority: west, proxyEndpoint: `https://${EU}` } } })
  t.teardown(() => api.close())

  const { layer, config, manifest } = busyboxImage()
  for (const blob of [layer, config]) prod.putBlob('docker-hub/library/busybox', blob)
  for (const tag of ['1.35', '1.36', 'latest']) prod.putManifest('docker-hub/library/busybox', tag, manifest, OCI_MANIFEST)
  eu.putBlob('k8s/pause', config)
  const pause = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length }, layers: [] }))
  eu.putManifest('k8s/pause', '3.9', pause, OCI_MANIFEST)

  const { built, logs } = await buildConfiguredProxy(t, api.url, [
    'registries:',
    `  - { registry: ${PROD}, upstream: "${prod.url}", alias: prod${options.withDefault ? ', default: true' : ''} }`,
    `  - { registry: ${EU}, upstream: "${eu.url}" }`,
    'mirrors:',
    '  docker.io: { registry: prod, prefix: docker-hub }',
    `  registry.k8s.io: { registry: ${EU}, prefix: k8s }`
  ])
  t.teardown(() => built.app.close())
  const url = await built.app.listen({ host: '127.0.0.1', port: 0 })
  await Promise.all(built.registries.map(async (r) => await built.credentials.get(r.credential).get()))
  const send = keptAliveClient(t)
  const call = async (method: string, path: string, headers: Record<string, string> = {}, body?: Buffer) => await send(`${url}${path}`, method, headers, body)
  return { prod, eu, call, logs, manifest: digestOf(manifest), pause: digestOf(pause), layer }
}

t.test('a mirrored name in every form is pulled from the cache prefix, with that registry\'s token', async (t) => {
  const { prod, eu, call, logs, manifest, pause, layer } = await mirrorStack(t, { withDefault: false })
  const forms = [
    ['/v2/library/busybox/manifests/1.36?ns=docker.io', 'containerd (ns=docker.io)'],
    ['/v2/library/busybox/manifests/1.36?ns=registry-1.docker.io', 'ns=registry-1.docker.io'],
    ['/v2/docker.io/library/busybox/manifests/1.36', 'host first in the path'],
    ['/v2/docker.io/busybox/manifests/1.36', 'host first, Docker Hub\'s short name'],
    ['/v2/library/busybox/manifests/1.36', 'Docker\'s registry-mirrors: no registry named, no default']
  ]
  for (const [path, form] of forms) {
    const before = prod.requests.length
    const res = await call('GET', path as string, { accept: OCI_MANIFEST })
    t.equal(res.status, 200, `${form}: status`)
    t.equal(res.headers['docker-content-digest'], manifest, `${form}: digest`)
    t.equal(digestOf(res.body), manifest, `${form}: bytes`)
    const sent = prod.requests.slice(before)
    t.same(sent.map((r) => `${r.method} ${r.url}`), ['GET /v2/docker-hub/library/busybox/manifests/1.36'], `${form}: what the registry received`)
    t.match(sent[0]?.headers.authorization, /^Basic /, `${form}: with prod's token`)
  }
  const head = await call('HEAD', '/v2/pause/manifests/3.9?ns=registry.k8s.io', { accept: OCI_MANIFEST })
  t.equal(head.status, 200)
  t.equal(head.headers['docker-content-digest'], pause)
  t.equal(eu.requests.at(-1)?.url, '/v2/k8s/pause/manifests/3.9', 'registry.k8s.io goes to eu under k8s/')

  // The blob: a 307 to storage, as ECR answers; the redirect is the client's to follow.
  const blob = await call('GET', `/v2/library/busybox/blobs/${digestOf(layer)}?ns=docker.io`)
  t.equal(blob.status, 307)
  t.equal(prod.requests.at(-1)?.url, `/v2/docker-hub/library/busybox/blobs/${digestOf(layer)}`)
  const stored = await request(String(blob.headers.location))
  t.equal(digestOf(Buffer.from(await stored.body.arrayBuffer())), digestOf(layer), 'the redirect serves the layer')

  const line = logs.lines.find((l) => l.msg === 'request' && l.path === '/v2/docker.io/busybox/manifests/1.36')
  t.match(line, { registry: PROD, mirror: 'docker.io', repository: 'docker.io/busybox', upstreamRepository: 'docker-hub/library/busybox', status: 200 }, 'the access log names the mirror and the cache repository')
})

t.test('tags/list and its Link come back under the client\'s name, without the prefix', async (t) => {
  const { prod, call } = await mirrorStack(t, { withDefault: false })
  const first = await call('GET', '/v2/docker.io/busybox/tags/list?n=2')
  t.equal(first.status, 200)
  t.same(JSON.parse(first.body.toString()), { name: 'docker.io/busybox', tags: ['1.35', '1.36'] })
  const link = String(first.headers.link)
  t.match(link, /^<\/v2\/docker\.io\/busybox\/tags\/list\?last=[^>]+&n=2>; rel="next"$/)
  const next = await call('GET', link.slice(1, link.indexOf('>')))
  t.same(JSON.parse(next.body.toString()), { name: 'docker.io/busybox', tags: ['latest'] })
  t.equal(prod.requests.at(-1)?.url.split('?')[0], '/v2/docker-hub/library/busybox/tags/list')
  const viaNs = await call('GET', '/v2/library/busybox/tags/list?ns=docker.io')
  t.same(JSON.parse(viaNs.body.toString()), { name: 'library/busybox', tags: ['1.35', '1.36', 'latest'] })
})

t.test('mirrored names are pull-only: push, delete and uploads are refused, nothing sent', async (t) => {
  const { prod, eu, call } = await mirrorStack(t, { withDefault: false })
  const before = [prod.requests.length, eu.requests.length]
  const refusals: Array<[string, string, string]> = [
    ['PUT', '/v2/library/busybox/manifests/1.37?ns=docker.io', 'PUT on a manifest'],
    ['DELETE', '/v2/docker.io/library/busybox/manifests/1.36', 'DELETE on a manifest'],
    ['POST', '/v2/library/busybox/blobs/uploads/', 'blob uploads'],
    ['PATCH', '/v2/pause/blobs/uploads/abc?ns=registry.k8s.io', 'blob uploads'],
    ['DELETE', `/v2/docker.io/busybox/blobs/sha256:${'a'.repeat(64)}`, 'DELETE on a blob']
  ]
  for (const [method, path, what] of refusals) {
    const host = path.includes('k8s') ? 'registry.k8s.io' : 'docker.io'
    const res = await call(method, path, { 'content-type': 'application/octet-stream' }, method === 'GET' || method === 'DELETE' ? undefined : Buffer.from('{}'))
    t.equal(res.status, 403, `${method} ${path}`)
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8')
    t.same(JSON.parse(res.body.toString()), { errors: [{ code: 'DENIED', message: `${host} is served pull-only from a pull-through cache: ${what} is not allowed` }] })
  }
  t.same([prod.requests.length, eu.requests.length], before, 'nothing reached either registry')
  const own = await call('POST', '/v2/prod/team/app/blobs/uploads/', { 'content-length': '0' })
  t.equal(own.status, 202, 'the registry\'s own names still take pushes')
})

t.test('with a default registry, bare names are its own; a hostname that is not mapped is refused', async (t) => {
  const { prod, call } = await mirrorStack(t, { withDefault: true })
  const bare = await call('GET', '/v2/library/busybox/manifests/1.36', { accept: OCI_MANIFEST })
  t.equal(bare.status, 404, 'the default registry has no library/busybox')
  t.equal(prod.requests.at(-1)?.url, '/v2/library/busybox/manifests/1.36')
  const before = prod.requests.length
  const quay = await call('GET', '/v2/quay.io/org/app/manifests/1')
  t.equal(quay.status, 404)
  t.match(JSON.parse(quay.body.toString()), { errors: [{ code: 'NAME_UNKNOWN' }] }, 'the registry\'s own answer')
  t.same(prod.requests.slice(before).map((r) => r.url), ['/v2/quay.io/org/app/manifests/1'], 'an unmapped dotted first component is a repository of the default, as before mirrors')
})

t.test('without a default: an unmapped hostname first is refused, never taken for a Docker Hub name', async (t) => {
  const { prod, eu, call } = await mirrorStack(t, { withDefault: false })
  const before = [prod.requests.length, eu.requests.length]
  const res = await call('GET', '/v2/quay.io/org/app/manifests/1')
  t.equal(res.status, 404)
  t.same(JSON.parse(res.body.toString()), { errors: [{ code: 'NAME_UNKNOWN', message: '"quay.io/org/app" names no configured registry: registries are addressed by containerd\'s ?ns=<registry host>, by the registry host or an alias as the first path component (localhost:5000/<host>/team/app), or bare for the default registry' }] })
  const ns = await call('GET', '/v2/org/app/manifests/1?ns=ghcr.io')
  t.equal(ns.status, 404)
  t.same([prod.requests.length, eu.requests.length], before, 'nothing sent')
  const ping = await call('GET', '/v2/')
  t.equal(ping.status, 200, 'Docker\'s ping before a mirror pull is the proxy\'s own')
  t.same(JSON.parse(ping.body.toString()), {})
})
