/**
 * skopeo and curl through the proxy, without credentials: push and pull of every manifest
 * format, inspect, list-tags and the raw tags/list and upload endpoints. Every digest is
 * checked against what the registry itself holds.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { sha256Digest } from '../helpers/digest.js'
import { curl, Skopeo } from './harness/clients.js'
import { FORMATS, seedDirect } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { startStack } from './harness/stack.js'
import { tempDir } from './harness/util.js'

const stack = await startStack(t)
const dir = tempDir(t, 'skopeo')
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const proxy = stack.proxy.host
t.comment(`skopeo ${await skopeo.version()}`)

t.test('skopeo pushes every format through the proxy', async (t) => {
  for (const format of FORMATS) {
    const digestFile = join(dir, `pushed-${format.tag}.digest`)
    await skopeo.run(['copy', '--dest-tls-verify=false', '--digestfile', digestFile, ...format.copyArgs, images.ref(format.image), `docker://${proxy}/e2e/skopeo:${format.tag}`])
    const reported = readFileSync(digestFile, 'utf8').trim()
    const stored = await stack.direct.manifest('e2e/skopeo', format.tag)
    t.equal(stored.mediaType, format.mediaType, `${format.title}: stored as ${format.mediaType}`)
    t.equal(reported, stored.digest, `${format.title}: skopeo reports the digest the registry holds`)
    if (format.preserved) t.equal(stored.digest, images.digest(format.image), `${format.title}: bytes unchanged end to end`)
    for (const layer of stored.json.layers ?? []) {
      t.equal(await stack.direct.blobStatus('e2e/skopeo', layer.digest), 200, `${format.title}: layer ${layer.digest.slice(0, 19)} is in the registry`)
    }
  }
})

t.test('skopeo pulls every format through the proxy', async (t) => {
  const stored = await seedDirect(stack, skopeo, images, 'e2e/seeded')
  for (const format of FORMATS) {
    const out = join(dir, `pulled-${format.tag}`)
    const all = format.image === 'multi' ? ['--all'] : []
    await skopeo.run(['copy', '--src-tls-verify=false', ...all, `docker://${proxy}/e2e/seeded:${format.tag}`, `dir:${out}`])
    const manifest = stored.get(format.tag)
    t.equal(sha256Digest(readFileSync(join(out, 'manifest.json'))), manifest?.digest, `${format.title}: the manifest pulled is the registry's, byte for byte`)
    for (const layer of manifest?.json.layers ?? []) {
      t.equal(sha256Digest(readFileSync(join(out, layer.digest.slice('sha256:'.length)))), layer.digest, `${format.title}: layer ${layer.digest.slice(0, 19)} intact`)
    }
  }
})

t.test('skopeo inspect and list-tags through the proxy', async (t) => {
  for (const format of FORMATS) {
    const stored = await stack.direct.manifest('e2e/skopeo', format.tag)
    const raw = await skopeo.run(['inspect', '--tls-verify=false', '--raw', `docker://${proxy}/e2e/skopeo:${format.tag}`])
    t.equal(sha256Digest(raw.stdout), stored.digest, `inspect --raw ${format.tag}: the registry's manifest`)
    if (format.image === 'base') {
      const inspected = JSON.parse((await skopeo.run(['inspect', '--tls-verify=false', `docker://${proxy}/e2e/skopeo:${format.tag}`])).stdout) as { Digest: string, Layers: string[] }
      t.equal(inspected.Digest, stored.digest, `inspect ${format.tag}: Digest`)
      t.same(inspected.Layers, stored.json.layers?.map((layer) => layer.digest), `inspect ${format.tag}: Layers`)
    }
  }
  const listed = JSON.parse((await skopeo.run(['list-tags', '--tls-verify=false', `docker://${proxy}/e2e/skopeo`])).stdout) as { Tags: string[] }
  t.same([...listed.Tags].sort(), await stack.direct.tags('e2e/skopeo'), 'list-tags: the registry\'s tags')
})

t.test('curl: tags/list and a monolithic blob upload through the proxy', async (t) => {
  const tags = await curl([`${stack.proxy.url}/v2/e2e/skopeo/tags/list`])
  t.equal(tags.status, 200, 'tags/list answers 200')
  const direct = await stack.direct.request('GET', '/v2/e2e/skopeo/tags/list')
  t.same(JSON.parse(tags.body), JSON.parse(direct.body), 'tags/list: the registry\'s answer')

  const started = await curl(['-X', 'POST', `${stack.proxy.url}/v2/e2e/curl/blobs/uploads/`])
  t.equal(started.status, 202, 'upload started')
  const location = started.headers.location ?? ''
  t.match(location, /^\/v2\/e2e\/curl\/blobs\/uploads\/[0-9a-f-]{36}\?/, `upload Location is a path on the proxy (got ${location})`)
  t.notMatch(location, stack.registry.host, 'no trace of the registry\'s address')
  const blob = `curl blob ${Date.now()}\n`
  const digest = sha256Digest(blob)
  const target = new URL(location, stack.proxy.url)
  target.searchParams.set('digest', digest)
  const finished = await curl(['-X', 'PUT', '-H', 'Content-Type: application/octet-stream', '--data-binary', blob, target.toString()])
  t.equal(finished.status, 201, 'upload completed')
  t.equal(finished.headers['docker-content-digest'], digest, 'Docker-Content-Digest of the blob')
  t.equal(finished.headers.location, `/v2/e2e/curl/blobs/${digest}`, 'Location of the new blob, on the proxy')
  t.equal(await stack.direct.blobStatus('e2e/curl', digest), 200, 'the registry holds the blob')
  const fetched = await curl([`${stack.proxy.url}/v2/e2e/curl/blobs/${digest}`])
  t.equal(fetched.body, blob, 'and serves it back through the proxy')
})
