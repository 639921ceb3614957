/**
 * The AWS API (GetAuthorizationToken) goes down. While the token held is valid, pulls go on;
 * once it has expired, clients get a clear error and /readyz says not ready; when the API is
 * back, the proxy recovers by itself (its retry timer, default backoff) — nobody restarts it.
 */
import { join } from 'node:path'
import t from 'tap'
import { curl, Skopeo } from './harness/clients.js'
import { seedDirect } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { skopeoPull } from './harness/pulls.js'
import { startStack } from './harness/stack.js'
import { sleep, tempDir, waitFor } from './harness/util.js'

const LIFETIME_MS = 10_000
const stack = await startStack(t, { lifetimeMs: LIFETIME_MS })
const dir = tempDir(t, 'api-down')
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const stored = await seedDirect(stack, skopeo, images, 'e2e/api-down')

async function readyz (): Promise<{ status: number, body: string }> {
  const res = await stack.viaProxy.request('GET', '/readyz')
  return { status: res.status, body: res.body }
}

t.test('GetAuthorizationToken unavailable: valid token used, clear error after expiry, recovery', async (t) => {
  const v2s2 = stored.get('v2s2')
  if (v2s2 === undefined) throw new Error('seeding failed')
  const image = `${stack.proxy.host}/e2e/api-down:v2s2`
  // Start right after a refresh, so the token held has most of its life ahead.
  const held = await waitFor('a fresh token', async () => {
    const current = stack.tokens.current()
    return current !== undefined && current.expiresAt - Date.now() > LIFETIME_MS * 0.8 ? current : undefined
  }, { timeoutMs: LIFETIME_MS * 2 })

  stack.ecrApi.setDown(true)
  await skopeoPull(skopeo, dir, image, v2s2)
  t.pass('API down, token valid: skopeo pulls')
  t.equal((await readyz()).status, 200, 'API down, token valid: /readyz 200')

  // Past the token's expiry: the registry no longer accepts it, the proxy no longer has one.
  await sleep(Math.max(0, held.expiresAt - Date.now()) + 1_000)
  // The stand-in drops connections while down, so the attempts show in the proxy's log only.
  const attempts = stack.proxy.service.logTail(10_000).split('\n').filter((line) => line.includes('refresh failed')).length
  t.comment(`the proxy logged ${attempts} failed refreshes while the API was down`)
  t.equal(stack.tokens.current(), undefined, 'the registry holds no live token')

  const failed = await skopeo.attempt(['copy', '--src-tls-verify=false', `docker://${image}`, `dir:${join(dir, 'should-fail')}`])
  t.not(failed.code, 0, 'skopeo pull fails')
  t.comment(`skopeo says: ${failed.stderr.trim()}`)
  const ping = await curl([`${stack.proxy.url}/v2/`])
  t.comment(`GET /v2/ -> ${ping.status} ${ping.body}`)
  t.equal(ping.status, 503, 'GET /v2/ answers 503, not a credential challenge')
  t.notOk('www-authenticate' in ping.headers, 'no WWW-Authenticate: clients are not sent to log in')
  const body = JSON.parse(ping.body) as { errors?: Array<{ code: string, message: string }> }
  t.equal(body.errors?.[0]?.code, 'UNAVAILABLE', 'registry error envelope, code UNAVAILABLE')
  t.match(body.errors?.[0]?.message ?? '', /token/i, 'the message says the token is the problem')
  const manifest = await curl(['-H', 'Accept: application/vnd.docker.distribution.manifest.v2+json', `${stack.proxy.url}/v2/e2e/api-down/manifests/v2s2`])
  t.equal(manifest.status, 503, 'a manifest GET answers 503 as well')
  t.match(failed.stderr, /503|unavailable|token/i, 'skopeo shows the status or the proxy\'s message')
  const notReady = await readyz()
  t.equal(notReady.status, 503, `/readyz 503 (${notReady.body})`)

  stack.ecrApi.setDown(false)
  const recoveredAfter = Date.now()
  await waitFor('/readyz to be 200 again', async () => (await readyz()).status === 200 ? true : undefined, {
    // The retry delay is capped at 60 s by default.
    timeoutMs: 75_000,
    intervalMs: 250,
    detail: () => stack.diagnostics(),
  })
  t.comment(`ready again ${((Date.now() - recoveredAfter) / 1000).toFixed(1)} s after the API came back`)
  await skopeoPull(skopeo, dir, image, v2s2)
  t.pass('API back: skopeo pulls again, nothing restarted')
})
