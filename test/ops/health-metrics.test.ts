import t from 'tap'
import { request } from 'undici'
import { FakeClock } from '../helpers/fake-clock.js'
import { startStack } from '../helpers/stack.js'

t.test('/readyz says when the token expires and when the next refresh is due, never the token', async (t) => {
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, { clock, lifetimeMs: 12 * 3_600_000 })
  const res = await request(`${stack.url}/readyz`)
  t.equal(res.statusCode, 200)
  const body = await res.body.json() as Record<string, unknown>
  const issued = stack.authority.issued[0]
  t.same(body, {
    ready: true,
    upstreams: [{
      registry: new URL(stack.registry.url).host,
      default: true,
      origin: stack.registry.url,
      credential: 'ecr:us-east-2',
      ready: true,
      expiresAt: new Date(issued?.expiresAt ?? 0).toISOString(),
      refreshAt: new Date(clock.now() + 6 * 3_600_000).toISOString()
    }]
  })
  t.notOk(JSON.stringify(body).includes(issued?.authorizationToken ?? '-'))
  const health = await request(`${stack.url}/healthz`)
  t.equal(health.statusCode, 200)
  t.same(await health.body.json(), { status: 'ok' })
})

t.test('/metrics: requests by kind, method and status; bytes; token gauges; process defaults', async (t) => {
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, { clock })
  for (const path of ['/v2/', '/v2/team/app/manifests/1.2', '/v2/team/app/manifests/1.2', '/nowhere']) {
    const res = await request(`${stack.url}${path}`, { dispatcher: stack.client })
    await res.body.dump()
  }
  stack.authority.revoke(stack.authority.issued[0]?.authorizationToken ?? '')
  const replayed = await request(`${stack.url}/v2/`, { dispatcher: stack.client })
  await replayed.body.dump()

  const res = await request(`${stack.url}/metrics`)
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const text = await res.body.text()
  const registry = new URL(stack.registry.url).host.replace(/\./g, '\\.')
  const labelled = (head: string, labels: string, tail: string) => new RegExp(`^${head}\\{${labels}\\} ${tail}$`, 'm')
  t.match(text, labelled('ecr_proxy_requests_total', `method="GET",kind="ping",status="200",registry="${registry}"`, '2'))
  t.match(text, labelled('ecr_proxy_requests_total', `method="GET",kind="manifest",status="404",registry="${registry}"`, '2'))
  t.match(text, /^ecr_proxy_requests_total\{method="GET",kind="other",status="404",registry=""\} 1$/m)
  t.match(text, /^ecr_proxy_request_duration_seconds_count\{method="GET",kind="manifest"\} 2$/m)
  t.match(text, labelled('ecr_proxy_sent_bytes_total', `kind="manifest",registry="${registry}"`, '\\d+'))
  t.match(text, labelled('ecr_proxy_received_bytes_total', `kind="ping",registry="${registry}"`, '\\d+'))
  t.match(text, labelled('ecr_proxy_upstream_errors_total', `kind="token_rejected",registry="${registry}"`, '1'))
  t.match(text, /^ecr_proxy_token_refreshes_total\{credential="ecr:us-east-2",result="success"\} 2$/m)
  t.match(text, /^ecr_proxy_token_ready\{credential="ecr:us-east-2"\} 1$/m)
  const expiry = Number(/^ecr_proxy_token_expiry_timestamp_seconds\{credential="ecr:us-east-2"\} (\S+)$/m.exec(text)?.[1])
  t.equal(expiry, (stack.authority.issued[1]?.expiresAt ?? 0) / 1000)
  const remaining = Number(/^ecr_proxy_token_seconds_until_expiry\{credential="ecr:us-east-2"\} (\S+)$/m.exec(text)?.[1])
  t.equal(remaining, ((stack.authority.issued[1]?.expiresAt ?? 0) - clock.now()) / 1000)
  t.match(text, /^process_resident_memory_bytes \d+/m)
  t.match(text, /^nodejs_eventloop_lag_seconds /m)
  t.notMatch(text, /team\/app/, 'no repository names unless asked for')
  for (const token of stack.authority.issued) t.notOk(text.includes(token.authorizationToken))
})

t.test('the repository label is there when configured', async (t) => {
  const stack = await startStack(t, { argv: ['--metrics-repository-label'] })
  const res = await request(`${stack.url}/v2/team/app/manifests/1.2`, { dispatcher: stack.client })
  await res.body.dump()
  const text = await (await request(`${stack.url}/metrics`)).body.text()
  t.match(text, new RegExp(`^ecr_proxy_requests_total\\{method="GET",kind="manifest",status="404",registry="${new URL(stack.registry.url).host}",repository="team/app"\\} 1$`, 'm'))
})

t.test('refresh failures are counted and the token gauge drops', async (t) => {
  const clock = new FakeClock(Date.now())
  const stack = await startStack(t, { clock, lifetimeMs: 60_000 })
  stack.api.failNext('AccessDeniedException', 1000)
  await clock.tick(30_000)
  await clock.tick(30_000)
  const text = await (await request(`${stack.url}/metrics`)).body.text()
  t.match(text, /^ecr_proxy_token_refreshes_total\{credential="ecr:us-east-2",result="failure"\} [1-9]\d*$/m)
  t.match(text, /^ecr_proxy_token_ready\{credential="ecr:us-east-2"\} 0$/m)
  const ready = await request(`${stack.url}/readyz`)
  t.equal(ready.statusCode, 503)
  t.match(await ready.body.json(), { ready: false, upstreams: [{ ready: false, error: /^AWS denied ecr:GetAuthorizationToken/ }] })
})
