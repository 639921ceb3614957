import t, { type Test } from 'tap'
import { startEcrRegistry, type EcrRegistry } from '../helpers/ecr-registry.js'
import { basicAuth, rawRequest } from '../helpers/raw-http.js'
import { TokenAuthority } from '../helpers/token-authority.js'

const HOUR = 3_600_000
const DENIED = { errors: [{ code: 'DENIED', message: 'Your authorization token has expired. Reauthenticate and try again.' }] }

async function setup (t: Test): Promise<{ registry: EcrRegistry, authority: TokenAuthority, clock: { now: number } }> {
  const clock = { now: Date.UTC(2026, 10, 22, 12) }
  const authority = new TokenAuthority({ now: () => clock.now })
  const registry = await startEcrRegistry({ authority })
  t.teardown(() => registry.close())
  return { registry, authority, clock }
}

t.test('no or an unknown credential: 401 Basic challenge, text/plain "Not Authorized"', async (t) => {
  const { registry } = await setup(t)
  const cases: Array<[string, Record<string, string>]> = [
    ['none', {}],
    ['unknown token', basicAuth(Buffer.from('AWS:not-issued').toString('base64'))],
    ['bearer', { authorization: 'Bearer abc' }],
  ]
  for (const [label, headers] of cases) {
    const res = await rawRequest(`${registry.url}/v2/`, { headers })
    t.equal(res.status, 401, label)
    t.equal(res.headers['www-authenticate'], `Basic realm="${registry.url}/",service="ecr.amazonaws.com"`, label)
    t.equal(res.headers['content-type'], 'text/plain; charset=utf-8', label)
    t.equal(res.headers['docker-distribution-api-version'], 'registry/2.0', label)
    t.equal(res.body.toString(), 'Not Authorized\n', label)
  }
  const head = await rawRequest(`${registry.url}/v2/team/app/manifests/latest`, { method: 'HEAD' })
  t.equal(head.status, 401)
  t.equal(head.body.length, 0, 'HEAD: challenge without a body')
})

t.test('a token past its expiry (injected clock, no sleeping): 403 DENIED', async (t) => {
  const { registry, authority, clock } = await setup(t)
  const token = authority.issue()
  const ok = await rawRequest(`${registry.url}/v2/`, { headers: basicAuth(token.authorizationToken) })
  t.equal(ok.status, 200)
  t.same(JSON.parse(ok.body.toString()), {})

  clock.now += 12 * HOUR
  const expired = await rawRequest(`${registry.url}/v2/`, { headers: basicAuth(token.authorizationToken) })
  t.equal(expired.status, 403)
  t.equal(expired.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(expired.headers['docker-distribution-api-version'], 'registry/2.0')
  t.same(JSON.parse(expired.body.toString()), DENIED)

  const fresh = authority.issue()
  t.equal((await rawRequest(`${registry.url}/v2/`, { headers: basicAuth(fresh.authorizationToken) })).status, 200, 'a fresh token works at the new time')
})

t.test('a revoked token: 403 DENIED', async (t) => {
  const { registry, authority } = await setup(t)
  const token = authority.issue()
  authority.revoke(token.authorizationToken)
  const res = await rawRequest(`${registry.url}/v2/team/app/tags/list`, { headers: basicAuth(token.authorizationToken) })
  t.equal(res.status, 403)
  t.same(JSON.parse(res.body.toString()), DENIED)
})

t.test('every request is recorded as received, before authentication, body size included', async (t) => {
  const { registry } = await setup(t)
  const body = Buffer.alloc(300_000, 7)
  const res = await rawRequest(`${registry.url}/v2/team/app/blobs/uploads/x`, { method: 'PATCH', headers: { authorization: 'Basic nope', 'x-trace': 'abc' }, body })
  t.equal(res.status, 401)
  await registry.settled()
  t.equal(registry.requests.length, 1)
  const recorded = registry.requests[0]
  t.equal(recorded?.method, 'PATCH')
  t.equal(recorded?.url, '/v2/team/app/blobs/uploads/x')
  t.equal(recorded?.headers.authorization, 'Basic nope')
  t.equal(recorded?.headers['x-trace'], 'abc')
  t.equal(recorded?.bodyBytes, body.length, 'an unread body is still drained and counted')

  const next = await rawRequest(`${registry.url}/v2/`)
  t.equal(next.status, 401, 'the connection stays usable after a rejected upload')
})

t.test('paths outside /v2: 404 in the error envelope', async (t) => {
  const { registry } = await setup(t)
  const res = await rawRequest(`${registry.url}/health`)
  t.equal(res.status, 404)
  t.same(JSON.parse(res.body.toString()), { errors: [{ code: 'NOT_FOUND', message: '404 page not found' }] })
})
