import { request as httpRequest } from 'node:http'
import t, { type Test } from 'tap'
import { sha256Digest, syntheticBytes, syntheticDigest } from '../helpers/digest.js'
import { startEcrRegistry, type EcrRegistry, type EcrRegistryOptions } from '../helpers/ecr-registry.js'
import { basicAuth, rawRequest, type RawResponse } from '../helpers/raw-http.js'
import { TokenAuthority } from '../helpers/token-authority.js'

const MIB = 1024 * 1024
const REPO = 'team/app'

interface Setup { registry: EcrRegistry, auth: Record<string, string>, start: (repo?: string) => Promise<string> }

async function setup (t: Test, opts: Omit<EcrRegistryOptions, 'authority'> = {}): Promise<Setup> {
  const authority = new TokenAuthority()
  const registry = await startEcrRegistry({ authority, ...opts })
  t.teardown(() => registry.close())
  const auth = basicAuth(authority.issue().authorizationToken)
  const start = async (repo = REPO): Promise<string> => {
    const res = await rawRequest(`${registry.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: auth })
    t.equal(res.status, 202)
    return res.headers.location as string
  }
  return { registry, auth, start }
}

function errorOf (res: RawResponse): { code: string, message: string, detail?: unknown } | undefined {
  return (JSON.parse(res.body.toString()) as { errors: Array<{ code: string, message: string, detail?: unknown }> }).errors[0]
}

t.test('chunked upload: PATCH answers 201 with Range; a part after a small part is rejected', async (t) => {
  const { auth, start } = await setup(t, { minChunkBytes: 1000 })
  const location = await start()
  const parts = [Buffer.alloc(1000, 1), Buffer.alloc(400, 2), Buffer.alloc(10, 3)]

  const first = await rawRequest(location, { method: 'PATCH', headers: auth, body: parts[0] })
  t.equal(first.status, 201)
  t.equal(first.headers.range, '0-999')
  t.equal(first.headers.location, location, 'same upload, id still last')
  const second = await rawRequest(location, { method: 'PATCH', headers: { ...auth, 'content-range': '1000-1399' }, body: parts[1] })
  t.equal(second.status, 201, 'a part of >= minChunkBytes may be followed by any part')
  t.equal(second.headers.range, '0-1399')

  const third = await rawRequest(location, { method: 'PATCH', headers: auth, body: parts[2] })
  t.equal(third.status, 400)
  t.equal(errorOf(third)?.code, 'BLOB_UPLOAD_INVALID')
  const putWithBody = await rawRequest(`${location}?digest=${sha256Digest(Buffer.concat(parts))}`, { method: 'PUT', headers: auth, body: parts[2] })
  t.equal(putWithBody.status, 400, 'a final PUT with a body is a part too')
  t.equal(errorOf(putWithBody)?.code, 'BLOB_UPLOAD_INVALID')

  const status = await rawRequest(location, { headers: auth })
  t.equal(status.status, 204)
  t.equal(status.headers.range, '0-1399', 'rejected parts left nothing behind')

  const digest = sha256Digest(Buffer.concat(parts.slice(0, 2)))
  const done = await rawRequest(`${location}?digest=${digest}`, { method: 'PUT', headers: auth })
  t.equal(done.status, 201, 'the small part was the last one: fine')
  t.equal(done.headers['docker-content-digest'], digest)
})

t.test('the default minimum part is 5 MiB', async (t) => {
  const { auth, start } = await setup(t)
  const location = await start()
  t.equal((await rawRequest(location, { method: 'PATCH', headers: auth, body: Buffer.alloc(5 * MIB - 1) })).status, 201)
  t.equal((await rawRequest(location, { method: 'PATCH', headers: auth, body: Buffer.alloc(1) })).status, 400)
})

t.test('Content-Range that does not continue the upload: 416 with the current Range', async (t) => {
  const { auth, start } = await setup(t, { minChunkBytes: 1 })
  const location = await start()
  await rawRequest(location, { method: 'PATCH', headers: auth, body: Buffer.alloc(10) })
  const res = await rawRequest(location, { method: 'PATCH', headers: { ...auth, 'content-range': '0-9' }, body: Buffer.alloc(10) })
  t.equal(res.status, 416)
  t.equal(res.headers.range, '0-9')
  t.equal(errorOf(res)?.code, 'BLOB_UPLOAD_INVALID')
})

t.test('digest mismatch, missing digest, unknown or cancelled uploads', async (t) => {
  const { registry, auth, start } = await setup(t)
  const location = await start()
  await rawRequest(location, { method: 'PATCH', headers: auth, body: 'abc' })
  const wrong = sha256Digest('abd')
  const mismatch = await rawRequest(`${location}?digest=${wrong}`, { method: 'PUT', headers: auth })
  t.equal(mismatch.status, 400)
  t.equal(errorOf(mismatch)?.code, 'DIGEST_INVALID')
  t.equal((await rawRequest(location, { headers: auth })).status, 404, 'a failed commit ends the upload')

  const noDigest = await rawRequest(await start(), { method: 'PUT', headers: auth })
  t.equal(errorOf(noDigest)?.code, 'DIGEST_INVALID')

  const cancelled = await start()
  t.equal((await rawRequest(cancelled, { method: 'DELETE', headers: auth })).status, 204)
  const gone = await rawRequest(cancelled, { method: 'PATCH', headers: auth, body: 'x' })
  t.equal(gone.status, 404)
  t.equal(errorOf(gone)?.code, 'BLOB_UPLOAD_UNKNOWN')

  const elsewhere = (await start('other/repo')).replace('/other/repo/', `/${REPO}/`)
  t.equal((await rawRequest(elsewhere, { headers: auth })).status, 404, 'an upload belongs to its repository')

  const mono = await rawRequest(`${registry.url}/v2/${REPO}/blobs/uploads/?digest=${wrong}`, { method: 'POST', headers: auth, body: 'abc' })
  t.equal(mono.status, 400)
  t.equal(errorOf(mono)?.code, 'DIGEST_INVALID')
})

t.test('cross-repository mount: a plain upload unless BLOB_MOUNTING is on and the blob exists', async (t) => {
  for (const blobMounting of [false, true]) {
    const { registry, auth } = await setup(t, { blobMounting })
    const digest = registry.putBlob('base/image', Buffer.from('shared layer'))
    const mount = await rawRequest(`${registry.url}/v2/${REPO}/blobs/uploads/?mount=${digest}&from=base/image`, { method: 'POST', headers: auth })
    const missing = await rawRequest(`${registry.url}/v2/${REPO}/blobs/uploads/?mount=${sha256Digest('nope')}&from=base/image`, { method: 'POST', headers: auth })
    t.equal(missing.status, 202, `blobMounting=${blobMounting}: unknown blob starts an upload`)
    if (blobMounting) {
      t.equal(mount.status, 201)
      t.equal(mount.headers.location, `${registry.url}/v2/${REPO}/blobs/${digest}`)
      t.equal(mount.headers['docker-content-digest'], digest)
      t.equal((await rawRequest(`${registry.url}/v2/${REPO}/blobs/${digest}`, { method: 'HEAD', headers: auth })).status, 200)
    } else {
      t.equal(mount.status, 202, 'ECR without BLOB_MOUNTING ignores mount')
      t.match(mount.headers.location, /\/blobs\/uploads\/[0-9a-f-]{36}$/)
      t.equal((await rawRequest(`${registry.url}/v2/${REPO}/blobs/${digest}`, { method: 'HEAD', headers: auth })).status, 404)
    }
  }
})

t.test('a PATCH whose client dies mid-body leaves the upload as it was', async (t) => {
  const { registry, auth, start } = await setup(t, { minChunkBytes: 1 })
  const location = await start()
  await rawRequest(location, { method: 'PATCH', headers: auth, body: Buffer.alloc(100, 1) })

  const req = httpRequest(location, { method: 'PATCH', headers: { ...auth, 'content-length': String(4 * MIB) } })
  req.on('error', () => {})
  req.write(Buffer.alloc(MIB, 2))
  const arrived = (): boolean => (registry.requests[2]?.bodyBytes ?? 0) > 0
  for (let spin = 0; spin < 10_000 && !arrived(); spin++) await new Promise<void>((resolve) => setImmediate(resolve))
  t.ok(arrived(), 'part of the body reached the registry')
  req.destroy()
  await registry.settled()

  let next: RawResponse | undefined
  for (let attempt = 0; attempt < 100; attempt++) {
    // the rollback finishes just after the body is lost; until then the upload is busy
    next = await rawRequest(location, { method: 'PATCH', headers: auth, body: Buffer.alloc(10, 3) })
    if (next.status !== 400) break
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  t.equal(next?.status, 201)
  t.equal(next?.headers.range, '0-109', 'the lost part left no bytes behind')
  const digest = sha256Digest(Buffer.concat([Buffer.alloc(100, 1), Buffer.alloc(10, 3)]))
  t.equal((await rawRequest(`${location}?digest=${digest}`, { method: 'PUT', headers: auth })).status, 201)
})

t.test('staleUploadRange: Range stays at the first part\'s end, as ECR has been seen to do', async (t) => {
  const { auth, start } = await setup(t, { minChunkBytes: 1, staleUploadRange: true })
  const location = await start()
  t.equal((await rawRequest(location, { method: 'PATCH', headers: auth, body: Buffer.alloc(10) })).headers.range, '0-9')
  t.equal((await rawRequest(location, { method: 'PATCH', headers: auth, body: Buffer.alloc(10) })).headers.range, '0-9')
  const done = await rawRequest(`${location}?digest=${sha256Digest(Buffer.alloc(20))}`, { method: 'PUT', headers: auth })
  t.equal(done.status, 201, 'all bytes were kept nonetheless')
})

t.test('a streamed 48 MiB upload in 16 MiB parts, pulled back with Range from S3', async (t) => {
  const { registry, auth, start } = await setup(t)
  const size = 48 * MIB
  const digest = await syntheticDigest(size)
  const location = await start()
  const parts = 3
  for (let i = 0; i < parts; i++) {
    // each part is the matching slice of the synthetic stream
    const chunks: Buffer[] = []
    let offset = 0
    for await (const chunk of syntheticBytes(size)) {
      const buf = chunk as Buffer
      if (offset >= i * 16 * MIB && offset < (i + 1) * 16 * MIB) chunks.push(buf)
      offset += buf.length
    }
    const res = await rawRequest(location, { method: 'PATCH', headers: auth, body: Buffer.concat(chunks) })
    t.equal(res.status, 201)
    t.equal(res.headers.range, `0-${(i + 1) * 16 * MIB - 1}`)
  }
  const done = await rawRequest(`${location}?digest=${digest}`, { method: 'PUT', headers: auth })
  t.equal(done.status, 201)
  t.same(registry.requests.filter((r) => r.method === 'PATCH').map((r) => r.bodyBytes), [16 * MIB, 16 * MIB, 16 * MIB])

  const redirect = await rawRequest(`${registry.url}/v2/${REPO}/blobs/${digest}`, { headers: auth })
  const tail = await rawRequest(redirect.headers.location as string, { headers: { range: `bytes=${size - 10}-` } })
  t.equal(tail.status, 206)
  t.equal(tail.headers['content-range'], `bytes ${size - 10}-${size - 1}/${size}`)
})

t.test('putSyntheticBlob: streamed to disk, same digest as syntheticDigest', async (t) => {
  const { registry, auth } = await setup(t)
  const digest = await registry.putSyntheticBlob(REPO, 3 * MIB + 5)
  t.equal(digest, await syntheticDigest(3 * MIB + 5))
  t.not(await registry.putSyntheticBlob(REPO, 3 * MIB + 5, 'other seed'), digest, 'the seed changes the bytes')
  const head = await rawRequest(`${registry.url}/v2/${REPO}/blobs/${digest}`, { method: 'HEAD', headers: auth })
  t.equal(head.headers['content-length'], String(3 * MIB + 5))
})

t.test('1 GiB through chunked upload and S3, constant memory (HELPERS_BIG=1)', { timeout: 600_000, skip: process.env.HELPERS_BIG !== '1' && 'set HELPERS_BIG=1 to run' }, async (t) => {
  const { registry, auth, start } = await setup(t)
  const size = 1024 * MIB
  const location = await start()
  const res = await rawRequest(location, { method: 'PATCH', headers: auth, body: syntheticBytes(size) })
  t.equal(res.status, 201)
  const digest = await syntheticDigest(size)
  t.equal((await rawRequest(`${location}?digest=${digest}`, { method: 'PUT', headers: auth })).status, 201)
  const seeded = await registry.putSyntheticBlob('seeded/big', size)
  t.equal(seeded, digest)
  t.ok(process.memoryUsage().rss < 600 * MIB, `rss ${Math.round(process.memoryUsage().rss / MIB)} MiB`)
})
