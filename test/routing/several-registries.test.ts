import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { buildApp } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config/index.js'
import { buildConfiguredProxy, keptAliveClient } from '../helpers/configured-proxy.js'
import { startEcrApi } from '../helpers/ecr-api.js'
import { startEcrRegistry, type EcrRegistry } from '../helpers/ecr-registry.js'
import { logSink } from '../helpers/log-sink.js'
import { TokenAuthority } from '../helpers/token-authority.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const TOOLS = '111122223333.dkr.ecr.us-east-2.amazonaws.com'
const EU = '600423610423.dkr.ecr.eu-west-1.amazonaws.com'
const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`

/**
 * Three ECR-like registries behind one proxy: two accounts in us-east-2 (one token serves both)
 * and one in eu-west-1 (its own token; us-east-2 tokens are refused there). The real SDK asks the
 * ECR API stand-in, which tells regions apart by the SigV4 credential scope.
 */
async function threeRegistries (t: Test, extra: string[] = []) {
  const east = new TokenAuthority()
  const west = new TokenAuthority()
  const prod = await startEcrRegistry({ authority: east, registryId: '600423610423' })
  const tools = await startEcrRegistry({ authority: east, registryId: '111122223333' })
  const eu = await startEcrRegistry({ authority: west, registryId: '600423610423' })
  for (const r of [prod, tools, eu]) t.teardown(() => r.close())
  const api = await startEcrApi({ authority: east, proxyEndpoint: `https://${PROD}`, regions: { 'us-east-2': { authority: east, proxyEndpoint: `https://${PROD}` }, 'eu-west-1': { authority: west, proxyEndpoint: `https://${EU}` } } })
  t.teardown(() => api.close())
  const { built, logs } = await buildConfiguredProxy(t, api.url, [
    'registries:',
    `  - { registry: ${PROD}, upstream: "${prod.url}", alias: prod, default: true }`,
    `  - { registry: ${TOOLS}, upstream: "${tools.url}", alias: tools }`,
    `  - { registry: ${EU}, upstream: "${eu.url}" }`
  ], extra)
  t.teardown(() => built.app.close())
  const url = await built.app.listen({ host: '127.0.0.1', port: 0 })
  await Promise.all(built.registries.map(async (r) => await built.credentials.get(r.credential).get()))
  const send = keptAliveClient(t)
  const call = async (method: string, path: string, body?: Buffer, headers: Record<string, string> = {}) => await send(`${url}${path}`, method, headers, body)
  return { api, east, west, prod, tools, eu, built, url, call, logs }
}

/** Pushes a one-blob image under `prefix` (a host, an alias or nothing) and returns its manifest digest. */
async function push (call: Awaited<ReturnType<typeof threeRegistries>>['call'], prefix: string, repo: string, tag: string): Promise<{ manifest: string, locations: string[] }> {
  const config = Buffer.from(`{"for":"${prefix}${repo}"}`)
  const start = await call('POST', `/v2/${prefix}${repo}/blobs/uploads/`, Buffer.alloc(0), { 'content-length': '0' })
  const location = String(start.headers.location)
  const put = await call('PUT', `${location}${location.includes('?') ? '&' : '?'}digest=${digestOf(config)}`, config, { 'content-type': 'application/octet-stream' })
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length }, layers: [] }))
  const done = await call('PUT', `/v2/${prefix}${repo}/manifests/${tag}`, manifest, { 'content-type': OCI_MANIFEST })
  if (start.status !== 202 || put.status !== 201 || done.status !== 201) throw new Error(`push failed: ${start.status} ${put.status} ${done.status} ${done.body.toString()}`)
  return { manifest: digestOf(manifest), locations: [location, String(put.headers.location)] }
}

t.test('one token per region at start, shared by the accounts of that region', async (t) => {
  const { api, built } = await threeRegistries(t)
  t.same(api.calls.map((c) => c.region).sort(), ['eu-west-1', 'us-east-2'], 'two regions, two GetAuthorizationToken calls for three registries')
  t.same(built.registries.map((r) => r.credential.id), ['ecr:us-east-2', 'ecr:us-east-2', 'ecr:eu-west-1'])
})

t.test('every addressing form reaches its registry, and Location comes back in the form used', async (t) => {
  const { call, prod, tools, eu } = await threeRegistries(t)
  const byHost = await push(call, `${EU}/`, 'team/app', '1.0')
  t.match(byHost.locations[0], new RegExp(`^/v2/${EU.replace(/\./g, '\\.')}/team/app/blobs/uploads/`), 'an upload started under the host continues under it')
  t.match(byHost.locations[1], new RegExp(`^/v2/${EU.replace(/\./g, '\\.')}/team/app/blobs/sha256:`))
  const byAlias = await push(call, 'tools/', 'ci/runner', '2.0')
  t.match(byAlias.locations[0], /^\/v2\/tools\/ci\/runner\/blobs\/uploads\//, 'and under an alias')
  const bare = await push(call, '', 'team/app', '3.0')
  t.match(bare.locations[0], /^\/v2\/team\/app\/blobs\/uploads\//, 'bare names go to the default')

  t.ok(eu.requests.some((r) => r.url.startsWith('/v2/team/app/manifests/1.0')), 'the host prefix is not sent upstream')
  t.ok(tools.requests.some((r) => r.url.startsWith('/v2/ci/runner/manifests/2.0')))
  t.ok(prod.requests.some((r) => r.url.startsWith('/v2/team/app/manifests/3.0')))
  t.notOk(prod.requests.some((r) => r.url.includes('1.0') || r.url.includes('ci/runner')), 'nothing of the others reached prod')

  // containerd's mirror form: ?ns=<host> picks the registry; ns is not forwarded.
  const viaNs = await call('GET', `/v2/team/app/manifests/1.0?ns=${EU.replace(/\./g, '%2E')}`, undefined, { accept: OCI_MANIFEST })
  t.equal(viaNs.status, 200)
  t.equal(viaNs.headers['docker-content-digest'], byHost.manifest)
  t.notOk(eu.requests.some((r) => r.url.includes('ns=')), 'ns never reaches the registry')
  const byHostPull = await call('GET', `/v2/${EU}/team/app/manifests/1.0`, undefined, { accept: OCI_MANIFEST })
  t.equal(byHostPull.headers['docker-content-digest'], byHost.manifest)
  const tags = await call('GET', '/v2/prod/team/app/tags/list')
  t.same(JSON.parse(tags.body.toString()), { name: 'prod/team/app', tags: ['3.0'] }, 'tags/list names the repository as the client did')
})

t.test('names that reach no configured registry: 404 NAME_UNKNOWN, nothing sent anywhere', async (t) => {
  const { call, prod, tools, eu } = await threeRegistries(t)
  const before = [prod, tools, eu].map((r: EcrRegistry) => r.requests.length)
  const unknownHost = await call('GET', '/v2/999999999999.dkr.ecr.ap-south-1.amazonaws.com/x/manifests/1')
  t.equal(unknownHost.status, 404)
  t.match(JSON.parse(unknownHost.body.toString()), { errors: [{ code: 'NAME_UNKNOWN', message: /^999999999999\.dkr\.ecr\.ap-south-1\.amazonaws\.com is not a registry this proxy serves: registries are addressed by/ }] })
  const unknownNs = await call('GET', '/v2/x/manifests/1?ns=registry.example.com')
  t.equal(unknownNs.status, 404)
  t.match(JSON.parse(unknownNs.body.toString()), { errors: [{ code: 'NAME_UNKNOWN', message: /^\?ns=registry\.example\.com is not a registry this proxy serves/ }] })
  t.same([prod, tools, eu].map((r: EcrRegistry) => r.requests.length), before)
})

t.test('a rejected token is replaced once for the whole region; the other region keeps its own', async (t) => {
  const { api, east, call, built } = await threeRegistries(t, ['--refresh-rejected-interval-seconds', '0'])
  await push(call, 'tools/', 'ci/runner', '1')
  const eastToken = east.issued[0]?.authorizationToken ?? ''
  east.revoke(eastToken)
  const res = await call('GET', '/v2/prod/team/app/tags/list')
  t.equal(res.status, 404, 'replayed with the new token: the registry\'s own answer (no such repository)')
  t.equal(api.calls.filter((c) => c.region === 'us-east-2').length, 2, 'one forced refresh for us-east-2')
  t.equal(api.calls.filter((c) => c.region === 'eu-west-1').length, 1, 'eu-west-1 untouched')
  const tools = await call('GET', '/v2/tools/ci/runner/tags/list')
  t.equal(tools.status, 200, 'the other account of the region uses the new token at once')
  t.equal(api.calls.filter((c) => c.region === 'us-east-2').length, 2, 'without another fetch')
  const ready = await call('GET', '/readyz?registry=tools')
  t.match(JSON.parse(ready.body.toString()), { ready: true, upstreams: [{ registry: TOOLS, alias: 'tools', credential: 'ecr:us-east-2', ready: true }] })
  const all = JSON.parse((await call('GET', '/readyz')).body.toString()) as { upstreams: Array<{ registry: string }> }
  t.same(all.upstreams.map((u) => u.registry), [PROD, TOOLS, EU])
  t.equal((await call('GET', '/readyz?registry=nowhere')).status, 404)
  t.equal(built.registries.length, 3)
})

t.test('anyEcrRegistry: an unlisted ECR hostname gets its region\'s token on first use', async (t) => {
  const { api, call } = await threeRegistries(t, ['--any-ecr-registry'])
  // The registry itself is unreachable here (its real hostname); the token fetch shows it was served.
  const res = await call('GET', '/v2/team/app/manifests/1?ns=444455556666.dkr.ecr.eu-west-1.amazonaws.com')
  t.not(res.status, 404, 'not refused')
  t.equal(api.calls.filter((c) => c.region === 'eu-west-1').length, 1, 'eu-west-1\'s token is shared with the listed registry')
  const other = await call('GET', '/v2/999999999999.dkr.ecr.ap-south-1.amazonaws.com/x/manifests/1')
  t.equal(api.calls.filter((c) => c.region === 'ap-south-1').length, 1, 'a new region: its token fetched on first use')
  t.not(other.status, 404)
  const lookAlike = await call('GET', '/v2/999999999999.dkr.ecr.ap-south-1.amazonaws.com.evil.example/x/manifests/1')
  t.equal(lookAlike.status, 404, 'only the exact grammar')
})

t.test('with no default registry, the proxy answers a bare ping itself and refuses bare names', async (t) => {
  const seen: string[] = []
  const built = await buildApp(loadConfig(parseCommandLine(['--registry', `${PROD}=prod`, '--registry', EU]), {}), {
    tokenSource: (key) => async () => { seen.push(key.id); return { token: 'QVdTOng=', expiresAt: new Date(Date.now() + 3_600_000) } },
    logger: logSink('silent').logger
  })
  t.teardown(() => built.app.close())
  const ping = await built.app.inject({ method: 'GET', url: '/v2/' })
  t.equal(ping.statusCode, 200)
  t.equal(ping.headers['docker-distribution-api-version'], 'registry/2.0')
  t.same(ping.json(), {})
  const bare = await built.app.inject({ method: 'GET', url: '/v2/team/app/manifests/1' })
  t.equal(bare.statusCode, 404)
  t.same(bare.json(), { errors: [{ code: 'NAME_UNKNOWN', message: '"team/app" names no configured registry: registries are addressed by containerd\'s ?ns=<registry host>, by the registry host or an alias as the first path component (localhost:5000/<host>/team/app), or bare for the default registry' }] })
  t.same(seen.sort(), ['ecr:eu-west-1', 'ecr:us-east-2'], 'the start\'s one fetch per region, and none for these requests')
  t.same(built.registries.map((r) => [r.name, r.alias, r.isDefault, r.credential.id]), [[PROD, 'prod', false, 'ecr:us-east-2'], [EU, undefined, false, 'ecr:eu-west-1']])
})
