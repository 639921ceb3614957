import t from 'tap'
import type { AuthorizationToken } from '../../src/credentials/ecr-token.js'
import { TokenRefresher, TokenUnavailableError } from '../../src/credentials/refresher.js'
import { FakeClock, settle } from '../helpers/fake-clock.js'
import { logSink } from '../helpers/log-sink.js'

const HOUR = 3_600_000

interface Script {
  calls: number
  /** What the next fetches do, in order; the last one repeats. */
  outcomes: Array<'ok' | Error | (() => Promise<AuthorizationToken>)>
}

function setup (options: { lifetimeMs?: number, random?: () => number } = {}) {
  const clock = new FakeClock()
  const sink = logSink()
  const script: Script = { calls: 0, outcomes: ['ok'] }
  const lifetimeMs = options.lifetimeMs ?? 12 * HOUR
  const refresher = new TokenRefresher({
    clock,
    log: sink.logger,
    random: options.random ?? (() => 0.5),
    fetchToken: async () => {
      const outcome = script.outcomes[Math.min(script.calls, script.outcomes.length - 1)]
      script.calls += 1
      if (outcome instanceof Error) throw outcome
      if (typeof outcome === 'function') return await outcome()
      return { token: `token-${script.calls}`, expiresAt: new Date(clock.now() + lifetimeMs), proxyEndpoint: 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com' }
    }
  })
  t.teardown(() => refresher.stop())
  return { clock, sink, script, refresher }
}

function credentialsError (): Error {
  const err = new Error('Could not load credentials from any providers')
  err.name = 'CredentialsProviderError'
  return err
}

t.test('refreshes at half the remaining life, again and again', async (t) => {
  const { clock, script, refresher, sink } = setup()
  refresher.start()
  t.equal((await refresher.get()).token, 'token-1')
  t.same(clock.pending, [6 * HOUR], 'next refresh at half of 12 h')
  await clock.tick(6 * HOUR - 1)
  t.equal(script.calls, 1, 'not a millisecond early')
  await clock.tick(1)
  t.equal(script.calls, 2)
  t.equal((await refresher.get()).token, 'token-2')
  await clock.tick(6 * HOUR)
  t.equal((await refresher.get()).token, 'token-3')
  const refreshed = sink.lines.filter((l) => l.msg === 'ECR token refreshed')
  t.equal(refreshed.length, 3)
  t.equal(refreshed[0]?.expiresAt, new Date(clock.now() - 6 * HOUR + 12 * HOUR - 6 * HOUR).toISOString())
  t.notMatch(sink.text(), /token-\d/, 'the token itself is never logged')
})

t.test('requests during the first fetch wait for it; one fetch in flight', async (t) => {
  const { script, refresher } = setup()
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  script.outcomes = [async () => {
    await gate
    return { token: 'slow', expiresAt: new Date(Date.UTC(2026, 10, 23)) }
  }]
  refresher.start()
  const waiting = Promise.all([refresher.get(), refresher.get(), refresher.get()])
  await settle()
  t.equal(script.calls, 1)
  release()
  t.same((await waiting).map((tok) => tok.token), ['slow', 'slow', 'slow'])
  t.equal(script.calls, 1)
})

t.test('failures back off exponentially with jitter, capped, and recover', async (t) => {
  const { clock, script, refresher, sink } = setup({ random: () => 1 })
  script.outcomes = [credentialsError(), credentialsError(), credentialsError(), credentialsError(), credentialsError(), credentialsError(), credentialsError(), credentialsError(), 'ok']
  refresher.start()
  await settle()
  const delays: number[] = []
  for (let i = 0; i < 8; i++) {
    const next = clock.pending[0] as number
    delays.push(next)
    await clock.tick(next)
  }
  t.same(delays, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000], 'doubling from 1 s, capped at 60 s')
  t.equal(script.calls, 9)
  t.equal(refresher.status().ready, true, 'recovered by itself')
  t.equal(refresher.status().error, undefined)
  const failure = sink.lines.find((l) => l.level === 50)
  t.match(failure?.msg, /^ECR token refresh failed: no AWS credentials found/)
})

t.test('jitter keeps half of the delay fixed', async (t) => {
  const { clock, script, refresher } = setup({ random: () => 0 })
  script.outcomes = [credentialsError()]
  refresher.start()
  await settle()
  t.same(clock.pending, [500])
  await clock.tick(500)
  t.same(clock.pending, [1000])
})

t.test('no credentials: requests fail fast with the reason, the proxy keeps trying', async (t) => {
  const { script, refresher } = setup()
  script.outcomes = [credentialsError()]
  refresher.start()
  await t.rejects(refresher.get(), new TokenUnavailableError('no ECR token: no AWS credentials found (Could not load credentials from any providers); set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a web identity (IRSA) or run where instance/task credentials exist'))
  await settle()
  await t.rejects(refresher.get(), { name: 'TokenUnavailableError' })
  t.equal(script.calls, 1, 'a request does not trigger a fetch of its own')
  t.equal(refresher.status().ready, false)
  t.match(refresher.status().error, /no AWS credentials found/)
})

t.test('the current token is served while refreshes fail, never after it expires', async (t) => {
  const { clock, script, refresher } = setup({ lifetimeMs: HOUR })
  refresher.start()
  t.equal((await refresher.get()).token, 'token-1')
  const denied = new Error('not authorized to perform ecr:GetAuthorizationToken')
  denied.name = 'AccessDeniedException'
  script.outcomes = ['ok', denied]
  await clock.tick(HOUR / 2)
  t.equal(script.calls, 2)
  t.equal((await refresher.get()).token, 'token-1', 'still valid: still served')
  t.equal(refresher.status().ready, true)
  // A token is treated as expired 5 % of its lifetime (at most 60 s) before expiresAt.
  await clock.tick(HOUR / 2 - 3 * 60_000 - 1)
  t.equal((await refresher.get()).token, 'token-1')
  await clock.tick(3 * 60_000)
  await t.rejects(refresher.get(), { name: 'TokenUnavailableError', message: /^the ECR token expired at .* and no new one could be fetched: AWS denied ecr:GetAuthorizationToken: not authorized/ })
  t.equal(refresher.status().ready, false)
})

t.test('a rejected token is replaced once; repeated rejections are rate-limited', async (t) => {
  const { clock, script, refresher } = setup()
  refresher.start()
  const first = await refresher.get()
  const replacement = await refresher.replacementFor(first.token)
  t.equal(replacement?.token, 'token-2')
  t.equal(script.calls, 2)
  t.equal((await refresher.replacementFor(first.token))?.token, 'token-2', 'a stale token gets the current one without a fetch')
  t.equal(script.calls, 2)
  t.equal(await refresher.replacementFor('token-2'), undefined, 'within 10 s: no second forced refresh')
  t.equal(script.calls, 2)
  await clock.tick(10_000)
  t.equal((await refresher.replacementFor('token-2'))?.token, 'token-3')
  t.equal(script.calls, 3)
})

t.test('concurrent rejections share one refresh', async (t) => {
  const { script, refresher } = setup()
  refresher.start()
  const { token } = await refresher.get()
  const replacements = await Promise.all(Array.from({ length: 20 }, async () => await refresher.replacementFor(token)))
  t.same(new Set(replacements.map((r) => r?.token)), new Set(['token-2']))
  t.equal(script.calls, 2)
})

t.test('a forced refresh that fails gives no replacement', async (t) => {
  const { script, refresher } = setup()
  refresher.start()
  const { token } = await refresher.get()
  script.outcomes = ['ok', new Error('socket hang up')]
  t.equal(await refresher.replacementFor(token), undefined)
  t.equal((await refresher.get()).token, token, 'the old token is still held until it expires')
})

t.test('a token already expired on arrival is a failure', async (t) => {
  const { clock, script, refresher } = setup()
  script.outcomes = [async () => ({ token: 'stale', expiresAt: new Date(clock.now() - 1000) })]
  refresher.start()
  await t.rejects(refresher.get(), { message: /returned a token that expired at/ })
})

t.test('a late timer (host slept) does not leave requests failing', async (t) => {
  const { clock, script, refresher } = setup({ lifetimeMs: HOUR })
  refresher.start()
  await refresher.get()
  refresher.stop()
  refresher.start()
  await settle()
  t.equal(script.calls, 2)
  refresher.stop()
  // Simulate the scheduled refresh not having run before expiry.
  const expired = new TokenRefresher({ clock, log: logSink().logger, fetchToken: async () => ({ token: 'fresh', expiresAt: new Date(clock.now() + HOUR) }) })
  t.equal((await expired.get()).token, 'fresh', 'get() fetches when nothing is held and nothing failed')
  expired.stop()
})

t.test('stop() cancels the schedule', async (t) => {
  const { clock, refresher } = setup()
  refresher.start()
  await refresher.get()
  t.equal(clock.pending.length, 1)
  refresher.stop()
  t.equal(clock.pending.length, 0)
  t.equal(refresher.status().ready, true)
})
