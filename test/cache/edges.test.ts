import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { CacheFile, CacheFileSystem } from '../../src/cache/file-system.js'
import { nodeFileSystem } from '../../src/cache/file-system.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { FakeRegistry, fetch, metricValue, pattern, sha256, startCachingProxy, tempDir } from './support.js'

const MANIFEST = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}')
const OCI = 'application/vnd.oci.image.manifest.v1+json'

async function committed (dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'blobs', 'sha256')).catch(() => [] as string[])).sort()
}

t.test('If-Range and several ranges are answered from the file as the registry would', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(300_000)
  const digest = registry.addBlob(['team/app'], layer)
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t))
  const url = `${proxy.url}/v2/team/app/blobs/${digest}`
  const miss = await fetch(url)
  t.equal(miss.headers.etag, `"${digest}"`)

  const same = await fetch(url, { range: 'bytes=100-199', 'if-range': `"${digest}"` })
  t.equal(same.status, 206, 'the validator matches: the part')
  t.equal(same.headers['content-range'], `bytes 100-199/${layer.length}`)
  t.same(same.body, layer.subarray(100, 200))

  const changed = await fetch(url, { range: 'bytes=100-199', 'if-range': '"something-else"' })
  t.equal(changed.status, 200, 'the validator does not match: the whole blob')
  t.equal(changed.headers['content-range'], undefined)
  t.equal(changed.headers['content-length'], String(layer.length))
  t.same(changed.body, layer)

  const several = await fetch(url, { range: 'bytes=0-9,20-29' })
  t.equal(several.status, 200)
  t.same(several.body, layer)
  t.equal(registry.requests.length, 1, 'all from the cache')
})

t.test('HEAD of an uncached blob is the registry\'s answer, counted as a miss, and caches nothing', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(70_000)
  const digest = registry.addBlob(['team/app'], layer)
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t))
  const head = await fetch(`${proxy.url}/v2/team/app/blobs/${digest}`, {}, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], String(layer.length))
  t.equal(head.headers['docker-content-digest'], digest)
  t.same(registry.requests.map((r) => `${r.method} ${r.url}`), [`HEAD /v2/team/app/blobs/${digest}`])
  t.same(await committed(proxy.dir), [])
  t.equal(metricValue(await proxy.metrics(), 'ecr_proxy_cache_misses_total', 'kind="blob"'), 1)
})

t.test('a blob the registry names differently, or sends without Content-Length, streams through uncached', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const renamed = pattern(50_000, 1)
  const renamedDigest = registry.addBlob(['team/app'], renamed)
  const other = sha256(Buffer.from('other'))
  registry.blobs.get(renamedDigest)!.announce = other
  const chunked = pattern(50_000, 2)
  const chunkedDigest = registry.addBlob(['team/app'], chunked)
  registry.blobs.get(chunkedDigest)!.chunked = true
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t))

  for (const [digest, data, reason] of [[renamedDigest, renamed, `the registry named it ${other}`], [chunkedDigest, chunked, 'no Content-Length']] as const) {
    const answer = await fetch(`${proxy.url}/v2/team/app/blobs/${digest}`)
    t.equal(answer.status, 200)
    t.same(answer.body, data, 'the client gets the registry\'s bytes')
    t.ok(proxy.logs.lines.some((l) => l.msg === 'not cached' && l.digest === digest && l.reason === reason), reason)
    await fetch(`${proxy.url}/v2/team/app/blobs/${digest}`)
    t.equal(registry.blobGets(digest).length, 2, 'and the next request goes to the registry again')
  }
  t.same(await committed(proxy.dir), [])
})

t.test('a cache directory that cannot take a new file: bytes still served, logged once, and resumed when it can', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const blobs = [1, 2, 3].map((seed) => pattern(60_000, seed))
  const digests = blobs.map((data) => registry.addBlob(['team/app'], data))
  let refuse = true
  const fs: CacheFileSystem = {
    ...nodeFileSystem,
    open: async (path, flags) => {
      if (refuse && flags === 'w+') throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES' })
      return await nodeFileSystem.open(path, flags)
    }
  }
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t), [], { cacheFileSystem: fs })
  const warning = 'the cache directory cannot be written: serving without caching until it can'
  for (const i of [0, 1]) {
    const answer = await fetch(`${proxy.url}/v2/team/app/blobs/${digests[i]}`)
    t.equal(answer.error, undefined)
    t.same(answer.body, blobs[i])
  }
  const warnings = proxy.logs.lines.filter((l) => l.msg === warning)
  t.equal(warnings.length, 1, 'logged once, not per request')
  t.equal(warnings[0]?.code, 'EACCES')
  t.equal(JSON.parse((await fetch(`${proxy.url}/readyz`)).body.toString()).cache.diskFailing, true)
  t.same(await committed(proxy.dir), [])

  refuse = false
  const third = await fetch(`${proxy.url}/v2/team/app/blobs/${digests[2]}`)
  t.same(third.body, blobs[2])
  t.ok(proxy.logs.lines.some((l) => l.msg === 'the cache directory is writable again: caching resumed'))
  t.equal(JSON.parse((await fetch(`${proxy.url}/readyz`)).body.toString()).cache.diskFailing, false)
  t.same(await committed(proxy.dir), [digests[2]!.slice(7), `${digests[2]!.slice(7)}.json`].sort())
})

/** A file system whose writes fail with ENOSPC once `budget` bytes are written. */
function fullAfter (budget: number): CacheFileSystem {
  let written = 0
  return {
    ...nodeFileSystem,
    open: async (path, flags): Promise<CacheFile> => {
      const file = await nodeFileSystem.open(path, flags)
      return {
        read: async (...args) => await file.read(...args),
        close: async () => { await file.close() },
        write: async (buffer, offset, length, position) => {
          if (written + length > budget) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
          written += length
          return await file.write(buffer, offset, length, position)
        }
      }
    }
  }
}

t.test('a full disk and a registry that ignores the Range of the resume: the client is cut off, never sent wrong bytes', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(500_000)
  const digest = registry.addBlob(['team/app'], layer)
  registry.blobs.get(digest)!.ignoreRange = true
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t), [], { cacheFileSystem: fullAfter(200_000) })
  const answer = await fetch(`${proxy.url}/v2/team/app/blobs/${digest}`)
  t.equal(answer.status, 200)
  t.ok(answer.error !== undefined, 'cut off')
  t.ok(answer.body.length < layer.length)
  t.same(answer.body, layer.subarray(0, answer.body.length), 'what it got is the start of the blob')
  const resume = registry.requests.filter((r) => r.headers.range !== undefined)
  t.equal(resume.length, 1)
  t.match(resume[0]?.headers.range, /^bytes=\d+-499999$/)
})

t.test('offline with an expired confirmation: --cache-serve-stale serves on the last one, for a stopped registry and for a 5xx', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(80_000)
  const digest = registry.addBlob(['team/app'], layer)
  const clock = new FakeClock(Date.now())
  const argv = ['--cache-confirm-seconds', '60']
  const stale = await startCachingProxy(t, registry.url, await tempDir(t), [...argv, '--cache-serve-stale'], { clock })
  const plain = await startCachingProxy(t, registry.url, await tempDir(t), argv, { clock })
  for (const proxy of [stale, plain]) await fetch(`${proxy.url}/v2/team/app/blobs/${digest}`)
  await clock.tick(61_000)
  const message = 'the registry cannot be reached: served from the cache on an earlier confirmation'

  registry.down = true
  const on503 = await fetch(`${stale.url}/v2/team/app/blobs/${digest}`)
  t.equal(on503.status, 200)
  t.same(on503.body, layer)
  t.ok(stale.logs.lines.some((l) => l.msg === message && l.reason === 'the registry answered 503'))
  const plain503 = await fetch(`${plain.url}/v2/team/app/blobs/${digest}`)
  t.equal(plain503.status, 503, 'without the flag the registry\'s answer')

  await registry.stop()
  const stopped = await fetch(`${stale.url}/v2/team/app/blobs/${digest}`)
  t.equal(stopped.status, 200)
  t.same(stopped.body, layer)
  t.equal(stale.logs.lines.filter((l) => l.msg === message).length, 2)
  const plainStopped = await fetch(`${plain.url}/v2/team/app/blobs/${digest}`)
  t.equal(plainStopped.status, 502)
  t.equal(JSON.parse(plainStopped.body.toString()).errors[0].code, 'UNAVAILABLE')
  t.notOk(plain.logs.lines.some((l) => l.msg === message))
})

t.test('a tag resolved by HEAD (as containerd does) is answered offline from the digest fetched after it', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const digest = registry.addManifest('team/app', '1.0', MANIFEST)
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t), ['--cache-serve-stale'])
  const head = await fetch(`${proxy.url}/v2/team/app/manifests/1.0`, { accept: OCI }, 'HEAD')
  t.equal(head.headers['docker-content-digest'], digest)
  const byDigest = await fetch(`${proxy.url}/v2/team/app/manifests/${digest}`, { accept: OCI })
  t.same(byDigest.body, MANIFEST)
  registry.down = true
  const offline = await fetch(`${proxy.url}/v2/team/app/manifests/1.0`, { accept: OCI })
  t.equal(offline.status, 200)
  t.same(offline.body, MANIFEST)
  t.equal(offline.headers['content-type'], OCI)
  t.match(offline.headers['ecr-proxy-cache'], /^stale; tag-resolved-at=/)
})

t.test('a tag whose Docker-Content-Digest does not match its bytes is served, not cached, and counted', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const digest = registry.addManifest('team/app', '1.0', MANIFEST)
  const wrong = sha256(Buffer.from('not this manifest'))
  registry.manifests.get('team/app:1.0')!.announce = wrong
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t))
  const answer = await fetch(`${proxy.url}/v2/team/app/manifests/1.0`)
  t.equal(answer.status, 200)
  t.same(answer.body, MANIFEST)
  t.equal(answer.headers['docker-content-digest'], wrong, 'the registry\'s answer as it was')
  t.ok(proxy.logs.lines.some((l) => l.msg === 'the registry\'s Docker-Content-Digest does not match the manifest: not cached' && l.announced === wrong && l.computed === digest))
  t.equal(metricValue(await proxy.metrics(), 'ecr_proxy_cache_verification_failures_total'), 1)
  t.same(await committed(proxy.dir), [])
  await fetch(`${proxy.url}/v2/team/app/manifests/${digest}`)
  t.equal(registry.requests.filter((r) => r.url.endsWith(digest)).length, 1, 'its digest is asked of the registry')
})

t.test('a tag manifest over 4 MiB streams whole and uncached; one the disk refuses is still served', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const huge = Buffer.concat([Buffer.from('{"schemaVersion":2,"annotations":{"x":"'), Buffer.alloc(4 * 1024 * 1024, 'a'), Buffer.from('"}}')])
  registry.addManifest('team/app', 'huge', huge)
  registry.addManifest('team/app', 'small', MANIFEST)
  let failMetadata = false
  const fs: CacheFileSystem = {
    ...nodeFileSystem,
    writeFile: async (path, data) => {
      if (failMetadata) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' })
      await nodeFileSystem.writeFile(path, data)
    }
  }
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t), [], { cacheFileSystem: fs })
  const big = await fetch(`${proxy.url}/v2/team/app/manifests/huge`)
  t.equal(big.status, 200)
  t.equal(big.error, undefined)
  t.equal(sha256(big.body), sha256(huge))
  t.same(await committed(proxy.dir), [], 'not cached')

  failMetadata = true
  const small = await fetch(`${proxy.url}/v2/team/app/manifests/small`)
  t.equal(small.status, 200)
  t.same(small.body, MANIFEST)
  t.ok(proxy.logs.lines.some((l) => l.msg === 'the cache directory cannot be written: serving without caching until it can' && l.code === 'EIO'))
  t.same(await committed(proxy.dir), [])
})
