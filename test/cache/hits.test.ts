import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { FakeRegistry, fetch, metricValue, pattern, sha256, startCachingProxy, tempDir } from './support.js'

t.test('a blob is fetched once; the hit repeats status, headers and bytes; HEAD and Range come from the file', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const layer = pattern(700_000)
  const digest = registry.addBlob(['team/app'], layer)
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t))
  const url = `${proxy.url}/v2/team/app/blobs/${digest}`

  const miss = await fetch(url)
  t.equal(miss.status, 200)
  t.equal(sha256(miss.body), digest)
  t.equal(registry.blobGets(digest).length, 1)
  t.equal(registry.blobGets(digest)[0]?.headers.authorization, 'Basic QVdTOnB3', 'the fill carries the proxy\'s credential')

  const hit = await fetch(url, { authorization: 'Basic Y2xpZW50OnNlY3JldA==' })
  t.equal(hit.status, 200)
  t.equal(hit.error, undefined)
  t.same(hit.body, layer, 'every byte')
  for (const name of ['content-type', 'content-length', 'docker-content-digest', 'etag', 'accept-ranges', 'docker-distribution-api-version']) {
    t.equal(hit.headers[name], miss.headers[name], name)
  }
  t.equal(hit.headers['content-length'], String(layer.length))
  t.equal(registry.requests.length, 1, 'the hit sent nothing to the registry (the fill confirmed the repository)')

  const head = await fetch(url, {}, 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], String(layer.length))
  t.equal(head.headers['docker-content-digest'], digest)
  t.equal(head.body.length, 0)

  const part = await fetch(url, { range: 'bytes=1000-1999' })
  t.equal(part.status, 206)
  t.equal(part.headers['content-range'], `bytes 1000-1999/${layer.length}`)
  t.equal(part.headers['content-length'], '1000')
  t.same(part.body, layer.subarray(1000, 2000))

  const resume = await fetch(url, { range: 'bytes=650000-' })
  t.equal(resume.status, 206, 'docker\'s and containerd\'s resume')
  t.equal(resume.headers['content-range'], `bytes 650000-${layer.length - 1}/${layer.length}`)
  t.same(resume.body, layer.subarray(650_000))

  const suffix = await fetch(url, { range: 'bytes=-10' })
  t.equal(suffix.status, 206)
  t.same(suffix.body, layer.subarray(layer.length - 10))

  const beyond = await fetch(url, { range: `bytes=${layer.length}-` })
  t.equal(beyond.status, 416)
  t.equal(beyond.headers['content-range'], `bytes */${layer.length}`)
  t.same(JSON.parse(beyond.body.toString()), { errors: [{ code: 'UNSUPPORTED', message: 'the requested range is not satisfiable' }] })

  t.equal(registry.requests.length, 1, 'HEAD and ranges too came from the cache')
  const [, hex] = digest.split(':') as [string, string]
  t.same(await readFile(join(proxy.dir, 'blobs', 'sha256', hex)), layer, 'the committed file holds the blob')
  t.same(await readdir(join(proxy.dir, 'tmp')), [], 'no temporary file left')

  const metrics = await proxy.metrics()
  t.equal(metricValue(metrics, 'ecr_proxy_cache_misses_total', 'kind="blob"'), 1)
  t.equal(metricValue(metrics, 'ecr_proxy_cache_hits_total', 'kind="blob"'), 6, 'GET, HEAD, three ranges and the 416')
  t.equal(metricValue(metrics, 'ecr_proxy_cache_saved_bytes_total', 'kind="blob"'), layer.length + 1000 + 50_000 + 10)
  t.equal(metricValue(metrics, 'ecr_proxy_cache_served_bytes_total', 'kind="blob"'), 2 * layer.length + 1000 + 50_000 + 10)
  t.equal(metricValue(metrics, 'ecr_proxy_cache_entries'), 1)
  t.equal(metricValue(metrics, 'ecr_proxy_cache_size_bytes'), layer.length)
})

t.test('a manifest by tag always goes to the registry; its digest is then served from the cache', async (t) => {
  const registry = new FakeRegistry()
  await registry.start(t)
  const v1 = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}')
  const d1 = registry.addManifest('team/app', 'latest', v1)
  const proxy = await startCachingProxy(t, registry.url, await tempDir(t))

  const byTag = await fetch(`${proxy.url}/v2/team/app/manifests/latest`, { accept: 'application/vnd.oci.image.manifest.v1+json' })
  t.equal(byTag.status, 200)
  t.same(byTag.body, v1)
  t.equal(byTag.headers['docker-content-digest'], d1)

  const byDigest = await fetch(`${proxy.url}/v2/team/app/manifests/${d1}`)
  t.equal(byDigest.status, 200)
  t.same(byDigest.body, v1)
  t.equal(byDigest.headers['content-type'], 'application/vnd.oci.image.manifest.v1+json')
  t.equal(byDigest.headers['docker-content-digest'], d1)
  t.equal(registry.requests.filter((r) => r.url.includes(d1)).length, 0, 'the digest came from the cache')

  // The tag moves: the next tag request sees it at once.
  const v2 = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[],"v":2}')
  const d2 = registry.addManifest('team/app', 'latest', v2)
  const moved = await fetch(`${proxy.url}/v2/team/app/manifests/latest`)
  t.equal(moved.headers['docker-content-digest'], d2)
  t.same(moved.body, v2)
  t.equal(registry.requests.filter((r) => r.url.endsWith('/manifests/latest')).length, 2)
})
