import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { SMALL_BODY_LIMIT } from '../../src/http/respond.js'
import { buildConfiguredProxy } from '../helpers/configured-proxy.js'
import { startEcrApi } from '../helpers/ecr-api.js'
import { startProxy } from '../helpers/proxy-for.js'
import { TokenAuthority } from '../helpers/token-authority.js'

const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'

// Answers with a known length up to SMALL_BODY_LIMIT are read whole and written with their head
// in one call (respond.ts); these tests hold that path to what the piped one did: the registry's
// status, headers and bytes unchanged, nothing added, and a clean error when the registry fails
// before the last byte.

type Answer = (req: http.IncomingMessage, res: http.ServerResponse) => void

async function upstream (t: Test, answer: Answer): Promise<string> {
  const server = http.createServer(answer)
  const sockets = new Set<Socket>()
  server.on('connection', (socket) => { sockets.add(socket); socket.once('close', () => sockets.delete(socket)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

async function get (url: string, path: string, method = 'GET') {
  const res = await request(`${url}${path}`, { method: method as 'GET' })
  const body = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body }
}

const SERVED_BY_REGISTRY = ['content-type', 'docker-content-digest', 'etag', 'x-registry-extra']

t.test('the registry\'s status, headers and bytes, and nothing added: with and without a Content-Type', async (t) => {
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [] }))
  const url = await upstream(t, (req, res) => {
    const typed = req.url?.endsWith('/typed') === true
    res.writeHead(200, {
      'content-length': String(manifest.length),
      ...(typed ? { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } : {}),
      'docker-content-digest': 'sha256:' + 'a'.repeat(64),
      etag: '"sha256:' + 'a'.repeat(64) + '"',
      'x-registry-extra': 'kept'
    })
    res.end(manifest)
  })
  const proxy = await startProxy(t, url)
  for (const tag of ['typed', 'untyped']) {
    const answer = await get(proxy.url, `/v2/team/app/manifests/${tag}`)
    t.equal(answer.status, 200)
    t.same(answer.body, manifest, `${tag}: the bytes`)
    t.equal(answer.headers['content-length'], String(manifest.length))
    t.equal(answer.headers['content-type'], tag === 'typed' ? 'application/vnd.oci.image.manifest.v1+json' : undefined, `${tag}: no Content-Type invented`)
    for (const name of SERVED_BY_REGISTRY.slice(1)) t.ok(answer.headers[name] !== undefined, `${tag}: ${name} passed on`)
    t.equal(answer.headers['transfer-encoding'], undefined, 'framed by length, as the registry framed it')
  }
})

t.test('bodies at the limit are sent whole, one byte over it they stream: both arrive intact', async (t) => {
  const sizes = [0, 1, SMALL_BODY_LIMIT - 1, SMALL_BODY_LIMIT, SMALL_BODY_LIMIT + 1, 4 * SMALL_BODY_LIMIT]
  const url = await upstream(t, (req, res) => {
    const size = Number(req.url?.split('/').pop()?.replace('v', ''))
    const body = Buffer.alloc(size, size % 251)
    res.writeHead(200, { 'content-length': String(size), 'content-type': 'application/json' })
    res.end(body)
  })
  const proxy = await startProxy(t, url)
  for (const size of sizes) {
    const answer = await get(proxy.url, `/v2/team/app/manifests/v${size}`)
    t.equal(answer.status, 200)
    t.equal(answer.body.length, size, `${size} bytes`)
    t.ok(answer.body.every((byte) => byte === size % 251), `${size}: the bytes`)
    t.equal(answer.headers['content-length'], String(size))
  }
})

t.test('a registry that fails before the last byte of a small answer: a 502 in the registry\'s format, counted and logged', async (t) => {
  const url = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-length': '1000', 'content-type': 'application/json' })
    res.write(Buffer.alloc(400, 0x7b))
    setImmediate(() => res.socket?.destroy())
  })
  const proxy = await startProxy(t, url)
  const answer = await get(proxy.url, '/v2/team/app/manifests/cut')
  t.equal(answer.status, 502, 'never a cut body that looks like a manifest')
  t.equal(answer.headers['content-type'], 'application/json; charset=utf-8')
  const body = JSON.parse(answer.body.toString()) as { errors: Array<{ code: string, message: string }> }
  t.equal(body.errors[0]?.code, 'UNAVAILABLE')
  t.match(body.errors[0]?.message, /could not be reached/)
  t.match(await proxy.metrics(), /ecr_proxy_upstream_errors_total\{kind="reset",registry="[^"]+"\} 1/)
  const line = proxy.logs.lines.find((l) => l.msg === 'request' && l.path === '/v2/team/app/manifests/cut')
  t.equal(line?.status, 502, 'the access line has the status the client got')
})

t.test('204 and 304 pass with no body; HEAD keeps the registry\'s length', async (t) => {
  const url = await upstream(t, (req, res) => {
    const status = Number(req.url?.split('/').pop())
    res.writeHead(Number.isNaN(status) ? 200 : status, { ...(Number.isNaN(status) ? { 'content-length': '512' } : {}), etag: '"x"' })
    res.end()
  })
  const proxy = await startProxy(t, url)
  for (const status of [204, 304]) {
    const answer = await get(proxy.url, `/v2/team/app/manifests/${status}`)
    t.equal(answer.status, status)
    t.equal(answer.body.length, 0)
    t.equal(answer.headers.etag, '"x"')
  }
  const head = await get(proxy.url, '/v2/team/app/manifests/latest', 'HEAD')
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], '512')
  t.equal(head.body.length, 0)
})

t.test('the access line is unchanged by its logger having no redaction: reqId first, flat fields only', async (t) => {
  const url = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-length': '2', 'content-type': 'application/json' })
    res.end('{}')
  })
  const proxy = await startProxy(t, url)
  await get(proxy.url, '/v2/team/app/tags/list?n=1')
  const raw = proxy.logs.text().split('\n').find((l) => l.includes('"msg":"request"'))
  t.ok(raw !== undefined)
  t.match(raw, /^\{"level":30,"time":\d+,"pid":\d+,"hostname":"[^"]+","reqId":"req-[0-9a-z]+","method":"GET","path":"\/v2\/team\/app\/tags\/list","kind":"tags"/)
  const line = JSON.parse(raw as string) as Record<string, unknown>
  for (const [key, value] of Object.entries(line)) t.not(typeof value, 'object', `${key} is flat`)
})

t.test('a tags/list too large to rename in memory (over 4 MiB) still arrives whole, as the registry sent it', async (t) => {
  const tags = Array.from({ length: 60_000 }, (_, i) => `tag-${String(i).padStart(6, '0')}-${'x'.repeat(80)}`)
  const listing = Buffer.from(JSON.stringify({ name: 'team/app', tags }))
  t.ok(listing.length > 4 * 1024 * 1024, 'larger than the renaming limit')
  const url = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(listing.length) })
    res.end(listing)
  })
  const authority = new TokenAuthority()
  const api = await startEcrApi({ authority, proxyEndpoint: `https://${PROD}` })
  t.teardown(() => api.close())
  const { built } = await buildConfiguredProxy(t, api.url, ['registries:', `  - { registry: ${PROD}, upstream: "${url}", alias: prod, default: true }`])
  t.teardown(() => built.app.close())
  const proxy = await built.app.listen({ host: '127.0.0.1', port: 0 })
  const renamed = await get(proxy, '/v2/prod/team/app/tags/list')
  t.equal(renamed.status, 200)
  t.equal(renamed.body.length, listing.length, 'every byte: the rest after the first 4 MiB too')
  t.ok(renamed.body.equals(listing), 'passed as it is (its name is not renamed)')
})
