import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { CacheFile, CacheFileSystem } from '../../src/cache/file-system.js'
import { nodeFileSystem } from '../../src/cache/file-system.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { FakeRegistry, fetch, metricValue, pattern, sha256, startCachingProxy, tempDir } from './support.js'

t.test('a digest cached through one repository is served through another only once the registry confirms it there', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(100_000)
  const digest = registry.addBlob(['team/a'], layer)
  const clock = new FakeClock(Date.now())
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t), ['--cache-confirm-seconds', '60', '--deny-repositories', 'team/secret'], { clock })
  await fetch(`${proxy.url}/v2/team/a/blobs/${digest}`)
  registry.requests.length = 0

  const denied = await fetch(`${proxy.url}/v2/team/b/blobs/${digest}`)
  t.equal(denied.status, 404, 'the registry\'s answer for team/b, not the cached bytes')
  t.same(JSON.parse(denied.body.toString()).errors[0].code, 'BLOB_UNKNOWN')
  t.same(registry.requests.map((r) => `${r.method} ${r.url}`), [`HEAD /v2/team/b/blobs/${digest}`, `GET /v2/team/b/blobs/${digest}`])

  const policy = await fetch(`${proxy.url}/v2/team/secret/blobs/${digest}`)
  t.equal(policy.status, 403, 'the access policy runs before the cache')
  t.equal(JSON.parse(policy.body.toString()).errors[0].code, 'DENIED')
  t.equal(registry.requests.length, 2, 'nothing sent for the denied repository')

  registry.blobs.get(digest)!.repos.add('team/b')
  registry.requests.length = 0
  const confirmed = await fetch(`${proxy.url}/v2/team/b/blobs/${digest}`)
  t.same(confirmed.body, layer)
  t.same(registry.requests.map((r) => r.method), ['HEAD'], 'a HEAD confirmed it; the bytes came from the cache')
  await fetch(`${proxy.url}/v2/team/b/blobs/${digest}`)
  t.equal(registry.requests.length, 1, 'the confirmation is remembered')

  await clock.tick(61_000)
  registry.blobs.get(digest)!.repos.delete('team/b')
  const revoked = await fetch(`${proxy.url}/v2/team/b/blobs/${digest}`)
  t.equal(revoked.status, 404, 'after --cache-confirm-seconds the registry is asked again, and its no stands')
})

t.test('least recently used entries are evicted to stay under --cache-max-size; a larger blob passes uncached', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const blobs = [1, 2, 3, 4].map((seed) => registry.addBlob(['team/app'], pattern(100_000, seed)))
  const big = registry.addBlob(['team/app'], pattern(400_000, 9))
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t), ['--cache-max-size', '300000'])
  const get = async (digest: string) => await fetch(`${proxy.url}/v2/team/app/blobs/${digest}`)
  for (const digest of blobs.slice(0, 3)) await get(digest)
  await get(blobs[0]!)
  await get(blobs[3]!)
  const files = (await readdir(join(proxy.dir, 'blobs', 'sha256'))).filter((n) => !n.endsWith('.json')).sort()
  t.same(files, [blobs[0]!, blobs[2]!, blobs[3]!].map((d) => d.slice(7)).sort(), 'the least recently used (blob 2) went')
  const metrics = await proxy.metrics()
  t.equal(metricValue(metrics, 'ecr_proxy_cache_evictions_total'), 1)
  t.equal(metricValue(metrics, 'ecr_proxy_cache_entries'), 3)
  t.equal(metricValue(metrics, 'ecr_proxy_cache_size_bytes'), 300_000)

  const large = await get(big)
  t.equal(sha256(large.body), big, 'served')
  t.equal(metricValue(await proxy.metrics(), 'ecr_proxy_cache_entries'), 3, 'not cached')
  t.ok(proxy.logs.lines.some((l) => l.msg === 'not cached' && String(l.reason).includes('do not fit')))
})

t.test('the cache survives a restart; a second process on the directory is refused', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(250_000)
  const digest = registry.addBlob(['team/app'], layer)
  const dir = await tempDir(t)
  const first = await startCachingProxy(t, registry.url, dir)
  await fetch(`${first.url}/v2/team/app/blobs/${digest}`)
  await t.rejects(startCachingProxy(t, registry.url, dir), /cacheDir \(from --cache-dir\): cache directory .* is in use by process/)
  await first.close()

  registry.requests.length = 0
  const second = await startCachingProxy(t, registry.url, dir)
  t.ok(second.logs.lines.some((l) => l.msg === 'cache opened' && l.entries === 1 && l.bytes === layer.length))
  const hit = await fetch(`${second.url}/v2/team/app/blobs/${digest}`)
  t.same(hit.body, layer)
  t.same(registry.requests.map((r) => r.method), ['HEAD'], 'a new process confirms the repository, then serves the file')
})

/** A file system whose writes fail with ENOSPC once `budget` bytes are written. */
function fullAfter (budget: number): CacheFileSystem & { failures: number } {
  let written = 0
  const fs = {
    ...nodeFileSystem,
    failures: 0,
    open: async (path: string, flags: 'r' | 'w+' | 'wx'): Promise<CacheFile> => {
      const file = await nodeFileSystem.open(path, flags)
      return {
        read: async (...args) => await file.read(...args),
        close: async () => { await file.close() },
        write: async (buffer, offset, length, position) => {
          if (written + length > budget) {
            fs.failures++
            throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
          }
          written += length
          return await file.write(buffer, offset, length, position)
        }
      }
    }
  }
  return fs
}

t.test('a full disk: the client still gets every byte, nothing is committed, and it is logged once', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const a = pattern(500_000, 1)
  const b = pattern(500_000, 2)
  const da = registry.addBlob(['team/app'], a)
  const db = registry.addBlob(['team/app'], b)
  const fs = fullAfter(200_000)
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t), [], { cacheFileSystem: fs })
  const first = await fetch(`${proxy.url}/v2/team/app/blobs/${da}`)
  t.equal(first.error, undefined)
  t.same(first.body, a, 'byte-exact, the rest fetched from the registry')
  const resumed = registry.requests.filter((r) => r.headers.range !== undefined)
  t.equal(resumed.length, 1)
  t.match(resumed[0]?.headers.range, /^bytes=\d+-499999$/)
  const second = await fetch(`${proxy.url}/v2/team/app/blobs/${db}`)
  t.same(second.body, b)
  t.ok(fs.failures >= 2)
  t.equal(proxy.logs.lines.filter((l) => l.msg === 'the cache directory cannot be written: serving without caching until it can').length, 1, 'logged once')
  t.same((await readdir(join(proxy.dir, 'blobs', 'sha256')).catch(() => [])), [])
  const ready = await fetch(`${proxy.url}/readyz`)
  t.equal(JSON.parse(ready.body.toString()).cache.diskFailing, true, '/readyz shows it')
})

t.test('--cache-serve-stale: with the registry down, a tag is answered from the cache, marked stale', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const manifest = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}')
  const digest = registry.addManifest('team/app', '1.0', manifest)
  const layer = pattern(50_000)
  const blob = registry.addBlob(['team/app'], layer)
  const stale = await startCachingProxy(t, registry.url, await tempDir(t), ['--cache-serve-stale'])
  const plain = await startCachingProxy(t, registry.url, await tempDir(t))
  for (const proxy of [stale, plain]) {
    await fetch(`${proxy.url}/v2/team/app/manifests/1.0`)
    await fetch(`${proxy.url}/v2/team/app/blobs/${blob}`)
  }
  registry.down = true

  const answer = await fetch(`${stale.url}/v2/team/app/manifests/1.0`)
  t.equal(answer.status, 200)
  t.same(answer.body, manifest)
  t.equal(answer.headers['docker-content-digest'], digest)
  t.match(answer.headers['ecr-proxy-cache'], /^stale; tag-resolved-at=\d{4}-/)
  const head = await fetch(`${stale.url}/v2/team/app/manifests/1.0`, {}, 'HEAD')
  t.equal(head.status, 200)
  t.ok(stale.logs.lines.some((l) => l.msg === 'the registry cannot be reached: tag answered from the cache (stale)' && l.digest === digest))
  t.equal(metricValue(await stale.metrics(), 'ecr_proxy_cache_stale_total'), 2)

  const refused = await fetch(`${plain.url}/v2/team/app/manifests/1.0`)
  t.equal(refused.status, 503, 'without the flag the registry\'s failure is the answer')
  t.equal(refused.headers['ecr-proxy-cache'], undefined)

  await registry.stop()
  const down = await fetch(`${stale.url}/v2/team/app/manifests/1.0`)
  t.equal(down.status, 200, 'a registry that cannot be reached at all')
  for (const proxy of [stale, plain]) {
    const byDigest = await fetch(`${proxy.url}/v2/team/app/blobs/${blob}`)
    t.same(byDigest.body, layer, 'a digest confirmed recently is served with the registry stopped')
  }
  const unknown = await fetch(`${stale.url}/v2/team/app/manifests/2.0`)
  t.equal(unknown.status, 502, 'an unknown tag still fails')
  t.equal(JSON.parse(unknown.body.toString()).errors[0].code, 'UNAVAILABLE')
})
