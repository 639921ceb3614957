import { createHash } from 'node:crypto'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { GiB, startBigBlobRegistry } from '../helpers/big-blob-registry.js'
import { awsTestEnv, startCli, waitReady } from '../helpers/cli-process.js'
import { syntheticDigest } from '../helpers/digest.js'
import { startEcrApi } from '../helpers/ecr-api.js'
import { TokenAuthority } from '../helpers/token-authority.js'

async function setup (t: Test, args: string[] = []) {
  const authority = new TokenAuthority()
  const registry = await startBigBlobRegistry(authority)
  t.teardown(() => registry.close())
  const api = await startEcrApi({ authority, proxyEndpoint: registry.url })
  t.teardown(() => api.close())
  const proxy = await startCli(t, ['--upstream', registry.url, ...args], awsTestEnv(api.url))
  await waitReady(proxy)
  return proxy
}

t.test('SIGTERM lets an in-flight 1 GiB download finish, refuses new work, then exits 0', async (t) => {
  const proxy = await setup(t)
  const expected = await syntheticDigest(GiB, 'download')
  const res = await request(`${proxy.url}/v2/big/blobs/${expected}`)
  t.equal(res.statusCode, 200)
  const hash = createHash('sha256')
  let received = 0
  let signalled = false
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer)
    received += (chunk as Buffer).length
    if (!signalled && received > 64 * 1024 * 1024) {
      signalled = true
      proxy.child.kill('SIGTERM')
      await proxy.waitFor(/"msg":"shutting down"/)
      // Refused at connect once the listener is closed; in the moment before, Fastify answers 503
      // or closes the new connection as idle.
      const refused = await request(`${proxy.url}/healthz`).then(async (r) => { await r.body.dump(); return r.statusCode }, (err: Error & { code?: string }) => err.code)
      t.ok(refused === 'ECONNREFUSED' || refused === 'ECONNRESET' || refused === 503, `no new work once shutting down (${String(refused)})`)
    }
  }
  t.equal(received, GiB)
  t.equal(`sha256:${hash.digest('hex')}`, expected, 'the whole blob arrived intact')
  t.equal(await proxy.exited, 0, proxy.stdout())
})

t.test('the grace period bounds the wait; a second signal exits at once', async (t) => {
  const proxy = await setup(t, ['--shutdown-grace-seconds', '600'])
  const expected = await syntheticDigest(GiB, 'download')
  const res = await request(`${proxy.url}/v2/big/blobs/${expected}`)
  // Read a little, then stall: the transfer cannot finish while nobody reads.
  const reader = res.body[Symbol.asyncIterator]()
  await reader.next()
  proxy.child.kill('SIGTERM')
  await proxy.waitFor(/"msg":"shutting down"/)
  t.equal(proxy.child.exitCode, null, 'still draining')
  proxy.child.kill('SIGTERM')
  t.equal(await proxy.exited, 1, 'second signal: immediate exit')
  res.body.destroy()
})

t.test('a short grace period ends a stalled transfer', async (t) => {
  const proxy = await setup(t, ['--shutdown-grace-seconds', '0.5'])
  const expected = await syntheticDigest(GiB, 'download')
  const res = await request(`${proxy.url}/v2/big/blobs/${expected}`)
  const reader = res.body[Symbol.asyncIterator]()
  await reader.next()
  proxy.child.kill('SIGTERM')
  t.equal(await proxy.exited, 1, 'killed by the grace timeout')
  t.match(proxy.stdout(), /killed by timeout \(500ms\)/)
  res.body.destroy()
})
