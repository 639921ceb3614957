import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { buildApp } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config/index.js'
import { createServer } from 'node:http'
import { ECRPUBLICClient } from '@aws-sdk/client-ecr-public'
import { ecrPublicTokenFetcher, parseBearerChallenge, realmAllowed } from '../../src/credentials/ecr-public.js'
import { closeServer, listen } from '../helpers/listen.js'
import type { CredentialKey } from '../../src/credentials/pool.js'
import { startBearerRegistry, type BearerRegistryOptions } from '../helpers/bearer-registry.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { logSink } from '../helpers/log-sink.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const BASIC = Buffer.from('AWS:ecr-public-password').toString('base64')
const MANIFEST = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}')
const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`

/** public.ecr.aws behind the proxy (its `upstream` a local stand-in), by alias `pub`. */
async function publicStack (t: Test, options: { entry?: string, registry?: Partial<BearerRegistryOptions>, token?: () => Promise<{ token: string, expiresAt: Date }> } = {}) {
  const clock = new FakeClock()
  const registry = await startBearerRegistry({ now: () => clock.now(), basic: BASIC, ...options.registry })
  t.teardown(() => registry.close())
  registry.putManifest('docker/library/busybox', '1.36', MANIFEST, OCI_MANIFEST)
  registry.putManifest('nginx/nginx', 'stable', MANIFEST, OCI_MANIFEST)
  const file = join(mkdtempSync(join(tmpdir(), 'ecr-proxy-public-')), 'proxy.yaml')
  writeFileSync(file, `registries:\n  - { registry: public.ecr.aws, alias: pub, upstream: "${registry.url}"${options.entry ?? ''} }\n`)
  const keys: CredentialKey[] = []
  const logs = logSink('debug')
  const built = await buildApp(loadConfig(parseCommandLine(['--config', file]), {}), {
    tokenSource: (key) => { keys.push(key); return options.token ?? (async () => ({ token: BASIC, expiresAt: new Date(clock.now() + 12 * 3_600_000) })) },
    clock,
    logger: logs.logger
  })
  t.teardown(() => built.app.close())
  const url = await built.app.listen({ host: '127.0.0.1', port: 0 })
  const dispatcher = new Agent({ keepAliveTimeout: 1000 })
  t.teardown(() => dispatcher.close())
  const call = async (method: string, path: string) => {
    const res = await request(`${url}${path}`, { method: method as 'GET', dispatcher, headers: { accept: OCI_MANIFEST } })
    return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
  }
  return { clock, registry, call, keys, logs, built }
}

t.test('challenges: Bearer parameters, and realms only on the registry\'s own host', async (t) => {
  t.same(parseBearerChallenge('Bearer realm="https://public.ecr.aws/token/",service="public.ecr.aws",scope="aws"'), { realm: 'https://public.ecr.aws/token/', service: 'public.ecr.aws', scope: 'aws' })
  t.same(parseBearerChallenge(['Basic realm="x"', 'bearer realm=https://r.example/t,service=s']), { realm: 'https://r.example/t', service: 's', scope: undefined })
  t.equal(parseBearerChallenge('Basic realm="https://x/"'), undefined)
  t.equal(parseBearerChallenge(undefined), undefined)
  t.ok(realmAllowed('https://public.ecr.aws/token/', 'https://public.ecr.aws'))
  t.ok(realmAllowed('https://auth.public.ecr.aws:8443/token/', 'https://public.ecr.aws'), 'a subdomain, any port')
  t.ok(realmAllowed('http://127.0.0.1:9/token', 'http://127.0.0.1:5001'), 'the upstream override\'s host, another port')
  t.notOk(realmAllowed('https://public.ecr.aws.evil.example/token/', 'https://public.ecr.aws'))
  t.notOk(realmAllowed('https://evilpublic.ecr.aws/token/', 'https://public.ecr.aws'))
  t.notOk(realmAllowed('ftp://public.ecr.aws/token/', 'https://public.ecr.aws'))
  t.notOk(realmAllowed('not a url', 'https://public.ecr.aws'))
})

t.test('authenticated: a 401 names the realm, the proxy gets a scoped token with the Basic credential and replays', async (t) => {
  const { registry, call, keys } = await publicStack(t)
  const res = await call('GET', '/v2/pub/docker/library/busybox/manifests/1.36')
  t.equal(res.status, 200)
  t.equal(digestOf(res.body), digestOf(MANIFEST))
  t.same(keys.map((k) => [k.id, k.kind]), [['ecr-public:us-east-1', 'ecr-public']], 'ECR Public\'s credential, us-east-1')
  const seen = registry.requests.map((r) => `${r.method} ${r.url.split('?')[0]} ${r.headers.authorization?.split(' ')[0] ?? '-'}`)
  t.same(seen, ['GET /v2/docker/library/busybox/manifests/1.36 -', 'GET /token/ Basic', 'GET /v2/docker/library/busybox/manifests/1.36 Bearer'])
  t.equal(registry.tokenRequests()[0]?.headers.authorization, `Basic ${BASIC}`)
  t.equal(new URL(registry.tokenRequests()[0]?.url ?? '', 'http://x').searchParams.get('scope'), 'repository:docker/library/busybox:pull')
  t.equal(new URL(registry.tokenRequests()[0]?.url ?? '', 'http://x').searchParams.get('service'), 'public.ecr.aws')
  t.equal(registry.requests[2]?.headers.authorization, `Bearer ${registry.issued[0]?.token}`)
})

t.test('tokens are cached per scope, and renewed before they expire', async (t) => {
  const { registry, call, clock } = await publicStack(t, { registry: { lifetimeSeconds: 300 } })
  await call('GET', '/v2/pub/docker/library/busybox/manifests/1.36')
  const before = registry.requests.length
  t.equal((await call('HEAD', '/v2/pub/docker/library/busybox/manifests/1.36')).status, 200)
  t.equal(registry.requests.length, before + 1, 'the cached token: one request, no token fetch')
  t.equal((await call('GET', '/v2/pub/nginx/nginx/manifests/stable')).status, 200)
  t.same(registry.issued.map((i) => i.scope), ['repository:docker/library/busybox:pull', 'repository:nginx/nginx:pull'], 'another repository: its own scope, fetched at once (realm known)')
  t.equal(registry.requests.filter((r) => r.url.startsWith('/v2/nginx')).length, 1, 'no 401 round trip once the realm is known')

  // Within the token's life but past the proxy's margin: fetched anew before use.
  await clock.tick(280_000)
  t.equal((await call('GET', '/v2/pub/docker/library/busybox/manifests/1.36')).status, 200)
  t.equal(registry.issued.length, 3, 'renewed before expiry')
})

t.test('an expired bearer answered 400 is replaced and the request replayed', async (t) => {
  // The registry's clock runs ahead of the proxy's: it has expired a token the proxy still trusts.
  let clockNow = 0
  const { registry, call, clock } = await publicStack(t, { registry: { lifetimeSeconds: 600, now: () => clockNow } })
  clockNow = clock.now()
  t.equal((await call('GET', '/v2/pub/nginx/nginx/manifests/stable')).status, 200)
  const first = registry.issued[0]?.token as string
  clockNow = clock.now() + 601_000
  const before = registry.requests.length
  const res = await call('GET', '/v2/pub/nginx/nginx/manifests/stable')
  t.equal(res.status, 200)
  const sent = registry.requests.slice(before).map((r) => `${r.url.split('?')[0]} ${r.headers.authorization ?? '-'}`)
  t.same(sent, [`/v2/nginx/nginx/manifests/stable Bearer ${first}`, `/token/ Basic ${BASIC}`, `/v2/nginx/nginx/manifests/stable Bearer ${registry.issued[1]?.token}`], 'the 400, a new token, one replay')
})

t.test('anonymous: configured, or when the principal has no ECR Public credential', async (t) => {
  const configured = await publicStack(t, { entry: ', anonymous: true' })
  t.equal((await configured.call('GET', '/v2/pub/nginx/nginx/manifests/stable')).status, 200)
  t.same(configured.keys.map((k) => k.id), ['ecr-public:anonymous'])
  t.equal(configured.registry.tokenRequests()[0]?.headers.authorization, undefined, 'no Basic credential sent')
  t.same(configured.registry.issued.map((i) => i.authenticated), [false])
  const ready = await configured.call('GET', '/readyz')
  t.equal(ready.status, 200)
  t.match(JSON.parse(ready.body.toString()), { ready: true, upstreams: [{ registry: 'public.ecr.aws', alias: 'pub', credential: 'ecr-public:anonymous' }] })

  // The real SDK against a closed port: no credential to be had, so anonymous, with a warning.
  const closed = createServer()
  const closedUrl = await listen(closed)
  await closeServer(closed)
  const sdkLogs = logSink('warn')
  const client = new ECRPUBLICClient({ region: 'us-east-1', endpoint: closedUrl, maxAttempts: 1, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } })
  t.teardown(() => client.destroy())
  const fallback = await publicStack(t, { token: ecrPublicTokenFetcher(client, { anonymousFallback: true, log: sdkLogs.logger }) })
  t.equal((await fallback.call('GET', '/v2/pub/nginx/nginx/manifests/stable')).status, 200)
  t.same(fallback.registry.issued.map((i) => i.authenticated), [false], 'asked anonymously')
  t.match(sdkLogs.lines, [{ level: 40, msg: /^no ECR Public credential: pulling from public\.ecr\.aws anonymously/ }])
  await t.rejects(ecrPublicTokenFetcher(client, { anonymousFallback: false })(), 'anonymous: false: the failure stands')
})

t.test('the Basic credential comes from ecr-public:GetAuthorizationToken through the real SDK', async (t) => {
  const targets: string[] = []
  const api = createServer((req, res) => {
    targets.push(String(req.headers['x-amz-target']))
    req.resume()
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' })
    res.end(JSON.stringify({ authorizationData: { authorizationToken: BASIC, expiresAt: Date.UTC(2030, 0) / 1000 } }))
  })
  const apiUrl = await listen(api)
  t.teardown(() => closeServer(api))
  const client = new ECRPUBLICClient({ region: 'us-east-1', endpoint: apiUrl, maxAttempts: 1, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } })
  t.teardown(() => client.destroy())
  const { registry, call } = await publicStack(t, { token: ecrPublicTokenFetcher(client, { anonymousFallback: false }) })
  t.equal((await call('GET', '/v2/pub/nginx/nginx/manifests/stable')).status, 200)
  t.same(targets, ['SpencerFrontendService.GetAuthorizationToken'])
  t.equal(registry.tokenRequests()[0]?.headers.authorization, `Basic ${BASIC}`)
  t.same(registry.issued.map((i) => i.authenticated), [true])
})

t.test('a realm on another host gets no credential: the client gets the 401', async (t) => {
  const { registry, call, logs } = await publicStack(t, { registry: { realm: (origin) => origin.replace('127.0.0.1', 'localhost') + '/token/' } })
  const res = await call('GET', '/v2/pub/nginx/nginx/manifests/stable')
  t.equal(res.status, 401)
  t.equal(res.headers['www-authenticate'], undefined, 'the foreign challenge is not passed on')
  t.equal(registry.tokenRequests().length, 0, 'no token request anywhere')
  t.same(registry.requests.map((r) => r.headers.authorization), [undefined])
  t.match(logs.lines.find((l) => l.msg?.startsWith('the registry named a token realm on another host') === true), { level: 40, realmHost: /^localhost:\d+$/ })
  t.notMatch(logs.text(), BASIC, 'the Basic credential is never logged')
})

t.test('the token realm refusing: 502 in the registry format, with the reason', async (t) => {
  const { call, registry } = await publicStack(t, { token: async () => ({ token: Buffer.from('AWS:wrong').toString('base64'), expiresAt: new Date(Date.UTC(2030, 0)) }) })
  const res = await call('GET', '/v2/pub/nginx/nginx/manifests/stable')
  t.equal(res.status, 502)
  t.same(JSON.parse(res.body.toString()), { errors: [{ code: 'UNAVAILABLE', message: `the token realm ${new URL(registry.url).host} answered 401` }] })
})
