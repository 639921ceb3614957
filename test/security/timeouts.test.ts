import { createServer as createHttpServer, type IncomingMessage } from 'node:http'
import { connect, createServer as createTcpServer, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { buildApp } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config/index.js'
import { closeServer, listen } from '../helpers/listen.js'
import { logSink } from '../helpers/log-sink.js'
import { startStack } from '../helpers/stack.js'
import { eventually, rawExchange } from './support.js'

const fetchToken = async () => ({ token: 'QVdTOnNlY3JldA==', expiresAt: new Date(Date.now() + 3_600_000) })

async function proxy (t: Test, upstream: string, argv: string[] = []): Promise<string> {
  const config = loadConfig(parseCommandLine(['--upstream', upstream, ...argv]), {})
  const built = await buildApp(config, { fetchToken, logger: logSink('warn').logger })
  t.teardown(() => built.app.close())
  return await built.app.listen({ host: '127.0.0.1', port: 0 })
}

/** Resolves when the server closes the connection; with the bytes it wrote. */
async function closedBy (socket: Socket): Promise<string> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  return await new Promise((resolve) => {
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
    socket.on('error', () => {})
  })
}

async function opened (origin: string): Promise<Socket> {
  const url = new URL(origin)
  const socket = connect(Number(url.port), url.hostname)
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  return socket
}

function errorOf (body: string): { code: string, message: string } {
  return (JSON.parse(body) as { errors: Array<{ code: string, message: string }> }).errors[0] as { code: string, message: string }
}

t.test('slow clients are cut off: headers that never finish, drip-fed headers, a stalled body, a silent connection', async (t) => {
  const stack = await startStack(t, { argv: ['--header-timeout-seconds', '0.3', '--idle-timeout-seconds', '0.6'] })

  let started = Date.now()
  const partial = await rawExchange(stack.url, 'GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n', { timeoutMs: 5000 })
  const partialMs = Date.now() - started
  t.equal(partial.status, 408, 'partial headers: 408')
  t.equal(errorOf(partial.body.toString()).code, 'UNSUPPORTED')
  t.equal(partial.headers['docker-distribution-api-version'], 'registry/2.0')
  t.ok(partialMs >= 250 && partialMs < 2500, `cut off after ${partialMs} ms (header timeout 300 ms)`)

  // One byte every 50 ms keeps the socket busy but never completes the headers.
  const drip = await opened(stack.url)
  const dripClosed = closedBy(drip)
  started = Date.now()
  const line = 'GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: ' + 'a'.repeat(200)
  let at = 0
  const timer = setInterval(() => { if (!drip.destroyed && at < line.length) drip.write(line[at++] as string) }, 50)
  const dripAnswer = await dripClosed
  clearInterval(timer)
  const dripMs = Date.now() - started
  t.match(dripAnswer, /^HTTP\/1\.1 408 /, 'drip-fed headers: 408')
  t.ok(dripMs < 2500, `drip-feeding client cut off after ${dripMs} ms`)

  // A body that stops arriving: the idle timeout closes the connection, and the upload upstream.
  let upstreamState = 'open'
  let upstreamBytes = 0
  const upstream = createHttpServer((req) => {
    req.on('data', (chunk: Buffer) => { upstreamBytes += chunk.length })
    req.on('aborted', () => { upstreamState = 'aborted' })
  })
  const upstreamUrl = await listen(upstream)
  t.teardown(() => closeServer(upstream))
  const uploads = await proxy(t, upstreamUrl, ['--idle-timeout-seconds', '0.6'])
  const stalled = await opened(uploads)
  const stalledClosed = closedBy(stalled)
  started = Date.now()
  stalled.write('PATCH /v2/team/app/blobs/uploads/0f9e7a2c-1b2d-4c5e-8f90-123456789abc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n')
  stalled.write(Buffer.alloc(1000, 7))
  await stalledClosed
  const stalledMs = Date.now() - started
  t.ok(stalledMs >= 500 && stalledMs < 3000, `stalled upload closed after ${stalledMs} ms (idle timeout 600 ms)`)
  t.ok(await eventually(() => upstreamState === 'aborted'), 'the upstream request was aborted, not left waiting')
  t.equal(upstreamBytes, 1000)
  t.ok(await eventually(async () => await new Promise<number>((resolve) => upstream.getConnections((_e, n) => resolve(n))) === 0), 'no upstream connection left')

  const silent = await opened(stack.url)
  started = Date.now()
  await closedBy(silent)
  const silentMs = Date.now() - started
  t.ok(silentMs < 3000, `a connection that sends nothing is closed after ${silentMs} ms`)

  const ping = await request(`${stack.url}/v2/`, { dispatcher: stack.client })
  t.equal(ping.statusCode, 200, 'normal clients are unaffected')
  await ping.body.dump()
})

t.test('--max-connections caps concurrent client connections', async (t) => {
  const stack = await startStack(t, { argv: ['--max-connections', '2'] })
  const [a, b] = [await opened(stack.url), await opened(stack.url)]
  const c = await opened(stack.url)
  const answer = await closedBy(c)
  t.equal(answer, '', 'the third connection is dropped without an answer')
  a.destroy()
  t.ok(await eventually(async () => (await rawExchange(stack.url, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')).status === 200), 'a slot freed is usable again')
  b.destroy()
})

t.test('upstream timeouts and failures become registry-format 502/504', async (t) => {
  // TCP accepted, TLS handshake never answered: the connect timeout (TLS included) fires.
  const held: Socket[] = []
  const silentTls = createTcpServer((socket) => { held.push(socket) })
  await new Promise<void>((resolve) => silentTls.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of held) s.destroy()
    await new Promise((resolve) => silentTls.close(resolve))
  })
  const silentPort = (silentTls.address() as { port: number }).port
  const connectTimeout = await proxy(t, `https://127.0.0.1:${silentPort}`, ['--upstream-connect-timeout-seconds', '0.3'])
  let started = Date.now()
  const connectRes = await rawExchange(connectTimeout, 'GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n')
  t.equal(connectRes.status, 504, 'connect timeout: 504')
  t.same(errorOf(connectRes.body.toString()), { code: 'UNAVAILABLE', message: `https://127.0.0.1:${silentPort} did not answer in time` })
  t.ok(Date.now() - started < 2500, `after ${Date.now() - started} ms`)

  // Connected, request sent, no response headers.
  const requests: IncomingMessage[] = []
  const mute = createHttpServer((req) => { requests.push(req) })
  const muteUrl = await listen(mute)
  t.teardown(() => closeServer(mute))
  const headersTimeout = await proxy(t, muteUrl, ['--upstream-headers-timeout-seconds', '0.3'])
  started = Date.now()
  const headersRes = await rawExchange(headersTimeout, 'GET /v2/team/app/tags/list HTTP/1.1\r\nHost: x\r\n\r\n')
  t.equal(headersRes.status, 504, 'headers timeout: 504')
  t.same(errorOf(headersRes.body.toString()), { code: 'UNAVAILABLE', message: `${muteUrl} did not answer in time` })
  t.equal(headersRes.headers['docker-distribution-api-version'], 'registry/2.0')
  t.ok(Date.now() - started < 2500, `after ${Date.now() - started} ms`)
  t.equal(requests.length, 1, 'not retried')

  // Nobody listening.
  const closed = createTcpServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const closedPort = (closed.address() as { port: number }).port
  await new Promise((resolve) => closed.close(resolve))
  const refused = await proxy(t, `http://127.0.0.1:${closedPort}`)
  const refusedRes = await rawExchange(refused, 'GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n')
  t.equal(refusedRes.status, 502, 'connection refused: 502')
  t.match(errorOf(refusedRes.body.toString()), { code: 'UNAVAILABLE', message: /could not be reached: .*ECONNREFUSED/ })

  // A body that stops mid-way: the body timeout ends the response instead of hanging forever.
  const stalling = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 100_000 })
    res.write(Buffer.alloc(1000))
  })
  const stallingUrl = await listen(stalling)
  t.teardown(() => closeServer(stalling))
  const bodyTimeout = await proxy(t, stallingUrl, ['--upstream-body-timeout-seconds', '0.3'])
  const socket = await opened(bodyTimeout)
  started = Date.now()
  const ended = closedBy(socket)
  socket.write(`GET /v2/team/app/blobs/sha256:${'a'.repeat(64)} HTTP/1.1\r\nHost: x\r\n\r\n`)
  const partialBody = await ended
  t.match(partialBody, /^HTTP\/1\.1 200 /)
  t.ok(Date.now() - started < 2500, `a stalled upstream body is cut after ${Date.now() - started} ms; the client sees a short body`)
})
