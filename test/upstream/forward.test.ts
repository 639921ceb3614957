import { createHash } from 'node:crypto'
import http from 'node:http'
import t from 'tap'
import { request } from 'undici'
import { startStack, type Stack } from '../helpers/stack.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

function sha256 (data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

async function call (stack: Stack, method: string, path: string, options: { headers?: Record<string, string>, body?: Buffer | string } = {}) {
  const res = await request(`${stack.url}${path}`, { method: method as 'GET', dispatcher: stack.client, headers: options.headers, body: options.body })
  const body = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body }
}

/** node:http sends headers as given (undici rewrites Connection and refuses Expect). */
async function rawCall (stack: Stack, method: string, path: string, headers: Record<string, string>, body?: Buffer) {
  return await new Promise<{ status: number, headers: http.IncomingHttpHeaders, body: Buffer }>((resolve, reject) => {
    const req = http.request(`${stack.url}${path}`, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    if (headers.expect === '100-continue') {
      req.on('continue', () => req.end(body))
    } else {
      req.end(body)
    }
  })
}

/** Pushes one blob the way docker does: POST, PATCH, PUT with ?digest=. */
async function pushBlob (stack: Stack, repo: string, data: Buffer): Promise<string> {
  const digest = sha256(data)
  const started = await call(stack, 'POST', `/v2/${repo}/blobs/uploads/`)
  t.equal(started.status, 202)
  const location = String(started.headers.location)
  const patched = await call(stack, 'PATCH', location, { body: data, headers: { 'content-type': 'application/octet-stream' } })
  t.equal(patched.status, 201, 'ECR answers PATCH with 201, passed on unchanged')
  const next = String(patched.headers.location)
  const done = await call(stack, 'PUT', `${next}${next.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`)
  t.equal(done.status, 201)
  t.equal(done.headers['docker-content-digest'], digest)
  return digest
}

t.test('pull: ping, manifest, blob redirect, with the proxy\'s token and never the client\'s', async (t) => {
  const stack = await startStack(t)
  const layer = Buffer.from('layer bytes '.repeat(1000))
  const layerDigest = stack.registry.putBlob('team/app', layer)
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}')
  const configDigest = stack.registry.putBlob('team/app', config)
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }]
  }))
  const manifestDigest = stack.registry.putManifest('team/app', '1.2', manifest, OCI_MANIFEST)

  const ping = await rawCall(stack, 'GET', '/v2/', { authorization: 'Basic Y2xpZW50OnNlY3JldA==', connection: 'keep-alive, x-hop', 'x-hop': 'drop me', 'keep-alive': 'timeout=5', 'proxy-authorization': 'Basic eDp5' })
  t.equal(ping.status, 200)
  t.equal(ping.headers['docker-distribution-api-version'], 'registry/2.0')
  t.equal(ping.body.toString(), '{}')

  const head = await call(stack, 'HEAD', '/v2/team/app/manifests/1.2', { headers: { accept: OCI_MANIFEST } })
  t.equal(head.status, 200)
  t.equal(head.headers['docker-content-digest'], manifestDigest)
  t.equal(head.headers['content-length'], String(manifest.length), 'HEAD keeps the upstream Content-Length')
  t.equal(head.body.length, 0)

  const get = await call(stack, 'GET', `/v2/team/app/manifests/${manifestDigest}`, { headers: { accept: OCI_MANIFEST } })
  t.equal(get.status, 200)
  t.equal(get.headers['content-type'], OCI_MANIFEST)
  t.equal(sha256(get.body), manifestDigest, 'manifest bytes unchanged')

  const blob = await call(stack, 'GET', `/v2/team/app/blobs/${layerDigest}`)
  t.equal(blob.status, 307, 'the S3 redirect reaches the client')
  const s3Location = String(blob.headers.location)
  t.ok(s3Location.startsWith(stack.registry.s3.url), 'Location to S3 is left absolute and unchanged')
  t.match(s3Location, /X-Amz-Signature=[a-f0-9]{64}/)
  const fromS3 = await request(s3Location)
  t.equal(fromS3.statusCode, 200)
  t.equal(sha256(Buffer.from(await fromS3.body.arrayBuffer())), layerDigest)

  const received = stack.upstreamRequests.filter((r) => r.url.startsWith('/v2/'))
  t.equal(received.length, 4)
  const expected = `Basic ${stack.authority.issued[0]?.authorizationToken ?? ''}`
  for (const r of received) {
    t.equal(r.headers.authorization, expected, `${r.method} ${r.url} carried the ECR token, not the client's`)
  }
  t.equal(received[0]?.headers['x-hop'], undefined, 'headers named in Connection are not forwarded')
  t.equal(received[0]?.headers['keep-alive'], undefined, 'hop-by-hop headers are not forwarded')
  t.equal(received[0]?.headers['proxy-authorization'], undefined)
  t.equal(received[0]?.headers.host, new URL(stack.registry.url).host, 'the Host header names the configured upstream')

  const spoofed = await rawCall(stack, 'GET', '/v2/', { host: 'attacker.example:443' })
  t.equal(spoofed.status, 200)
  t.equal(stack.upstreamRequests.at(-1)?.headers.host, new URL(stack.registry.url).host, 'a client\'s Host never selects the upstream')
  t.equal(received[1]?.headers.accept, OCI_MANIFEST, 'end-to-end headers are forwarded')
  t.equal(stack.registry.s3.requests.every((r) => r.headers.authorization === undefined), true)
})

t.test('push: upload Location becomes relative with the UUID last, manifests and tags round-trip', async (t) => {
  const stack = await startStack(t)
  const started = await call(stack, 'POST', '/v2/team/app/blobs/uploads/')
  t.equal(started.status, 202)
  const location = String(started.headers.location)
  t.match(location, /^\/v2\/team\/app\/blobs\/uploads\/[0-9a-f-]{36}$/, 'absolute ECR Location rewritten to a path, UUID last')
  const upstreamLocation = stack.upstreamRequests.length // the registry answered with its own origin
  t.ok(upstreamLocation > 0)

  const config = Buffer.from('{"architecture":"arm64","os":"linux"}')
  const layer = Buffer.alloc(300_000, 7)
  const configDigest = await pushBlob(stack, 'team/app', config)
  const layerDigest = await pushBlob(stack, 'team/app', layer)

  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length }]
  })
  const put = await call(stack, 'PUT', '/v2/team/app/manifests/v1', { body: manifest, headers: { 'content-type': OCI_MANIFEST } })
  t.equal(put.status, 201)
  t.equal(put.headers['docker-content-digest'], sha256(manifest))
  t.equal(put.headers.location, undefined, 'ECR sends no Location on manifest PUT; none is invented')

  const pulled = await call(stack, 'GET', '/v2/team/app/manifests/v1', { headers: { accept: OCI_MANIFEST } })
  t.equal(pulled.body.toString(), manifest)

  const patch = stack.upstreamRequests.find((r) => r.method === 'PATCH' && r.bodyBytes === layer.length)
  t.ok(patch, 'the layer reached the registry whole')
  t.equal(patch?.headers['content-type'], 'application/octet-stream')
})

t.test('monolithic upload and an upload with Expect: 100-continue', async (t) => {
  const stack = await startStack(t)
  const data = Buffer.from('monolithic layer')
  const digest = sha256(data)
  const res = await call(stack, 'POST', `/v2/mono/blobs/uploads/?digest=${encodeURIComponent(digest)}`, { body: data, headers: { 'content-type': 'application/octet-stream' } })
  t.equal(res.status, 201)
  t.equal(res.headers['docker-content-digest'], digest)
  t.equal(res.headers.location, `/v2/mono/blobs/${digest}`)

  const started = await call(stack, 'POST', '/v2/mono/blobs/uploads/')
  const expectBody = Buffer.alloc(64 * 1024, 1)
  const put = await rawCall(stack, 'PUT', `${String(started.headers.location)}?digest=${encodeURIComponent(sha256(expectBody))}`,
    { expect: '100-continue', 'content-type': 'application/octet-stream', 'content-length': String(expectBody.length) }, expectBody)
  t.equal(put.status, 201, 'curl -T style uploads are not refused')
  const received = stack.upstreamRequests.find((r) => r.method === 'PUT')
  t.equal(received?.headers.expect, undefined, 'Expect is answered by the proxy, not forwarded')
  t.equal(received?.bodyBytes, expectBody.length)
})

t.test('tags/list paging: Link rewritten to the proxy, opaque last= kept byte for byte', async (t) => {
  const stack = await startStack(t)
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: stack.registry.putBlob('paged', Buffer.from('{}')), size: 2 }, layers: [] }))
  const tags = Array.from({ length: 7 }, (_, i) => `v${i}`)
  for (const tag of tags) stack.registry.putManifest('paged', tag, manifest, OCI_MANIFEST)

  const seen: string[] = []
  let next: string | undefined = '/v2/paged/tags/list?n=3'
  for (let page = 0; next !== undefined && page < 10; page++) {
    const res = await call(stack, 'GET', next)
    t.equal(res.status, 200)
    seen.push(...(JSON.parse(res.body.toString()) as { tags: string[] }).tags)
    const link = res.headers.link as string | undefined
    if (link === undefined) {
      next = undefined
      break
    }
    const target = /^<([^>]+)>; rel="next"$/.exec(link)?.[1]
    t.ok(target?.startsWith('/v2/paged/tags/list?'), `Link is relative: ${link}`)
    const upstreamLink = stack.upstreamRequests.at(-1)
    t.ok(upstreamLink)
    next = target
  }
  t.same(seen, tags, 'every tag once, in order')
  const cursors = stack.upstreamRequests.filter((r) => r.url.includes('last=')).map((r) => r.url)
  t.equal(cursors.length, 2)
  t.match(cursors[0], /%2B|%2F|%3D/, 'the opaque cursor reached the registry still percent-encoded')
})

t.test('referrers and errors pass through with status and body', async (t) => {
  const stack = await startStack(t)
  const digest = sha256('nothing')
  const referrers = await call(stack, 'GET', `/v2/team/app/referrers/${digest}`)
  const upstreamStatus = referrers.status
  t.ok(upstreamStatus === 200 || upstreamStatus === 404)
  const missing = await call(stack, 'GET', `/v2/team/app/manifests/${digest}`)
  t.equal(missing.status, 404)
  t.same(JSON.parse(missing.body.toString()).errors[0].code, 'NAME_UNKNOWN')
  t.equal(missing.headers['docker-distribution-api-version'], 'registry/2.0')
})

t.test('only the registry API is forwarded', async (t) => {
  const stack = await startStack(t)
  const before = stack.upstreamRequests.length
  const cases: Array<[string, string, number, string]> = [
    ['GET', '/', 404, 'NOT_FOUND'],
    ['GET', '/v1/_ping', 404, 'NOT_FOUND'],
    ['GET', '/v2/Team/App/manifests/latest', 400, 'NAME_INVALID'],
    ['GET', '/v2/team/app/blobs/sha256:xyz', 400, 'DIGEST_INVALID'],
    ['GET', '/v2/team/app/manifests/-bad-tag', 400, 'MANIFEST_INVALID'],
    ['GET', '/v2/team/app/unknown/thing', 404, 'NOT_FOUND'],
    ['TRACE', '/v2/', 405, 'UNSUPPORTED']
  ]
  for (const [method, path, status, code] of cases) {
    const res = await call(stack, method, path)
    t.equal(res.status, status, `${method} ${path}`)
    t.equal(JSON.parse(res.body.toString()).errors[0].code, code, `${method} ${path}`)
  }
  t.equal(stack.upstreamRequests.length, before, 'nothing reached the registry')
})
