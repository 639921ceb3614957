import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../../src/app.js'
import { helpText, loadConfig, parseCommandLine } from '../../src/config/index.js'
import { busyboxImage, buildConfiguredProxy, keptAliveClient } from '../helpers/configured-proxy.js'
import { startEcrApi } from '../helpers/ecr-api.js'
import { startEcrRegistry } from '../helpers/ecr-registry.js'
import { logSink } from '../helpers/log-sink.js'
import { TokenAuthority } from '../helpers/token-authority.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const CLIENT_TOKEN = 'client-token-0123456789abcdef'
const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`
const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadConfig(parseCommandLine(argv), env)

/**
 * One ECR-like registry that is the default for bare names and also holds Docker Hub's pull-through
 * cache (prefix docker-hub); the proxy's main listener and its Docker Hub mirror listener.
 */
async function hubStack (t: Test, extra: string[] = []) {
  const authority = new TokenAuthority()
  const prod = await startEcrRegistry({ authority, registryId: '600423610423' })
  t.teardown(() => prod.close())
  const api = await startEcrApi({ authority, proxyEndpoint: `https://${PROD}` })
  t.teardown(() => api.close())
  const { layer, config, manifest } = busyboxImage()
  for (const blob of [layer, config]) prod.putBlob('docker-hub/library/busybox', blob)
  prod.putManifest('docker-hub/library/busybox', '1.36', manifest, OCI_MANIFEST)

  const { built, logs } = await buildConfiguredProxy(t, api.url, [
    'registries:',
    `  - { registry: ${PROD}, upstream: "${prod.url}", alias: prod, default: true }`,
    'mirrors:',
    '  docker.io: { registry: prod, prefix: docker-hub }',
    'listener: { dockerHubMirrorPort: 0 }'
  ], extra)
  let closed = false
  t.teardown(async () => { if (!closed) await built.app.close() })
  const main = await built.app.listen({ host: '127.0.0.1', port: 0 })
  t.ok(built.listenDockerHubMirror, 'the second listener is configured')
  const hub = await (built.listenDockerHubMirror as NonNullable<typeof built.listenDockerHubMirror>)('127.0.0.1', 0)
  await built.credentials.get(built.registries[0]?.credential as never).get()
  const send = keptAliveClient(t)
  const call = async (base: string, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer) => await send(`${base}${path}`, method, headers, body)
  const close = async () => {
    closed = true
    await built.app.close()
  }
  return { prod, main, hub, call, logs, close, metrics: async () => await built.metrics.registry.metrics(), manifest: digestOf(manifest) }
}

t.test('the second listener serves bare names from Docker Hub\'s cache while the main one keeps its default', async (t) => {
  const { prod, main, hub, call, logs, metrics, manifest } = await hubStack(t)
  t.not(hub, main)
  const own = await call(main, 'GET', '/v2/library/busybox/manifests/1.36', { accept: OCI_MANIFEST })
  t.equal(own.status, 404, 'on the main listener a bare name is the default registry\'s')
  t.equal(prod.requests.at(-1)?.url, '/v2/library/busybox/manifests/1.36')

  for (const path of ['/v2/library/busybox/manifests/1.36', '/v2/busybox/manifests/1.36']) {
    const before = prod.requests.length
    const res = await call(hub, 'GET', path, { accept: OCI_MANIFEST })
    t.equal(res.status, 200, `${path}: status`)
    t.equal(res.headers['docker-content-digest'], manifest, `${path}: digest header`)
    t.equal(digestOf(res.body), manifest, `${path}: bytes`)
    const sent = prod.requests.slice(before)
    t.same(sent.map((r) => `${r.method} ${r.url}`), ['GET /v2/docker-hub/library/busybox/manifests/1.36'], `${path}: what the registry received`)
    t.match(sent[0]?.headers.authorization, /^Basic /, 'with the registry\'s token')
  }
  const ping = await call(hub, 'GET', '/v2/')
  t.equal(ping.status, 200, 'Docker pings the mirror first')
  t.equal(ping.headers['docker-distribution-api-version'], 'registry/2.0')

  const line = logs.lines.find((l) => l.msg === 'request' && l.path === '/v2/busybox/manifests/1.36')
  t.match(line, { registry: PROD, mirror: 'docker.io', repository: 'busybox', upstreamRepository: 'docker-hub/library/busybox', status: 200 }, 'the access log, as on the main listener')
  t.match(await metrics(), `ecr_proxy_requests_total{method="GET",kind="manifest",status="200",registry="${PROD}"} 2\n`, 'and the request metrics')
})

t.test('pull only, and refused before anything is sent', async (t) => {
  const { prod, hub, call } = await hubStack(t)
  const before = prod.requests.length
  const put = await call(hub, 'PUT', '/v2/library/busybox/manifests/1.37', { 'content-type': OCI_MANIFEST }, Buffer.from('{}'))
  t.equal(put.status, 403)
  t.same(JSON.parse(put.body.toString()), { errors: [{ code: 'DENIED', message: 'docker.io is served pull-only from a pull-through cache: PUT on a manifest is not allowed' }] })
  const upload = await call(hub, 'POST', '/v2/library/busybox/blobs/uploads/', { 'content-length': '0' })
  t.equal(upload.status, 403)
  t.same(JSON.parse(upload.body.toString()), { errors: [{ code: 'DENIED', message: 'docker.io is served pull-only from a pull-through cache: blob uploads is not allowed' }] })
  t.equal(prod.requests.length, before, 'nothing reached the registry')
})

t.test('client authentication and the preflight apply on the second listener too', async (t) => {
  const authed = await hubStackWithTokens(t)
  const before = authed.prod.requests.length
  const anonymous = await authed.call(authed.hub, 'GET', '/v2/library/busybox/manifests/1.36', { accept: OCI_MANIFEST })
  t.equal(anonymous.status, 401)
  t.equal(anonymous.headers['www-authenticate'], 'Basic realm="ecr-auth-proxy"')
  t.equal(authed.prod.requests.length, before, 'nothing sent without client credentials')
  const withToken = await authed.call(authed.hub, 'GET', '/v2/library/busybox/manifests/1.36', { accept: OCI_MANIFEST, authorization: `Bearer ${CLIENT_TOKEN}` })
  t.equal(withToken.status, 200)
  t.equal(withToken.headers['docker-content-digest'], authed.manifest)
  t.not(authed.prod.requests.at(-1)?.headers.authorization, `Bearer ${CLIENT_TOKEN}`, 'the client\'s credential is not forwarded')

  // An absolute-form target, as a forward proxy would get it: refused by the preflight.
  const port = new URL(authed.hub).port
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => {
      socket.write(`GET http://registry-1.docker.io/v2/library/busybox/manifests/1.36 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
    })
    let data = ''
    socket.on('data', (chunk: Buffer) => { data += chunk.toString() })
    socket.on('end', () => { resolve(data) })
    socket.on('error', reject)
  })
  t.match(answer, /^HTTP\/1\.1 400 /)
  t.match(answer, /"message":"absolute-form request targets are not accepted; this is not a forward proxy"/)
  t.equal(authed.prod.requests.filter((r) => r.url.includes('manifests/1.36')).length, 1, 'the absolute form was never forwarded')
})

async function hubStackWithTokens (t: Test) {
  const file = join(mkdtempSync(join(tmpdir(), 'ecr-proxy-hub-tokens-')), 'tokens')
  writeFileSync(file, `${CLIENT_TOKEN}\n`)
  return await hubStack(t, ['--bearer-tokens-file', file])
}

t.test('closed with the app: the port stops accepting', async (t) => {
  const { hub, call, close } = await hubStack(t)
  t.equal((await call(hub, 'GET', '/v2/')).status, 200)
  await close()
  const port = Number(new URL(hub).port)
  const error = await new Promise<NodeJS.ErrnoException>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => { socket.destroy(); resolve(Object.assign(new Error('connected'), { code: 'CONNECTED' })) })
    socket.on('error', resolve)
  })
  t.equal(error.code, 'ECONNREFUSED')
})

t.test('--docker-hub-mirror-port, ECR_PROXY_DOCKER_HUB_MIRROR_PORT, listener.dockerHubMirrorPort; it needs a docker.io mirror', async (t) => {
  const base = ['--registry', `${PROD}=prod`, '--mirror', 'docker.io=prod/docker-hub']
  t.equal(load([...base, '--docker-hub-mirror-port', '5001']).listener.dockerHubMirrorPort, 5001)
  t.equal(load(base, { ECR_PROXY_DOCKER_HUB_MIRROR_PORT: '5002' }).listener.dockerHubMirrorPort, 5002)
  t.equal(load(base).listener.dockerHubMirrorPort, undefined, 'off by default')
  t.equal(load(['--registry', `${PROD}=prod`, '--mirror', 'registry-1.docker.io=prod/docker-hub', '--docker-hub-mirror-port', '5001']).listener.dockerHubMirrorPort, 5001, 'Docker Hub by any of its names')
  t.throws(() => load(['--registry', `${PROD}=prod`, '--mirror', 'registry.k8s.io=prod/k8s', '--docker-hub-mirror-port', '5001']), { message: 'invalid configuration: dockerHubMirrorPort (from --docker-hub-mirror-port) serves only the docker.io mirror, and none is configured (--mirror docker.io=REGISTRY/PREFIX), got 5001' })
  t.throws(() => load(base, { ECR_PROXY_DOCKER_HUB_MIRROR_PORT: '5000' }), { message: 'invalid configuration: dockerHubMirrorPort (from ECR_PROXY_DOCKER_HUB_MIRROR_PORT) must differ from listener.port, got 5000' })
  t.throws(() => load([...base, '--docker-hub-mirror-port', '70000']), { message: 'invalid configuration: dockerHubMirrorPort (from --docker-hub-mirror-port) must be a whole number, at least 0 and at most 65535, got 70000' })
  t.match(helpText(), /--docker-hub-mirror-port N\s+ECR_PROXY_DOCKER_HUB_MIRROR_PORT\s+also listen on this port/)
  const { listenDockerHubMirror } = await buildApp(load(base), { fetchToken: async () => ({ token: 'QVdTOnB3', expiresAt: new Date(Date.now() + 3_600_000) }), logger: logSink('silent').logger }).then(async (built) => { await built.app.close(); return built })
  t.equal(listenDockerHubMirror, undefined, 'no second listener unless configured')
})
