/**
 * ECR Public (`public.ecr.aws`): the registry token flow against a real registry. Debian's
 * docker-registry (distribution 2.8) with `auth: token` (realm = a test token server on another
 * 127.0.0.1 port, its own service and issuer, rootcertbundle = a self-signed certificate made with
 * openssl) refuses every request without a bearer JWT signed by that certificate's key (RS256,
 * `x5c` header). The proxy is configured with `registries: [{ registry: public.ecr.aws, upstream:
 * <the registry>, alias: pub, anonymous: true }]`, so AWS is never asked: it follows the 401 to the
 * realm, fetches a pull token for the repository's scope, and sends it as `Authorization: Bearer`.
 *
 * Pulls: skopeo by alias and by hostname in the path, ctr through a hosts.toml for public.ecr.aws
 * (its `server` a closed 127.0.0.1 port). Digests = the registry's; the token server saw the
 * proxy's requests with the right service and scope; the registry saw exactly one request without
 * a bearer (the first, answered 401) and refused none with one.
 */
import { createSign, randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { Containerd, mirrorHostsDir, Skopeo } from './harness/clients.js'
import { buildTestImages } from './harness/images.js'
import { check, startService } from './harness/process.js'
import { startProxy } from './harness/proxy.js'
import { RegistryHttp, type ManifestView } from './harness/registry-http.js'
import { skopeoPull } from './harness/pulls.js'
import { closedPort, freePort, httpStatus, tempDir, waitFor } from './harness/util.js'

const SERVICE = 'e2e-public'
const ISSUER = 'e2e-token-issuer'
const REPO = 'nginx/nginx'
const TAG = 'stable'

const dir = tempDir(t, 'ecr-public')

// The token issuer's key and self-signed certificate: the registry's whole trust (rootcertbundle).
const keyPath = join(dir, 'issuer.key')
const certPath = join(dir, 'issuer.crt')
await check('openssl', 'openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=${ISSUER}`])
const key = readFileSync(keyPath, 'utf8')
const certDer = Buffer.from(readFileSync(certPath, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64')

interface Access { type: 'repository', name: string, actions: string[] }

/** A JWT distribution 2.8 accepts: RS256, the certificate as `x5c`, the claims its token spec needs. */
function signToken (subject: string, access: Access[], lifeSeconds = 300): string {
  const now = Math.floor(Date.now() / 1000)
  const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const header = b64({ typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] })
  const claims = b64({ iss: ISSUER, sub: subject, aud: SERVICE, exp: now + lifeSeconds, nbf: now - 10, iat: now, jti: randomUUID(), access })
  const signature = createSign('RSA-SHA256').update(`${header}.${claims}`).sign(key).toString('base64url')
  return `${header}.${claims}.${signature}`
}

// The test token server: anonymous pull tokens for whatever repositories are asked (as ECR Public's
// /token/ does for public repositories); never push.
interface TokenRequest { path: string, service: string | null, scopes: string[], authorization: string | undefined }
const tokenRequests: TokenRequest[] = []
const tokenServer = createServer((req: IncomingMessage, res) => {
  const url = new URL(req.url ?? '/', 'http://token.invalid')
  const scopes = url.searchParams.getAll('scope')
  tokenRequests.push({ path: url.pathname, service: url.searchParams.get('service'), scopes, authorization: req.headers.authorization })
  if (url.pathname !== '/token/' || url.searchParams.get('service') !== SERVICE) {
    res.writeHead(400, { 'content-type': 'application/json' }).end('{"errors":[{"code":"BAD_REQUEST"}]}')
    return
  }
  const access: Access[] = []
  for (const scope of scopes) {
    const match = /^repository:([^:]+):(.+)$/.exec(scope)
    if (match !== null && (match[2] as string).split(',').includes('pull')) access.push({ type: 'repository', name: match[1] as string, actions: ['pull'] })
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: signToken('anonymous', access), expires_in: 300, issued_at: new Date().toISOString() }))
})
await new Promise<void>((resolve) => tokenServer.listen(0, '127.0.0.1', resolve))
t.teardown(() => { tokenServer.close() })
const realm = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token/`

// The registry enforcing bearer tokens from that realm.
const registryDir = join(dir, 'registry')
const configPath = join(dir, 'registry.yml')
const registryPort = await freePort()
writeFileSync(configPath, [
  'version: 0.1',
  'log:',
  '  level: info',
  '  formatter: json',
  '  accesslog: { disabled: true }',
  'storage:',
  `  filesystem: { rootdirectory: ${JSON.stringify(join(registryDir, 'data'))} }`,
  '  maintenance: { uploadpurging: { enabled: false } }',
  'http:',
  `  addr: 127.0.0.1:${registryPort}`,
  '  secret: e2e-ecr-public',
  'auth:',
  '  token:',
  `    realm: ${JSON.stringify(realm)}`,
  `    service: ${SERVICE}`,
  `    issuer: ${ISSUER}`,
  `    rootcertbundle: ${JSON.stringify(certPath)}`,
  '',
].join('\n'))
const service = startService(t, 'docker-registry', 'docker-registry', ['serve', configPath], {
  cwd: dir,
  logFile: join(dir, 'registry.log'),
  env: { PATH: process.env.PATH, HOME: dir },
})
const registryUrl = `http://127.0.0.1:${registryPort}`
await waitFor('docker-registry (token auth) to listen', async () => {
  if (!service.running) throw new Error(`docker-registry exited:\n${service.logTail()}`)
  return (await httpStatus(`${registryUrl}/v2/`)) === 401 ? true : undefined
}, { timeoutMs: 20_000, detail: () => service.logTail() })

/** distribution logs, per request id, "authorized request" or "error authorizing context: …". */
interface AuthLine { method: string, uri: string, agent: string, outcome: 'authorized' | 'no bearer' | 'refused' }
function authLines (): AuthLine[] {
  const lines: AuthLine[] = []
  for (const text of service.logTail(1_000_000).split('\n')) {
    if (!text.startsWith('{')) continue
    const entry = JSON.parse(text) as Record<string, unknown>
    const msg = String(entry.msg)
    const outcome = msg === 'authorized request' ? 'authorized' : msg === 'error authorizing context: authorization token required' ? 'no bearer' : msg.startsWith('error authorizing context') ? 'refused' : undefined
    if (outcome === undefined) continue
    lines.push({ method: String(entry['http.request.method']), uri: String(entry['http.request.uri']), agent: String(entry['http.request.useragent']), outcome })
  }
  return lines
}

/** The registry read directly, with a bearer of its own (subject e2e-verifier). */
class BearerHttp extends RegistryHttp {
  readonly #token: string
  constructor (base: string, token: string) {
    super(base)
    this.#token = token
  }

  override async request (method: string, path: string, init: { headers?: Record<string, string>, body?: Buffer | string } = {}): ReturnType<RegistryHttp['request']> {
    return await super.request(method, path, { ...init, headers: { ...init.headers, authorization: `Bearer ${this.#token}` } })
  }
}
const direct = new BearerHttp(registryUrl, signToken('e2e-verifier', [{ type: 'repository', name: REPO, actions: ['pull'] }]))

// Seed: the umoci image, pushed straight to the registry with a push token signed here.
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const pushToken = signToken('e2e-seeder', [{ type: 'repository', name: REPO, actions: ['pull', 'push'] }])
await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-registry-token', pushToken, '--format', 'oci', images.ref('base'), `docker://127.0.0.1:${registryPort}/${REPO}:${TAG}`])
const held: ManifestView = await direct.manifest(REPO, TAG)
const seeded = authLines().length

// The proxy: ECR Public by an explicit upstream, anonymous (no AWS call; the ECR API URL is closed).
const proxyDir = join(dir, 'proxy')
const proxyConfig = join(dir, 'registries.yaml')
writeFileSync(proxyConfig, `registries:\n  - { registry: public.ecr.aws, upstream: "${registryUrl}", alias: pub, anonymous: true }\n`)
mkdirSync(proxyDir)
const proxy = await startProxy(t, proxyDir, { configFile: proxyConfig, ecrApiUrl: `http://127.0.0.1:${await closedPort()}` })

t.test('the registry refuses what has no bearer, and names the realm', async (t) => {
  const res = await fetch(`${registryUrl}/v2/${REPO}/manifests/${TAG}`, { headers: { 'user-agent': 'e2e-probe' } })
  t.equal(res.status, 401)
  t.match(res.headers.get('www-authenticate') ?? '', `Bearer realm="${realm}",service="${SERVICE}",scope="repository:${REPO}:pull"`)
  t.match(held.digest, /^sha256:[0-9a-f]{64}$/, `the registry holds ${REPO}:${TAG}`)
})

t.test('skopeo pulls through the proxy by alias and by hostname in the path', async (t) => {
  for (const image of [`${proxy.host}/pub/${REPO}:${TAG}`, `${proxy.host}/public.ecr.aws/${REPO}:${TAG}`]) {
    const { stdout } = await skopeo.run(['inspect', '--tls-verify=false', `docker://${image}`])
    t.equal((JSON.parse(stdout) as { Digest: string }).Digest, held.digest, `skopeo inspect ${image}: the registry's digest`)
    await skopeoPull(skopeo, dir, image, held)
    t.pass(`skopeo copy ${image}: the manifest the registry holds, every blob`)
  }
})

t.test('ctr pulls public.ecr.aws/… through a hosts.toml mirror', async (t) => {
  const containerd = await Containerd.start(t, join(dir, 'containerd'))
  const hostsDir = mirrorHostsDir(join(dir, 'hosts'), ['public.ecr.aws'], proxy.url, `http://127.0.0.1:${await closedPort()}`)
  const image = `public.ecr.aws/${REPO}:${TAG}`
  await containerd.ctr(['images', 'pull', '--hosts-dir', hostsDir, image])
  t.equal(await containerd.imageDigest(image), held.digest, `ctr pulled ${image}: the registry's digest`)
})

t.test('the token server and the registry saw the token flow, and nothing else', async (t) => {
  const fromProxy = tokenRequests
  t.ok(fromProxy.length > 0, `the proxy asked the token server ${fromProxy.length} time(s)`)
  t.ok(fromProxy.every((r) => r.path === '/token/' && r.service === SERVICE), 'every token request: /token/ with the service the registry named')
  t.ok(fromProxy.every((r) => r.authorization === undefined), 'anonymous: no credential sent to the realm')
  t.same(fromProxy.map((r) => r.scopes.join(' ')).sort(), ['', `repository:${REPO}:pull`],
    `one token per scope, held across five pulls: the ping's (no scope) and repository:${REPO}:pull (never push)`)
  const lines = authLines().slice(seeded).filter((l) => l.agent !== 'e2e-probe')
  t.ok(lines.some((l) => l.uri === `/v2/${REPO}/manifests/${TAG}` && l.outcome === 'authorized'), 'the registry accepted the proxy\'s bearer for the manifest')
  const withoutBearer = lines.filter((l) => l.outcome === 'no bearer')
  t.comment(`registry: ${lines.length} requests of the proxy; without a bearer: ${withoutBearer.map((l) => `${l.method} ${l.uri}`).join(', ')}`)
  t.equal(withoutBearer.length, 1, 'the proxy sent exactly one request without a bearer: its first, answered 401')
  t.same(lines.filter((l) => l.outcome === 'refused'), [], 'no bearer of the proxy refused')
  t.notOk(lines.some((l) => /public\.ecr\.aws|\/pub\/|ns=/.test(l.uri)), 'the registry saw neither the hostname, the alias, nor ns=')
})
