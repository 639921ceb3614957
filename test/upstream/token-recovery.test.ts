import t from 'tap'
import { request } from 'undici'
import { FakeClock } from '../helpers/fake-clock.js'
import { startStack, type Stack } from '../helpers/stack.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

function seedImage (stack: Stack): { manifestDigest: string, layerDigest: string } {
  const layerDigest = stack.registry.putBlob('team/app', Buffer.from('layer'))
  const configDigest = stack.registry.putBlob('team/app', Buffer.from('{}'))
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: 2 },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: 5 }]
  }))
  return { manifestDigest: stack.registry.putManifest('team/app', '1.2', manifest, OCI_MANIFEST), layerDigest }
}

/** One pull as docker does it: ping, resolve the tag, fetch the manifest, HEAD the layer. */
async function pull (stack: Stack, layerDigest: string): Promise<number[]> {
  const statuses: number[] = []
  for (const [method, path] of [['GET', '/v2/'], ['HEAD', '/v2/team/app/manifests/1.2'], ['GET', '/v2/team/app/manifests/1.2'], ['HEAD', `/v2/team/app/blobs/${layerDigest}`]] as const) {
    const res = await request(`${stack.url}${path}`, { method, dispatcher: stack.client, headers: { accept: OCI_MANIFEST } })
    await res.body.dump()
    statuses.push(res.statusCode)
  }
  return statuses
}

t.test('tokens rotating every few seconds: zero failed requests over concurrent pulls', async (t) => {
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, { clock, lifetimeMs: 4000 })
  const { layerDigest } = seedImage(stack)
  let requests = 0
  let failures = 0
  // 40 rounds of 8 concurrent pulls, the clock moving 500 ms each round: 20 s of fake time,
  // so tokens are issued, refreshed at half-life and expire several times over.
  for (let round = 0; round < 40; round++) {
    const results = await Promise.all(Array.from({ length: 8 }, async () => await pull(stack, layerDigest)))
    for (const statuses of results) {
      requests += statuses.length
      failures += statuses.filter((s) => s !== 200).length
    }
    await clock.tick(500)
  }
  t.equal(requests, 40 * 8 * 4)
  t.equal(failures, 0, 'no request failed')
  t.ok(stack.authority.issued.length >= 9, `tokens rotated (${stack.authority.issued.length} issued)`)
  t.equal(stack.upstreamRequests.length, requests, 'no request was rejected and replayed: tokens were refreshed ahead of expiry')
  t.equal(stack.logs.lines.filter((l) => l.replayed === true).length, 0)
})

t.test('a revoked token is replaced after one 403, invisibly for GET and HEAD', async (t) => {
  const stack = await startStack(t)
  const { manifestDigest, layerDigest } = seedImage(stack)
  t.same(await pull(stack, layerDigest), [200, 200, 200, 200])
  const revoked = stack.authority.issued[0]?.authorizationToken as string
  stack.authority.revoke(revoked)
  const before = stack.upstreamRequests.length

  const res = await request(`${stack.url}/v2/team/app/manifests/1.2`, { dispatcher: stack.client, headers: { accept: OCI_MANIFEST } })
  t.equal(res.statusCode, 200, 'the client saw success')
  t.equal(res.headers['docker-content-digest'], manifestDigest)
  t.equal(res.headers['www-authenticate'], undefined)
  await res.body.dump()

  const sent = stack.upstreamRequests.slice(before)
  t.same(sent.map((r) => r.method), ['GET', 'GET'], 'one rejected attempt, one replay')
  t.equal(sent[0]?.headers.authorization, `Basic ${revoked}`)
  t.equal(sent[1]?.headers.authorization, `Basic ${stack.authority.issued[1]?.authorizationToken ?? ''}`)
  t.equal(stack.api.calls.length, 2, 'exactly one extra GetAuthorizationToken')
  t.same(await pull(stack, layerDigest), [200, 200, 200, 200], 'later requests use the new token')
  const replayLog = stack.logs.lines.find((l) => l.msg === 'request' && l.replayed === true)
  t.equal(replayLog?.status, 200)
})

t.test('a HEAD with an expired token is replayed although its 403 has no body', async (t) => {
  const stack = await startStack(t)
  const { manifestDigest } = seedImage(stack)
  stack.authority.revoke(stack.authority.issued[0]?.authorizationToken as string)
  const before = stack.upstreamRequests.length
  const res = await request(`${stack.url}/v2/team/app/manifests/1.2`, { method: 'HEAD', dispatcher: stack.client, headers: { accept: OCI_MANIFEST } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['docker-content-digest'], manifestDigest)
  await res.body.dump()
  t.same(stack.upstreamRequests.slice(before).map((r) => r.method), ['HEAD', 'HEAD'])
  t.equal(stack.api.calls.length, 2)
})

t.test('an unknown token (401) is replaced too; a push gets the answer and the next one works', async (t) => {
  const stack = await startStack(t)
  seedImage(stack)
  const ping = await request(`${stack.url}/v2/`, { dispatcher: stack.client })
  await ping.body.dump()
  // The registry forgets the token: it now answers 401, as ECR does for a token it does not know.
  const first = stack.authority.issued[0]?.authorizationToken as string
  stack.authority.revoke(first)
  const check = stack.authority.check.bind(stack.authority)
  stack.authority.check = (header) => header === `Basic ${first}` ? 'invalid' : check(header)

  const post = await request(`${stack.url}/v2/team/app/blobs/uploads/`, { method: 'POST', dispatcher: stack.client, body: '' })
  t.equal(post.statusCode, 401, 'a POST is not replayed: the client gets the registry\'s answer')
  t.equal(post.headers['www-authenticate'], undefined, 'no challenge for a realm the client cannot log in to')
  t.equal(await post.body.text(), 'Not Authorized\n')
  const again = await request(`${stack.url}/v2/team/app/blobs/uploads/`, { method: 'POST', dispatcher: stack.client, body: '' })
  t.equal(again.statusCode, 202, 'the token was replaced, so the retry succeeds')
  await again.body.dump()
})

t.test('a principal the registry keeps refusing does not hammer the API', async (t) => {
  const stack = await startStack(t)
  seedImage(stack)
  stack.authority.check = () => 'revoked'
  for (let i = 0; i < 20; i++) {
    const res = await request(`${stack.url}/v2/team/app/manifests/1.2`, { dispatcher: stack.client })
    t.equal(res.statusCode, 403)
    const body = await res.body.json() as { errors: Array<{ code: string }> }
    t.equal(body.errors[0]?.code, 'DENIED', 'the registry\'s own error body reaches the client')
  }
  t.equal(stack.api.calls.length, 2, 'one forced refresh, then rate-limited')
})

t.test('API down while the token is valid: requests keep working', async (t) => {
  const stack = await startStack(t)
  const { layerDigest } = seedImage(stack)
  t.same(await pull(stack, layerDigest), [200, 200, 200, 200])
  stack.api.setDown(true)
  t.same(await pull(stack, layerDigest), [200, 200, 200, 200])
})

t.test('no credentials at all: 503 UNAVAILABLE that says why, and not ready', async (t) => {
  const stack = await startStack(t)
  stack.api.failNext('UnrecognizedClientException', 100)
  // A fresh proxy on the same stack whose first fetch fails.
  const { buildApp } = await import('../../src/app.js')
  const { loadConfig, parseCommandLine } = await import('../../src/config/index.js')
  const failing = await buildApp(loadConfig(parseCommandLine(['--upstream', stack.registry.url]), {}), {
    fetchToken: async () => { throw Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }) },
    logger: stack.logs.logger
  })
  t.teardown(() => failing.app.close())
  const res = await failing.app.inject({ method: 'GET', url: '/v2/team/app/manifests/1.2' })
  t.equal(res.statusCode, 503)
  t.same(res.json(), { errors: [{ code: 'UNAVAILABLE', message: 'no ECR token: no AWS credentials found (Could not load credentials from any providers); set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a web identity (IRSA) or run where instance/task credentials exist' }] })
  const ready = await failing.app.inject({ method: 'GET', url: '/readyz' })
  t.equal(ready.statusCode, 503)
  t.equal(ready.json().ready, false)
  t.match(ready.json().upstreams[0].error, /no AWS credentials found/)
  const health = await failing.app.inject({ method: 'GET', url: '/healthz' })
  t.equal(health.statusCode, 200)
})
