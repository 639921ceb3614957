import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import net from 'node:net'
import t, { type Test } from 'tap'
import { Agent, request } from 'undici'
import { closeServer, listen } from '../helpers/listen.js'
import { PROXY_TOKEN, startProxy } from '../helpers/proxy-for.js'
import { startStack } from '../helpers/stack.js'

const DIGEST = `sha256:${'c'.repeat(64)}`

function sha256 (bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

/** A hand-written upstream speaking raw bytes, so the framing is the test's to choose. */
async function rawUpstream (t: Test, onSocket: (socket: net.Socket) => void): Promise<string> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    onSocket(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
}

t.test('blob GETs: exact bytes and headers, the proxy\'s credential, one kept-alive connection', async (t) => {
  const blob = randomBytes(3 * 1024 * 1024 + 17)
  const received: IncomingHttpHeaders[] = []
  let connections = 0
  const upstream = createServer((req, res) => {
    received.push(req.headers)
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(blob.length),
      'docker-content-digest': sha256(blob),
      'docker-distribution-api-version': 'registry/2.0',
      'keep-alive': 'timeout=5',
      'x-upstream': 'kept'
    })
    res.end(blob)
  })
  upstream.on('connection', () => { connections++ })
  const upstreamUrl = await listen(upstream)
  t.teardown(() => closeServer(upstream))
  const { url, logs } = await startProxy(t, upstreamUrl)
  const client = new Agent({ connections: 1 })
  t.teardown(() => client.close())

  for (let i = 0; i < 10; i++) {
    const res = await request(`${url}/v2/team/app/blobs/${sha256(blob)}?attempt=${i}`, {
      dispatcher: client,
      headers: { authorization: 'Basic Y2xpZW50OnNlY3JldA==', 'x-client': 'passed', connection: 'keep-alive' }
    })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['content-length'], String(blob.length))
    t.equal(res.headers['docker-content-digest'], sha256(blob))
    t.equal(res.headers['x-upstream'], 'kept')
    t.equal(res.headers['keep-alive'] === 'timeout=5', false, 'the upstream\'s hop-by-hop fields stay behind')
    t.equal(sha256(Buffer.from(await res.body.arrayBuffer())), sha256(blob), 'every byte, in order')
  }
  t.equal(connections, 1, '10 blob downloads over one upstream connection')
  t.equal(received.length, 10)
  t.equal(received[0]?.authorization, `Basic ${PROXY_TOKEN}`, 'the proxy\'s token, not the client\'s credential')
  t.equal(received[0]?.['x-client'], 'passed')
  t.equal(received[0]?.host, new URL(upstreamUrl).host)

  const lines = logs.lines.filter((l) => l.msg === 'request')
  t.equal(lines.length, 10, 'one access-log line per download')
  t.match(lines[0], { method: 'GET', kind: 'blob', repository: 'team/app', status: 200 })
  t.ok((lines[0]?.bytesOut as number) > blob.length, 'bytes out count the body and its headers')
  t.notOk(logs.text().includes(PROXY_TOKEN), 'the token is never logged')
})

t.test('a chunked or close-delimited upstream body arrives whole', async (t) => {
  const blob = randomBytes(700_000)
  const upstreamUrl = await rawUpstream(t, (socket) => {
    socket.once('data', (data) => {
      const chunked = data.toString('latin1').includes('/chunked/')
      if (chunked) {
        socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/octet-stream\r\n\r\n')
        for (let at = 0; at < blob.length; at += 65_000) {
          const piece = blob.subarray(at, at + 65_000)
          socket.write(`${piece.length.toString(16)};ext=1\r\n`)
          socket.write(piece)
          socket.write('\r\n')
        }
        socket.end('0\r\nx-trailer: yes\r\n\r\n')
      } else {
        socket.write('HTTP/1.0 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n')
        socket.end(blob)
      }
    })
  })
  const { url } = await startProxy(t, upstreamUrl)
  for (const name of ['chunked', 'close']) {
    const res = await request(`${url}/v2/${name}/app/blobs/${DIGEST}`)
    t.equal(res.statusCode, 200, name)
    t.equal(sha256(Buffer.from(await res.body.arrayBuffer())), sha256(blob), `${name}: every byte`)
  }
})

t.test('an upstream that fails mid-body leaves the client a cut transfer, and says so', async (t) => {
  const upstreamUrl = await rawUpstream(t, (socket) => {
    socket.once('data', () => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${4 * 1024 * 1024}\r\n\r\n`)
      socket.write(randomBytes(256 * 1024), () => socket.destroy())
    })
  })
  const { url, logs, metrics } = await startProxy(t, upstreamUrl)
  const res = await request(`${url}/v2/team/app/blobs/${DIGEST}`)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-length'], String(4 * 1024 * 1024))
  await t.rejects(res.body.arrayBuffer(), 'the client never sees a complete body')
  const warned = logs.lines.find((l) => l.msg === 'the registry failed in the middle of a blob')
  t.equal(warned?.code, 'ECONNRESET')
  t.match(await metrics(), new RegExp(`ecr_proxy_upstream_errors_total\\{kind="reset",registry="${new URL(upstreamUrl).host}"\\} 1`))
})

t.test('an invalid upstream answer or a silent upstream becomes a registry error', async (t) => {
  const upstreamUrl = await rawUpstream(t, (socket) => {
    socket.once('data', (data) => {
      if (data.toString('latin1').includes('/silent/')) return
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello')
    })
  })
  const { url } = await startProxy(t, upstreamUrl, ['--upstream-headers-timeout-seconds', '0.2'])

  const invalid = await request(`${url}/v2/team/app/blobs/${DIGEST}`)
  t.equal(invalid.statusCode, 502)
  t.equal(invalid.headers['content-type'], 'application/json; charset=utf-8')
  const body = await invalid.body.json() as { errors: Array<{ code: string, message: string }> }
  t.equal(body.errors[0]?.code, 'UNAVAILABLE')
  t.match(body.errors[0]?.message, /invalid response: conflicting Content-Length/)

  const silent = await request(`${url}/v2/silent/app/blobs/${DIGEST}`)
  t.equal(silent.statusCode, 504)
  t.match(await silent.body.json(), { errors: [{ code: 'UNAVAILABLE', message: /did not answer in time/ }] })
})

t.test('a range request gets the registry\'s 206 with its Content-Range', async (t) => {
  const blob = randomBytes(10_000)
  const upstream = createServer((req, res) => {
    const [, from, to] = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '') ?? []
    const start = Number(from)
    const end = Number(to)
    res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${blob.length}`, 'content-length': String(end - start + 1) })
    res.end(blob.subarray(start, end + 1))
  })
  const upstreamUrl = await listen(upstream)
  t.teardown(() => closeServer(upstream))
  const { url } = await startProxy(t, upstreamUrl)
  const res = await request(`${url}/v2/team/app/blobs/${DIGEST}`, { headers: { range: 'bytes=100-4099' } })
  t.equal(res.statusCode, 206)
  t.equal(res.headers['content-range'], `bytes 100-4099/${blob.length}`)
  t.same(Buffer.from(await res.body.arrayBuffer()), blob.subarray(100, 4100))
})

t.test('an expired token on a blob GET: one 403, a new token, the redirect reaches the client', async (t) => {
  const stack = await startStack(t)
  const digest = stack.registry.putBlob('team/app', Buffer.from('layer bytes'))
  const revoked = stack.authority.issued[0]?.authorizationToken as string
  stack.authority.revoke(revoked)
  const before = stack.upstreamRequests.length
  const res = await request(`${stack.url}/v2/team/app/blobs/${digest}`, { dispatcher: stack.client })
  t.equal(res.statusCode, 307, 'ECR\'s redirect is passed on')
  const location = res.headers.location as string
  t.ok(location.startsWith(stack.registry.s3.url), 'to the storage host, unchanged')
  await res.body.dump()
  const sent = stack.upstreamRequests.slice(before)
  t.same(sent.map((r) => r.method), ['GET', 'GET'], 'one rejected attempt, one replay')
  t.equal(sent[0]?.headers.authorization, `Basic ${revoked}`)
  t.equal(sent[1]?.headers.authorization, `Basic ${stack.authority.issued[1]?.authorizationToken ?? ''}`)
  const s3 = await request(location)
  t.equal(Buffer.from(await s3.body.arrayBuffer()).toString(), 'layer bytes')
})

t.test('follow mode fetches the blob through the same path', async (t) => {
  const stack = await startStack(t, { argv: ['--redirects', 'follow', '--redirect-allowed-hosts', '127.0.0.1:*'] })
  const blob = randomBytes(2 * 1024 * 1024)
  const digest = stack.registry.putBlob('team/app', blob)
  const res = await request(`${stack.url}/v2/team/app/blobs/${digest}`, { dispatcher: stack.client })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-length'], String(blob.length))
  t.equal(sha256(Buffer.from(await res.body.arrayBuffer())), digest)
})

t.test('follow mode: storage failing mid-body cuts the client\'s transfer and says so', async (t) => {
  const storageUrl = await rawUpstream(t, (socket) => {
    socket.once('data', (data) => {
      t.notOk(/authorization/i.test(data.toString('latin1')), 'storage never sees a credential')
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${2 * 1024 * 1024}\r\n\r\n`)
      socket.write(randomBytes(128 * 1024), () => socket.destroy())
    })
  })
  const registry = createServer((_req, res) => {
    res.writeHead(307, { location: `${storageUrl}/layer?X-Amz-Signature=secret` }).end()
  })
  const registryUrl = await listen(registry)
  t.teardown(() => closeServer(registry))
  const { url, logs } = await startProxy(t, registryUrl, ['--redirects', 'follow', '--redirect-allowed-hosts', '127.0.0.1:*'])
  const res = await request(`${url}/v2/team/app/blobs/${DIGEST}`)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-length'], String(2 * 1024 * 1024))
  await t.rejects(res.body.arrayBuffer(), 'the client never sees a complete body')
  const warned = logs.lines.find((l) => l.msg === 'blob storage failed in the middle of a blob')
  t.equal(warned?.code, 'ECONNRESET')
  t.equal(warned?.redirectPath, '/layer')
  t.notOk(logs.text().includes('secret'), 'the presigned signature is never logged')
})
