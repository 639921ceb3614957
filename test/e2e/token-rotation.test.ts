/**
 * Tokens that live 10 s, concurrent pulls for a minute: the proxy must rotate tokens under
 * load without a single client failure. The registry enforces the tokens for real (each one is
 * removed from its htpasswd on expiry, and it accepts only the newest live one).
 * E2E_ROTATION_SECONDS shortens or lengthens the run.
 */
import { join } from 'node:path'
import t from 'tap'
import { Skopeo } from './harness/clients.js'
import { seedDirect } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { failureText, httpPull, skopeoPull } from './harness/pulls.js'
import { registryRequests } from './harness/registry.js'
import { startStack } from './harness/stack.js'
import { tempDir } from './harness/util.js'

const LIFETIME_MS = 10_000
const DURATION_MS = Number(process.env.E2E_ROTATION_SECONDS ?? 60) * 1000
/** Bound on each worker, whatever the clock does. */
const MAX_PULLS_PER_WORKER = 2_000

const stack = await startStack(t, { lifetimeMs: LIFETIME_MS })
const dir = tempDir(t, 'rotation')
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const stored = await seedDirect(stack, skopeo, images, 'e2e/rotation')

t.test(`concurrent pulls for ${DURATION_MS / 1000} s with ${LIFETIME_MS / 1000} s tokens: no failure`, async (t) => {
  const v2s2 = stored.get('v2s2')
  const index = stored.get('index')
  if (v2s2 === undefined || index === undefined) throw new Error('seeding failed')
  const issuedBefore = stack.tokens.issued.length
  const started = Date.now()
  const deadline = started + DURATION_MS
  const failures: string[] = []
  const counts = { skopeo: 0, http: 0 }

  async function worker (name: string, pull: () => Promise<void>, kind: keyof typeof counts): Promise<void> {
    for (let i = 0; i < MAX_PULLS_PER_WORKER && Date.now() < deadline; i++) {
      try {
        await pull()
        counts[kind]++
      } catch (error) {
        failures.push(`${name} pull #${i + 1} at +${((Date.now() - started) / 1000).toFixed(1)} s: ${failureText(error)}`)
      }
    }
  }

  await Promise.all([
    worker('skopeo (v2s2)', async () => await skopeoPull(skopeo, dir, `${stack.proxy.host}/e2e/rotation:v2s2`, v2s2), 'skopeo'),
    worker('skopeo (index)', async () => await skopeoPull(skopeo, dir, `${stack.proxy.host}/e2e/rotation:index`, index), 'skopeo'),
    worker('http (v2s2) A', async () => await httpPull(stack.proxy.url, 'e2e/rotation', 'v2s2', v2s2), 'http'),
    worker('http (v2s2) B', async () => await httpPull(stack.proxy.url, 'e2e/rotation', 'v2s2', v2s2), 'http'),
  ])

  const issued = stack.tokens.issued.length - issuedBefore
  const expired = stack.tokens.events.filter((event) => event.kind === 'expired').length
  const refused = registryRequests(stack.registry).filter((line) => line.status === 401).length
  t.comment(`${counts.skopeo} skopeo pulls and ${counts.http} HTTP pulls in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
    `${issued} tokens issued, ${expired} expired at the registry; the registry refused a credential ${refused} times (the proxy replayed those)`)
  t.same(failures, [], 'no pull failed')
  t.ok(counts.skopeo + counts.http >= DURATION_MS / 1000, 'pulls kept going the whole time')
  // The proxy refreshes at half the remaining life: about every 5 s here.
  t.ok(issued >= Math.floor(DURATION_MS / LIFETIME_MS), `tokens were rotated (${issued} issued)`)
  t.ok(expired >= Math.floor(DURATION_MS / LIFETIME_MS) - 1, `tokens expired at the registry during the run (${expired})`)
  const current = stack.tokens.current()
  t.ok(current !== undefined && current.expiresAt > Date.now(), 'the registry still holds a live token')
  t.equal((await stack.viaProxy.request('GET', '/readyz')).status, 200, 'the proxy is ready')
})
