import t from 'tap'
import { request } from 'undici'
import { startStack } from '../helpers/stack.js'
import { pattern, sha256, tempDir } from './support.js'

t.test('with the cache on, ECR\'s blob redirect is followed by the proxy and the blob cached; the hit goes to neither', async (t) => {
  const dir = await tempDir(t)
  const stack = await startStack(t, { argv: ['--cache-dir', dir, '--redirect-allowed-hosts', '127.0.0.1:*'] })
  const layer = pattern(300_000)
  const digest = stack.registry.putBlob('team/app', layer)
  const get = async () => {
    const res = await request(`${stack.url}/v2/team/app/blobs/${digest}`, { dispatcher: stack.client })
    return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
  }
  const miss = await get()
  t.equal(miss.status, 200, 'the client sees the blob, not the redirect (no --redirects follow given)')
  t.equal(miss.headers.location, undefined)
  t.equal(sha256(miss.body), digest)
  const hit = await get()
  t.equal(hit.status, 200)
  t.same(hit.body, layer)
  for (const name of ['content-type', 'content-length', 'etag', 'docker-content-digest']) t.equal(hit.headers[name], miss.headers[name], name)
  t.equal(stack.registry.s3.requests.length, 1, 'storage was asked once')
  t.equal(stack.upstreamRequests.filter((r) => r.url.includes('/blobs/')).length, 1, 'the registry was asked once')
  t.notOk(stack.registry.s3.requests[0]?.headers.authorization, 'no credential reached storage')

  const other = await request(`${stack.url}/v2/team/other/blobs/${digest}`, { dispatcher: stack.client })
  t.equal(other.statusCode, 404, 'a repository the registry does not confirm gets its answer, not the cached bytes')
  await other.body.dump()
})
