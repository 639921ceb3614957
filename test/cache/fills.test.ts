import { readdir, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { FakeRegistry, fetch, metricValue, pattern, sha256, startCachingProxy, tempDir } from './support.js'

async function committed (dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'blobs', 'sha256')).catch(() => [] as string[])).sort()
}

t.test('eight clients of one uncached digest: one upstream fetch, bytes as they arrive, every client byte-exact', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(4 * 1024 * 1024 + 17)
  const digest = registry.addBlob(['team/app'], layer)
  const release = registry.hold(digest)
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t))
  const url = `${proxy.url}/v2/team/app/blobs/${digest}`

  const clients = Array.from({ length: 8 }, async () => await fetch(url))
  // The registry has sent half and waits: the clients already have what is written, not nothing.
  for (let i = 0; i < 200 && proxy.logs.lines.length === 0; i++) await new Promise((resolve) => setImmediate(resolve))
  await t.resolves(waitFor(async () => (await readdir(join(proxy.dir, 'tmp'))).length === 1), 'the fill is being written')
  const received = await progressOf(proxy)
  t.ok(received > 0, `clients received ${received} bytes before the registry sent the second half`)
  release()
  const answers = await Promise.all(clients)
  for (const answer of answers) {
    t.equal(answer.status, 200)
    t.equal(answer.error, undefined)
    t.equal(sha256(answer.body), digest)
  }
  t.equal(registry.blobGets(digest).length, 1, 'one upstream fetch')
  const metrics = await proxy.metrics()
  t.equal(metricValue(metrics, 'ecr_proxy_cache_misses_total', 'kind="blob"'), 1)
  t.equal(metricValue(metrics, 'ecr_proxy_cache_hits_total', 'kind="blob"'), 7)
  t.equal(metricValue(metrics, 'ecr_proxy_cache_saved_bytes_total', 'kind="blob"'), 7 * layer.length)
})

/** Bytes served from the cache so far, from the metrics. */
async function progressOf (proxy: { metrics: () => Promise<string> }): Promise<number> {
  let served = 0
  await waitFor(async () => {
    served = metricValue(await proxy.metrics(), 'ecr_proxy_cache_served_bytes_total', 'kind="blob"')
    return served > 0
  })
  return served
}

async function waitFor (condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await condition()) return
    await new Promise((resolve) => setImmediate(resolve))
  }
  throw new Error('condition never met')
}

t.test('wrong bytes for a digest: the client is cut off, nothing is committed, the next request goes upstream', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(300_000)
  const digest = registry.addBlob(['team/app'], layer)
  registry.blobs.get(digest)!.wrongBytes = true
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t))
  const url = `${proxy.url}/v2/team/app/blobs/${digest}`

  const first = await fetch(url)
  t.equal(first.status, 200, 'the headers went out while the bytes streamed')
  t.ok(first.error !== undefined, 'the body was cut')
  t.ok(first.body.length < layer.length, `${first.body.length} of ${layer.length} bytes: never a complete-looking body`)
  t.same(await committed(proxy.dir), [])
  t.same(await readdir(join(proxy.dir, 'tmp')), [])
  t.ok(proxy.logs.lines.some((l) => l.msg === 'the registry sent a body that does not match its digest: not cached, clients cut off' && l.digest === digest))
  t.equal(metricValue(await proxy.metrics(), 'ecr_proxy_cache_verification_failures_total'), 1)

  registry.blobs.get(digest)!.wrongBytes = false
  const second = await fetch(url)
  t.equal(second.error, undefined)
  t.equal(sha256(second.body), digest)
  t.equal(registry.blobGets(digest).length, 2, 'the next request went upstream again')
  t.same(await committed(proxy.dir), [digest.slice(7), `${digest.slice(7)}.json`])
})

t.test('a body cut short by the registry: the client is cut off, nothing is committed', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const digest = registry.addBlob(['team/app'], pattern(300_000))
  registry.blobs.get(digest)!.truncate = true
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t))
  // The fill may fail before the proxy has written anything (the headers go out with the first
  // bytes): then the connection closes before a status line. Either way, cut off.
  const first = await fetch(`${proxy.url}/v2/team/app/blobs/${digest}`).catch((err: Error) => ({ error: err, body: Buffer.alloc(0) }))
  t.ok(first.error !== undefined, 'the body was cut')
  t.ok(first.body.length < 300_000)
  await waitFor(async () => (await readdir(join(proxy.dir, 'tmp'))).length === 0)
  t.same(await committed(proxy.dir), [])
})

t.test('debris of a process killed mid-write and a truncated file are removed at start, never served', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(200_000)
  const digest = registry.addBlob(['team/app'], layer)
  const dir = await tempDir(t)
  const hex = digest.slice(7)
  await mkdir(join(dir, 'tmp'), { recursive: true })
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(dir, 'tmp', `sha256-${hex}.abc`), layer.subarray(0, 1000))
  await writeFile(join(dir, 'blobs', 'sha256', hex), layer.subarray(0, 150_000))
  await writeFile(join(dir, 'blobs', 'sha256', `${hex}.json`), JSON.stringify({ digest, size: layer.length, headers: {} }))
  const proxy = await startCachingProxy(t, registry.url, dir)
  t.same(await readdir(join(dir, 'tmp')), [])
  t.ok(proxy.logs.lines.some((l) => l.msg === 'damaged cache file removed' && l.digest === digest))
  const answer = await fetch(`${proxy.url}/v2/team/app/blobs/${digest}`)
  t.equal(sha256(answer.body), digest)
  t.equal(registry.blobGets(digest).length, 1, 'fetched again from the registry')
})

t.test('a committed file that rots: the whole-body hit is cut before its end, the entry removed', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(600_000)
  const digest = registry.addBlob(['team/app'], layer)
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t))
  const url = `${proxy.url}/v2/team/app/blobs/${digest}`
  await fetch(url)
  const rotten = Buffer.from(layer)
  rotten[123_456] = (rotten[123_456] as number) ^ 0xff
  await writeFile(join(proxy.dir, 'blobs', 'sha256', digest.slice(7)), rotten)
  const hit = await fetch(url)
  t.ok(hit.error !== undefined, 'cut off')
  t.ok(hit.body.length < layer.length)
  t.ok(proxy.logs.lines.some((l) => l.msg === 'a cache file does not match its digest: removed, client cut off'))
  await waitFor(async () => (await committed(proxy.dir)).length === 0)
  const again = await fetch(url)
  t.same(again.body, layer)
  t.equal(registry.blobGets(digest).length, 2)
})
