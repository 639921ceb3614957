import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import { Writable } from 'node:stream'
import tls from 'node:tls'
import t, { type Test } from 'tap'
import { selfSigned } from '../helpers/self-signed.js'
import { BlobClient, ChunkedDecoder, parseResponseHead, UpstreamFailure, type BlobClientOptions } from '../../src/upstream/transport/blob-client.js'

const KiB = 1024
const MiB = 1024 * 1024

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function sha256 (bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** Rejects when `promise` has not settled within `ms`: no wait in this file is unbounded. */
async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** The error `promise` rejects with; fails the test when it resolves instead. */
async function rejection (promise: Promise<unknown>, ms = 10_000): Promise<Error & { code?: string }> {
  try {
    await within(promise, ms, 'the expected rejection')
  } catch (err) {
    return err as Error & { code?: string }
  }
  throw new Error('resolved, but a rejection was expected')
}

/** Waits (bounded) until `condition` holds, checking after every turn of the event loop. */
async function until (condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const started = Date.now()
  while (!condition()) {
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
}

/** A seeded PRNG (mulberry32), so a failing run can be repeated. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let r = Math.imul(a ^ (a >>> 15), 1 | a)
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296
  }
}

const BASE: BlobClientOptions = { connectTimeoutMs: 5000, headersTimeoutMs: 5000, bodyTimeoutMs: 5000 }

function blobClient (t: Test, options: Partial<BlobClientOptions> = {}): BlobClient {
  const client = new BlobClient({ ...BASE, ...options })
  t.teardown(() => client.destroy())
  return client
}

interface RawRequest {
  /** The request line, e.g. `GET /x HTTP/1.1`. */
  line: string
  /** Header lines as sent, in order, name and value split at the first colon. */
  headers: Array<[string, string]>
  /** 1-based number of the connection the request came on. */
  connection: number
  /** 0-based number of the request on its connection. */
  index: number
}

type Handler = (socket: net.Socket, request: RawRequest) => void | Promise<void>

interface Upstream {
  origin: string
  port: number
  requests: RawRequest[]
  /** Accepted connections, in order. */
  sockets: net.Socket[]
  /** Request bytes received over all connections. */
  received: () => number
}

/**
 * A hand-written HTTP/1.1 upstream: it parses request heads (GETs, no bodies) and lets `handler`
 * write the exact response bytes, one request at a time per connection.
 */
async function upstream (t: Test, handler: Handler, secure?: { key: Buffer, cert: Buffer }): Promise<Upstream> {
  const requests: RawRequest[] = []
  const sockets: net.Socket[] = []
  let received = 0
  const onSocket = (socket: net.Socket): void => {
    const connection = sockets.push(socket)
    socket.on('error', () => {})
    let pending = Buffer.alloc(0)
    let index = 0
    let queue = Promise.resolve()
    socket.on('data', (data: Buffer) => {
      received += data.length
      pending = Buffer.concat([pending, data])
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const lines = pending.toString('latin1', 0, end).split('\r\n')
        pending = pending.subarray(end + 4)
        const request: RawRequest = {
          line: lines[0] ?? '',
          headers: lines.slice(1).map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim()]),
          connection,
          index: index++
        }
        requests.push(request)
        queue = queue.then(async () => { await handler(socket, request) }).catch(() => { socket.destroy() })
      }
    })
  }
  const server = secure === undefined ? net.createServer(onSocket) : tls.createServer({ ...secure }, onSocket)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const port = (server.address() as net.AddressInfo).port
  return {
    origin: `${secure === undefined ? 'http' : 'https'}://127.0.0.1:${port}`,
    port,
    requests,
    sockets,
    received: () => received
  }
}

/** Writes and waits until the socket has taken the bytes. */
async function send (socket: net.Socket, data: string | Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    socket.write(data, (err) => { if (err == null) resolve(); else reject(err) })
  })
}

/** Writes `data` one byte per TCP write, each awaited (with Nagle off, mostly one segment each). */
async function sendBytewise (socket: net.Socket, data: string | Buffer): Promise<void> {
  socket.setNoDelay(true)
  const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data
  for (let i = 0; i < bytes.length; i++) await send(socket, bytes.subarray(i, i + 1))
}

function responseHead (status: string, fields: Array<[string, string]> = []): string {
  return `${status}\r\n${fields.map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n`
}

function ok (body: Buffer | string, fields: Array<[string, string]> = []): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body
  return Buffer.concat([Buffer.from(responseHead('HTTP/1.1 200 OK', [['Content-Length', String(bytes.length)], ...fields])), bytes])
}

async function closed (socket: net.Socket, what: string): Promise<void> {
  if (socket.closed) return
  // Not events.once: it would reject on the 'error' (ECONNRESET) a reset connection emits first.
  await within(new Promise<void>((resolve) => socket.once('close', () => resolve())), 5000, what)
}

type Delay = (index: number) => 'now' | 'immediate' | number

/**
 * A destination that checks the bytes when it is done with them: the digest is updated in the
 * write's callback, so a read buffer reused before the callback shows as a wrong digest.
 */
class Collector extends Writable {
  private readonly hash = createHash('sha256')
  private readonly kept: Buffer[] = []
  bytes = 0
  writes = 0

  constructor (private readonly options: { delay?: Delay, keep?: boolean, highWaterMark?: number } = {}) {
    super(options.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark })
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const index = this.writes++
    this.emit('chunk', chunk.length)
    const done = (): void => {
      this.hash.update(chunk)
      this.bytes += chunk.length
      if (this.options.keep === true) this.kept.push(Buffer.from(chunk))
      callback()
    }
    const delay = this.options.delay?.(index) ?? 'now'
    if (delay === 'now') done()
    else if (delay === 'immediate') setImmediate(done)
    else setTimeout(done, delay)
  }

  digest (): string {
    return this.hash.copy().digest('hex')
  }

  get body (): Buffer {
    return Buffer.concat(this.kept)
  }

  async finished (): Promise<void> {
    if (this.writableFinished) return
    await within(once(this, 'finish'), 10_000, 'the destination finishing')
  }
}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

t.test('Content-Length body: byte-exact, the exact request on the wire, the connection kept', async (t) => {
  const body = randomBytes(3 * MiB)
  const server = await upstream(t, async (socket, request) => {
    const content = request.index === 0 ? body : Buffer.from('second')
    await send(socket, responseHead('HTTP/1.1 200 OK', [
      ['Content-Type', 'application/octet-stream'],
      ['Content-Length', String(content.length)],
      ['Docker-Content-Digest', `sha256:${sha256(content)}`]
    ]))
    await send(socket, content)
  })
  const client = blobClient(t)
  const res = await client.get(server.origin, '/v2/team/app/blobs/sha256:abc?ns=x&y=1', {
    authorization: 'Basic QVdTOnB3',
    accept: ['application/a', 'application/b'],
    'x-trace': 'one'
  })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-length'], String(body.length))
  t.equal(res.headers['content-type'], 'application/octet-stream')
  t.equal(res.headers['docker-content-digest'], `sha256:${sha256(body)}`)
  const sink = new Collector()
  await res.pipeTo(sink)
  await sink.finished()
  t.equal(sink.bytes, body.length, 'every byte')
  t.equal(sink.digest(), sha256(body), 'the exact bytes')

  t.equal(server.requests.length, 1)
  t.equal(server.requests[0]?.line, 'GET /v2/team/app/blobs/sha256:abc?ns=x&y=1 HTTP/1.1')
  t.same(server.requests[0]?.headers, [
    ['host', `127.0.0.1:${server.port}`],
    ['authorization', 'Basic QVdTOnB3'],
    ['accept', 'application/a'],
    ['accept', 'application/b'],
    ['x-trace', 'one']
  ], 'host first, then exactly the headers given, arrays as repeated lines')

  const again = await client.get(server.origin, '/second', {})
  const second = new Collector({ keep: true })
  await again.pipeTo(second)
  t.equal(second.body.toString(), 'second')
  t.same(server.requests[1]?.headers, [['host', `127.0.0.1:${server.port}`]])
  t.equal(server.sockets.length, 1, 'the second request came on the first connection')
  t.same(server.requests.map((r) => r.connection), [1, 1])
  t.equal(client.openConnections, 1)
})

t.test('chunked body with extensions and a trailer, framing sent byte by byte', async (t) => {
  const rand = prng(2)
  const sizes = [1, 15, 4096, 70_000, MiB + 3, 2]
  const chunks = sizes.map((size) => randomBytes(size))
  const body = Buffer.concat(chunks)
  const server = await upstream(t, async (socket, request) => {
    if (request.index > 0) {
      await send(socket, ok('after'))
      return
    }
    await sendBytewise(socket, responseHead('HTTP/1.1 200 OK', [['Transfer-Encoding', 'chunked'], ['Trailer', 'X-Checksum']]))
    for (const [i, chunk] of chunks.entries()) {
      const hex = chunk.length.toString(16)
      const sizeLine = `${i % 2 === 0 ? hex : hex.toUpperCase()}${i === 1 ? ' ;name="quoted;value" ;flag' : `;n=${i}`}\r\n`
      await sendBytewise(socket, sizeLine)
      // The data in a few uneven writes.
      let at = 0
      while (at < chunk.length) {
        const step = Math.max(1, Math.floor(rand() * chunk.length / 2))
        await send(socket, chunk.subarray(at, at + step))
        at += step
      }
      await sendBytewise(socket, '\r\n')
    }
    await sendBytewise(socket, '0;last=yes\r\nX-Checksum: abc\r\nX-Other: a: b\r\n\r\n')
  })
  const client = blobClient(t, { readBufferBytes: 16 * KiB })
  const res = await client.get(server.origin, '/chunked', {})
  t.equal(res.statusCode, 200)
  t.equal(res.headers['transfer-encoding'], 'chunked')
  const sink = new Collector()
  await within(res.pipeTo(sink), 30_000, 'the chunked body')
  t.equal(sink.bytes, body.length)
  t.equal(sink.digest(), sha256(body), 'the exact bytes, framing removed')

  const next = await client.get(server.origin, '/after', {})
  const after = new Collector({ keep: true })
  await next.pipeTo(after)
  t.equal(after.body.toString(), 'after', 'the trailer was consumed: the next response parses')
  t.equal(server.sockets.length, 1, 'the connection was reused after the chunked body')
  t.equal(client.openConnections, 1)
})

/** Feeds `input` to a decoder in slices of `step` bytes; the body and where it ended. */
function decodeChunked (input: Buffer | string, step?: number): { body: Buffer, ended: number | undefined } {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'latin1') : input
  const decoder = new ChunkedDecoder()
  const out: Buffer[] = []
  let ended: number | undefined
  for (let at = 0; at < bytes.length && ended === undefined; at += step ?? bytes.length) {
    const end = Math.min(bytes.length, at + (step ?? bytes.length))
    const used = decoder.feed(bytes, at, end, (from, to) => { out.push(Buffer.from(bytes.subarray(from, to))) })
    if (decoder.done) ended = used
    else if (used !== end) throw new Error(`feed stopped at ${used} of ${end} without being done`)
  }
  return { body: Buffer.concat(out), ended }
}

t.test('ChunkedDecoder: decodes strictly, whatever the slicing', async (t) => {
  const good = '5;a=b\r\nhello\r\nA \t;x\r\n0123456789\r\n1\r\n!\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\nEXTRA'
  for (const step of [undefined, 1, 2, 7]) {
    const { body, ended } = decodeChunked(good, step)
    t.equal(body.toString(), 'hello0123456789!', `body, step ${step ?? 'all'}`)
    t.equal(ended, good.indexOf('EXTRA'), `ends before the bytes after it, step ${step ?? 'all'}`)
  }
  t.equal(decodeChunked('0\r\n\r\n').body.length, 0, 'an empty body')
  t.equal(decodeChunked('0\r\n\r\n').ended, 5)
  t.equal(decodeChunked(`fffffffffffff\r\n${'x'.repeat(10)}`).ended, undefined, '13 hex digits are a size')
  t.equal(decodeChunked(`${'0'.repeat(20)}3\r\nabc\r\n0\r\n\r\n`).body.toString(), 'abc', 'leading zeros are not significant digits')
  const extensions = '1 ;a\r\nA\r\n1; a = b\r\nB\r\n1;a="q;\\"\t\xe9";b=t0k~n\r\nC\r\n0;last\r\n\r\n'
  t.equal(decodeChunked(extensions, 1).body.toString(), 'ABC', 'extensions with BWS, quoted strings, quoted pairs, obs-text')
  const trailer = `0\r\nX-Big: ${'a'.repeat(8 * KiB)}\r\n\r\n`
  t.equal(decodeChunked(trailer).ended, trailer.length, 'an 8 KiB trailer is fine')

  const bad: Array<[string, string]> = [
    ['zz\r\nab\r\n0\r\n\r\n', 'bad hex'],
    ['5x\r\nhello\r\n0\r\n\r\n', 'a letter after the size'],
    ['\r\n', 'no digits'],
    [';ext\r\n', 'an extension without a size'],
    [' 5\r\nhello\r\n', 'space before the size'],
    ['-1\r\n', 'a sign'],
    ['5\nhello\r\n', 'a bare LF after the size'],
    ['3\r\nabcX\r\n0\r\n\r\n', 'data longer than its size'],
    ['3\r\nabc\rX0\r\n\r\n', 'CR without LF after the data'],
    ['3\r\nabc0\r\n\r\n', 'no CRLF after the data'],
    [`1${'0'.repeat(13)}\r\nx\r\n`, '14 significant hex digits'],
    [`${'f'.repeat(14)}\r\n`, 'a size beyond 2^53'],
    [`1;${'e'.repeat(5 * KiB)}\r\nx\r\n0\r\n\r\n`, 'an extension over 4 KiB'],
    [`0\r\nX-Big: ${'a'.repeat(17 * KiB)}\r\n\r\n`, 'a trailer over 16 KiB'],
    [`0\r\n${'X-A: b\r\n'.repeat(3 * KiB)}\r\n`, 'many trailer lines over 16 KiB'],
    ['0\r\n\rX', 'a bad end'],
    [`${'0'.repeat(5 * KiB)}1\r\nx\r\n`, 'leading zeros over 4 KiB'],
    ['5 \r\nhello\r\n0\r\n\r\n', 'whitespace after the size without an extension'],
    ['5;\r\nhello\r\n0\r\n\r\n', 'an extension without a name'],
    ['5;;a\r\nhello\r\n0\r\n\r\n', 'an empty extension'],
    ['5;=b\r\nhello\r\n0\r\n\r\n', 'an extension value without a name'],
    ['5;a=\r\nhello\r\n0\r\n\r\n', 'an extension name with = and no value'],
    ['5;a=b/c\r\nhello\r\n0\r\n\r\n', 'an extension value neither token nor quoted'],
    ['5;a="b\r\nhello\r\n0\r\n\r\n', 'an unclosed quote in an extension'],
    ['5;a="b"c\r\nhello\r\n0\r\n\r\n', 'bytes after a quoted extension value'],
    ['5;a=b \r\nhello\r\n0\r\n\r\n', 'whitespace after an extension'],
    ['5;a\nb\r\nhello\r\n0\r\n\r\n', 'a bare LF in an extension'],
    ['5;a=\u0000\r\nhello\r\n0\r\n\r\n', 'NUL in an extension'],
    ['5;a="\u007f"\r\nhello\r\n0\r\n\r\n', 'DEL in a quoted extension value'],
    ['0\r\nX-T: 1\nX-U: 2\r\n\r\n', 'a bare LF in the trailer'],
    ['0\r\nnot a field\r\n\r\n', 'a trailer line without a colon'],
    ['0\r\nX-T: a\r\n folded\r\n\r\n', 'obs-fold in the trailer'],
    ['0\r\nX-T: a\u0000b\r\n\r\n', 'NUL in a trailer value'],
    ['0\r\nX-T: a\rb\r\n\r\n', 'a bare CR in a trailer value']
  ]
  for (const [input, why] of bad) {
    for (const step of [undefined, 1]) {
      let thrown: unknown
      try {
        decodeChunked(input, step)
      } catch (err) {
        thrown = err
      }
      t.ok(thrown instanceof UpstreamFailure, `${why} (step ${step ?? 'all'}): rejected`)
      t.equal((thrown as UpstreamFailure | undefined)?.code, 'EBADRESPONSE', `${why}: EBADRESPONSE`)
    }
  }
})

t.test('close-delimited bodies (HTTP/1.0, or HTTP/1.1 without a length): whole body, connection not reused', async (t) => {
  const body = randomBytes(MiB + 123)
  const statuses = ['HTTP/1.0 200 OK', 'HTTP/1.1 200 OK']
  const server = await upstream(t, async (socket, request) => {
    await send(socket, responseHead(statuses[request.connection - 1] ?? 'HTTP/1.1 200 OK', [['Content-Type', 'application/octet-stream']]))
    await send(socket, body.subarray(0, 1000))
    await send(socket, body.subarray(1000))
    socket.end()
  })
  const client = blobClient(t)
  for (const [i, status] of statuses.entries()) {
    const res = await client.get(server.origin, `/close/${i}`, {})
    t.equal(res.statusCode, 200)
    const sink = new Collector()
    await within(res.pipeTo(sink), 10_000, status)
    t.equal(sink.bytes, body.length, `${status}: every byte`)
    t.equal(sink.digest(), sha256(body), `${status}: the exact bytes`)
    t.equal(server.sockets.length, i + 1, `${status}: request ${i + 1} on connection ${i + 1}`)
  }
  t.same(server.requests.map((r) => [r.connection, r.index]), [[1, 0], [2, 0]], 'each response closed its connection')
  await until(() => client.openConnections === 0, 'the closed connections forgotten')
})

t.test('204, 304 (even with a Content-Length) and Content-Length 0: no body, connection kept', async (t) => {
  const answers = [
    responseHead('HTTP/1.1 204 No Content', [['X-A', '1']]),
    responseHead('HTTP/1.1 304 Not Modified', [['ETag', '"abc"'], ['Content-Length', '1234']]),
    responseHead('HTTP/1.1 200 OK', [['Content-Length', '0']]),
    ok('done')
  ]
  const server = await upstream(t, async (socket, request) => {
    await send(socket, answers[request.index] ?? 'HTTP/1.1 500 Nope\r\n\r\n')
  })
  const client = blobClient(t)
  const seen: Array<[number, string]> = []
  for (let i = 0; i < answers.length; i++) {
    const res = await within(client.get(server.origin, `/${i}`, {}), 5000, `response ${i}`)
    const sink = new Collector({ keep: true })
    await within(res.pipeTo(sink), 5000, `body ${i}`)
    await sink.finished()
    seen.push([res.statusCode, sink.body.toString()])
  }
  t.same(seen, [[204, ''], [304, ''], [200, ''], [200, 'done']])
  t.equal(server.sockets.length, 1, 'all four on one connection')
  t.equal(client.openConnections, 1)
})

t.test('malformed responses are rejected (EBADRESPONSE); the client works on', async (t) => {
  const good = await upstream(t, async (socket) => { await send(socket, ok('fine')) })
  const client = blobClient(t, { headersTimeoutMs: 10_000 })
  const pad = `X-Pad: ${'a'.repeat(1000)}\r\n`
  const cases: Array<{ why: string, bytes: string, inBody?: boolean }> = [
    { why: 'bad status line (letters for digits)', bytes: 'HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n' },
    { why: 'bad status line (HTTP/2)', bytes: 'HTTP/2 200\r\nContent-Length: 0\r\n\r\n' },
    { why: 'bad status line (not HTTP)', bytes: 'ICY 200 OK\r\nContent-Length: 0\r\n\r\n' },
    { why: 'bad status line (status 099)', bytes: 'HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n' },
    { why: 'obs-fold', bytes: 'HTTP/1.1 200 OK\r\nX-A: a\r\n  folded\r\nContent-Length: 0\r\n\r\n' },
    { why: 'obs-fold with a tab', bytes: 'HTTP/1.1 200 OK\r\nX-A: a\r\n\tfolded\r\nContent-Length: 0\r\n\r\n' },
    { why: 'space before the colon', bytes: 'HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n' },
    { why: 'a line without a colon', bytes: 'HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n' },
    { why: 'a control character in a value', bytes: 'HTTP/1.1 200 OK\r\nX-A: a\u0001b\r\nContent-Length: 0\r\n\r\n' },
    { why: 'conflicting duplicate Content-Length', bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello' },
    { why: 'non-numeric Content-Length', bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\nhello' },
    { why: 'negative Content-Length', bytes: 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n' },
    { why: 'Content-Length list', bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello' },
    { why: 'protocol switch', bytes: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n' },
    { why: 'bad chunk size', bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n', inBody: true },
    { why: 'chunk longer than its size', bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n', inBody: true },
    { why: 'head over 64 KiB without an end', bytes: `HTTP/1.1 200 OK\r\n${pad.repeat(70)}` },
    { why: 'head over 64 KiB, its end in the last read', bytes: `HTTP/1.1 200 OK\r\n${pad.repeat(70)}Content-Length: 0\r\n\r\n` }
  ]
  for (const { why, bytes, inBody } of cases) {
    const bad = await upstream(t, async (socket) => {
      await send(socket, Buffer.from(bytes, 'latin1'))
    })
    const started = Date.now()
    let err: Error & { code?: string }
    if (inBody === true) {
      const res = await client.get(bad.origin, '/', {})
      const sink = new Collector()
      err = await rejection(res.pipeTo(sink))
      t.equal(sink.writableEnded, false, `${why}: the destination is not ended`)
    } else {
      err = await rejection(client.get(bad.origin, '/', {}))
    }
    t.equal(err.code, 'EBADRESPONSE', `${why}: EBADRESPONSE (${err.message})`)
    t.ok(Date.now() - started < 5000, `${why}: at once, not by a timeout`)
    await closed(bad.sockets[0] as net.Socket, `${why}: the connection closed`)
    const res = await within(client.get(good.origin, '/', {}), 5000, `${why}: a good request after`)
    const sink = new Collector({ keep: true })
    await res.pipeTo(sink)
    t.equal(sink.body.toString(), 'fine', `${why}: the client works on`)
  }
  t.equal(good.sockets.length, 1, 'the good origin kept its one connection throughout')
})

t.test('informational 100 and 103 before the answer are skipped', async (t) => {
  const body = randomBytes(50_000)
  const interim = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n'
  const final = ok(body, [['X-Final', 'yes']])
  const server = await upstream(t, async (socket, request) => {
    if (request.index === 0) {
      await send(socket, Buffer.concat([Buffer.from(interim), final]))
    } else {
      await send(socket, 'HTTP/1.1 100 Continue\r\n\r\n')
      await send(socket, 'HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n')
      await sendBytewise(socket, 'HTTP/1.1 100 Continue\r\n\r\n')
      await send(socket, final)
    }
  })
  const client = blobClient(t)
  for (const way of ['in one write', 'in separate writes']) {
    const res = await client.get(server.origin, '/', {})
    t.equal(res.statusCode, 200, `${way}: the final status`)
    t.equal(res.headers['x-final'], 'yes', `${way}: the final headers`)
    t.equal(res.headers.link, undefined, `${way}: no header of an interim response`)
    const sink = new Collector()
    await res.pipeTo(sink)
    t.equal(sink.digest(), sha256(body), `${way}: the body`)
  }
  t.equal(server.sockets.length, 1, 'kept alive')
})

t.test('body bytes in the head\'s TCP write; bytes after the body end the connection', async (t) => {
  const small = randomBytes(1000)
  const server = await upstream(t, async (socket, request) => {
    if (request.connection === 1 && request.index === 0) await send(socket, ok(small))
    else if (request.connection === 1 && request.index === 1) await send(socket, Buffer.concat([ok(small), Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil')]))
    else await send(socket, ok('fresh'))
  })
  const client = blobClient(t)

  const first = await client.get(server.origin, '/1', {})
  const one = new Collector({ keep: true })
  await first.pipeTo(one)
  t.ok(one.body.equals(small), 'head and body in one write: the body')

  const second = await client.get(server.origin, '/2', {})
  const two = new Collector({ keep: true })
  await second.pipeTo(two)
  t.ok(two.body.equals(small), 'with extra bytes after it: the body, and nothing more')
  t.equal(server.sockets.length, 1, 'the second request reused the connection')
  await closed(server.sockets[0] as net.Socket, 'the connection with stray bytes closed')

  const third = await client.get(server.origin, '/3', {})
  const three = new Collector({ keep: true })
  await third.pipeTo(three)
  t.equal(three.body.toString(), 'fresh', 'not the stray response')
  t.equal(server.sockets.length, 2, 'a new connection after the stray bytes')
  t.same(server.requests.map((r) => r.connection), [1, 1, 2])
})

t.test('a response with both Transfer-Encoding and Content-Length is refused', async (t) => {
  const inner = 'abcHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!'
  const server = await upstream(t, async (socket) => {
    await send(socket, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n' +
      `${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`)
  })
  const client = blobClient(t)
  let outcome: string
  try {
    const res = await client.get(server.origin, '/', {})
    const sink = new Collector({ keep: true })
    await res.pipeTo(sink)
    outcome = res.headers['content-length'] === undefined
      ? 'delivered without a Content-Length'
      : `delivered ${sink.bytes} bytes with content-length ${res.headers['content-length']}`
  } catch (err) {
    outcome = (err as { code?: string }).code === 'EBADRESPONSE' ? 'rejected' : `failed otherwise: ${String(err)}`
  }
  t.equal(outcome, 'rejected', 'refused as node:http and undici refuse it: the length would split the client\'s connection')
})

t.test('the Connection header decides whether a connection is reused', async (t) => {
  const answers: Record<string, string> = {
    '/close': 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nc1',
    '/close-listed': 'HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 2\r\n\r\nc2',
    '/old': 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nc3',
    '/old-keep-alive': 'HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nk1',
    '/after': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nk2'
  }
  const server = await upstream(t, async (socket, request) => {
    await send(socket, answers[request.line.split(' ')[1] ?? ''] ?? 'HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n')
  })
  const client = blobClient(t)
  const bodies: string[] = []
  for (const path of Object.keys(answers)) {
    const res = await client.get(server.origin, path, {})
    const sink = new Collector({ keep: true })
    await res.pipeTo(sink)
    bodies.push(sink.body.toString())
  }
  t.same(bodies, ['c1', 'c2', 'c3', 'k1', 'k2'])
  t.same(server.requests.map((r) => [r.line.split(' ')[1], r.connection]), [
    ['/close', 1],
    ['/close-listed', 2],
    ['/old', 3],
    ['/old-keep-alive', 4],
    ['/after', 4]
  ], 'close and HTTP/1.0 end a connection; HTTP/1.0 with keep-alive keeps it')
})

t.test('a response head larger than the shared head buffer (40 KiB) is assembled', async (t) => {
  const fields: Array<[string, string]> = Array.from({ length: 40 }, (_v, i) => [`X-Pad-${i}`, String(i).padEnd(1000, '.')])
  const server = await upstream(t, async (socket) => {
    await send(socket, ok('big head', fields))
  })
  const client = blobClient(t)
  const res = await client.get(server.origin, '/', {})
  t.equal(res.headers['x-pad-39'], '39'.padEnd(1000, '.'))
  const sink = new Collector({ keep: true })
  await res.pipeTo(sink)
  t.equal(sink.body.toString(), 'big head')
})

t.test('a response head of 64 KiB is read, one byte more is refused, wherever the reads end', async (t) => {
  const prefix = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: '
  const headOf = (bytes: number): string => `${prefix}${'a'.repeat(bytes - prefix.length)}\r\n\r\nok`
  const server = await upstream(t, async (socket, request) => {
    const [, bytes, how] = request.line.split(' ')[1]?.split('/') ?? []
    const response = headOf(Number(bytes))
    if (how === 'whole') await send(socket, response)
    else for (let at = 0; at < response.length; at += 1000) await send(socket, response.slice(at, at + 1000))
  })
  const client = blobClient(t)
  for (const how of ['whole', 'in 1000-byte writes']) {
    const res = await client.get(server.origin, `/${64 * KiB}/${how}`, {})
    const sink = new Collector({ keep: true })
    await res.pipeTo(sink)
    t.equal(sink.body.toString(), 'ok', `${how}: a head of exactly 64 KiB`)
    const err = await rejection(client.get(server.origin, `/${64 * KiB + 1}/${how}`, {}))
    t.equal(err.code, 'EBADRESPONSE', `${how}: one byte more (${err.message})`)
  }
})

t.test('idle connections: at most maxIdlePerOrigin kept, closed after idleTimeoutMs', async (t) => {
  const server = await upstream(t, async (socket) => { await send(socket, ok('x')) })
  const client = blobClient(t, { maxIdlePerOrigin: 2, idleTimeoutMs: 300 })
  const responses = await Promise.all([0, 1, 2, 3].map(async (i) => await client.get(server.origin, `/${i}`, {})))
  t.equal(server.sockets.length, 4, 'four concurrent requests, four connections')
  for (const res of responses) await res.pipeTo(new Collector())
  const released = Date.now()
  await until(() => client.openConnections === 2, 'two idle connections left')
  await until(() => server.sockets.filter((socket) => socket.closed).length === 2, 'the server sees two closed')
  t.equal(client.openConnections, 2, 'two kept idle')
  await until(() => client.openConnections === 0, 'the idle connections closed after idleTimeoutMs', 5000)
  const idle = Date.now() - released
  t.ok(idle >= 250, `not before the idle timeout (${idle} ms)`)
  await until(() => server.sockets.every((socket) => socket.closed), 'the server sees all closed')
})

// ---------------------------------------------------------------------------------------------
// The connection cap
// ---------------------------------------------------------------------------------------------

t.test('at the cap, requests wait for a free connection: cap 2, 5 concurrent downloads, all exact', async (t) => {
  const bodies = Array.from({ length: 5 }, (_v, n) => randomBytes(MiB + n * 1001))
  const server = await upstream(t, async (socket, request) => {
    const body = bodies[Number(request.line.split(' ')[1]?.slice(1))] as Buffer
    await send(socket, responseHead('HTTP/1.1 200 OK', [['Content-Length', String(body.length)]]))
    // In pieces, so the downloads overlap and the waiting requests really wait.
    for (let at = 0; at < body.length; at += 64 * KiB) await send(socket, body.subarray(at, at + 64 * KiB))
  })
  const client = blobClient(t, { maxConnectionsPerOrigin: 2, readBufferBytes: 64 * KiB })
  const gets = bodies.map(async (_body, n) => await client.get(server.origin, `/${n}`, {}))
  t.equal(client.openConnections, 2, 'two connections opened')
  t.equal(client.queuedRequests, 3, 'three requests wait')
  const sinks = bodies.map(() => new Collector({ delay: () => 'immediate' }))
  await within(Promise.all(gets.map(async (get, n) => {
    const res = await get
    await res.pipeTo(sinks[n] as Collector)
    await (sinks[n] as Collector).finished()
  })), 30_000, 'the five downloads')
  for (const [n, body] of bodies.entries()) t.equal((sinks[n] as Collector).digest(), sha256(body), `download ${n}: the exact bytes`)
  t.equal(server.sockets.length, 2, 'the server saw two connections, no more')
  t.same([...new Set(server.requests.map((r) => r.connection))].sort(), [1, 2], 'both carried requests')
  const waited = server.requests.map((r) => r.line.split(' ')[1]).filter((path) => ['/2', '/3', '/4'].includes(path ?? ''))
  t.same(waited, ['/2', '/3', '/4'], 'the waiting requests went out in the order they came')
  t.equal(client.queuedRequests, 0)
  t.equal(client.openConnections, 2, 'both kept alive')
})

t.test('at the cap, connections the registry closes pass their slot on, one after another', async (t) => {
  const openSeen: number[] = []
  const server = await upstream(t, async (socket, request) => {
    openSeen.push(client.openConnections)
    await send(socket, responseHead('HTTP/1.1 200 OK', [['Connection', 'close'], ['Content-Length', '3']]) + `${request.line.split(' ')[1] ?? ''}!`)
    socket.end()
  })
  const client = blobClient(t, { maxConnectionsPerOrigin: 1 })
  const bodies = await within(Promise.all(['/a', '/b', '/c'].map(async (path) => {
    const res = await client.get(server.origin, path, {})
    const sink = new Collector({ keep: true })
    await res.pipeTo(sink)
    return sink.body.toString()
  })), 10_000, 'three requests on one slot')
  t.same(bodies, ['/a!', '/b!', '/c!'], 'each its own answer')
  t.same(server.requests.map((r) => [r.line, r.connection]), [['GET /a HTTP/1.1', 1], ['GET /b HTTP/1.1', 2], ['GET /c HTTP/1.1', 3]],
    'one connection after another, in order')
  t.same(openSeen, [1, 1, 1], 'never two connections open at once')
})

t.test('a request waits at most the queue timeout, by default the connect timeout: EQUEUE_TIMEOUT', async (t) => {
  const server = await upstream(t, async (socket, request) => {
    if (request.line.includes('/hold')) {
      // A head and a little of the body; the rest never comes.
      await send(socket, responseHead('HTTP/1.1 200 OK', [['Content-Length', '1000']]) + 'x'.repeat(10))
      return
    }
    await send(socket, ok('fine'))
  })
  for (const [options, waits] of [[{ queueTimeoutMs: 100 }, 100], [{ connectTimeoutMs: 150 }, 150]] as const) {
    const client = blobClient(t, { maxConnectionsPerOrigin: 1, ...options })
    const held = await client.get(server.origin, '/hold', {})
    const started = Date.now()
    const err = await rejection(client.get(server.origin, '/waits', {}))
    const waited = Date.now() - started
    t.equal(err.code, 'EQUEUE_TIMEOUT', `${JSON.stringify(options)}: ${err.message}`)
    t.ok(waited >= waits - 10 && waited < waits + 2000, `${JSON.stringify(options)}: after about ${waits} ms (${waited} ms)`)
    t.equal(client.queuedRequests, 0, 'no longer waiting')
    t.equal(server.requests.filter((r) => r.line.includes('/waits')).length, 0, 'nothing was sent for it')
    held.discard()
    // The slot frees once the discarded connection has closed; a request now waits for that.
    const res = await within(client.get(server.origin, '/after', {}), 5000, 'a request after the held one')
    const sink = new Collector({ keep: true })
    await res.pipeTo(sink)
    t.equal(sink.body.toString(), 'fine', `${JSON.stringify(options)}: the freed slot serves the next request`)
  }
})

t.test('destroying the client rejects the requests waiting at the cap (ECLOSED)', async (t) => {
  const server = await upstream(t, async (socket) => {
    await send(socket, responseHead('HTTP/1.1 200 OK', [['Content-Length', '1000']]))
  })
  const client = blobClient(t, { maxConnectionsPerOrigin: 1, queueTimeoutMs: 10_000 })
  const held = await client.get(server.origin, '/', {})
  const waiting = client.get(server.origin, '/', {})
  t.equal(client.queuedRequests, 1)
  client.destroy()
  const err = await rejection(waiting, 1000)
  t.equal(err.code, 'ECLOSED', err.message)
  t.equal(client.queuedRequests, 0)
  t.equal((await rejection(held.pipeTo(new Collector()))).code, 'ECONNRESET', 'the running one is cut')
  t.equal(server.requests.length, 1, 'the waiting request was never sent')
})

t.test('a retry at the cap gets a new connection: an idle one gives up its slot', async (t) => {
  const most: number[] = []
  let staled = false
  const server = await upstream(t, async (socket, request) => {
    most.push(client.openConnections)
    if (request.index === 1 && !staled) {
      // The first reuse of a kept-alive connection finds it closed by the registry.
      staled = true
      socket.destroy()
      return
    }
    await send(socket, ok(`answer ${request.connection}.${request.index}`))
  })
  const client = blobClient(t, { maxConnectionsPerOrigin: 2 })
  for (const res of await Promise.all([client.get(server.origin, '/1', {}), client.get(server.origin, '/2', {})])) await res.pipeTo(new Collector())
  t.equal(client.openConnections, 2, 'two idle connections: the cap is full')
  const res = await within(client.get(server.origin, '/3', {}), 5000, 'the retried request')
  const sink = new Collector({ keep: true })
  await res.pipeTo(sink)
  t.equal(sink.body.toString(), 'answer 3.0', 'answered on a third, new connection')
  t.equal(server.sockets.length, 3)
  await closed(server.sockets[0] as net.Socket, 'the stale connection closed')
  await closed(server.sockets[1] as net.Socket, 'the idle connection that gave up its slot closed')
  t.ok(most.every((open) => open <= 2), `never more than two connections (${most.join(', ')})`)
  t.equal(client.openConnections, 1)
})

// ---------------------------------------------------------------------------------------------
// Failures and timeouts
// ---------------------------------------------------------------------------------------------

t.test('the registry closing mid-body rejects pipeTo (ECONNRESET); nothing claims success', async (t) => {
  const body = randomBytes(MiB)
  const sent = 100 * KiB
  const server = await upstream(t, async (socket) => {
    await send(socket, responseHead('HTTP/1.1 200 OK', [['Content-Length', String(body.length)]]))
    await send(socket, body.subarray(0, sent))
    socket.destroy()
  })
  const client = blobClient(t)
  const res = await client.get(server.origin, '/', {})
  const sink = new Collector({ keep: true })
  let finished = false
  sink.on('finish', () => { finished = true })
  const err = await rejection(res.pipeTo(sink))
  t.equal(err.code, 'ECONNRESET', err.message)
  t.ok(sink.bytes <= sent, `at most what was sent (${sink.bytes} bytes)`)
  t.ok(sink.body.equals(body.subarray(0, sink.bytes)), 'what arrived is the start of the body')
  t.equal(sink.writableEnded, false, 'the destination was not ended')
  await new Promise<void>((resolve) => setImmediate(resolve))
  t.equal(finished, false, 'no finish on the destination')
  await until(() => client.openConnections === 0, 'the connection forgotten')
})

t.test('headers timeout: EHEADERS_TIMEOUT and the connection closed', async (t) => {
  const server = await upstream(t, () => {})
  const client = blobClient(t, { headersTimeoutMs: 100 })
  const started = Date.now()
  const err = await rejection(client.get(server.origin, '/', {}))
  t.equal(err.code, 'EHEADERS_TIMEOUT', err.message)
  t.ok(Date.now() - started >= 90, 'not before the timeout')
  t.equal(server.requests.length, 1, 'the request was sent')
  await closed(server.sockets[0] as net.Socket, 'the silent connection closed')
})

t.test('body timeout: a registry stalling mid-body fails with EBODY_TIMEOUT', async (t) => {
  const body = randomBytes(MiB)
  const sent = 10 * KiB
  const server = await upstream(t, async (socket) => {
    await send(socket, responseHead('HTTP/1.1 200 OK', [['Content-Length', String(body.length)]]))
    await send(socket, body.subarray(0, sent))
    // ...and nothing more.
  })
  const client = blobClient(t, { bodyTimeoutMs: 100 })
  const res = await client.get(server.origin, '/', {})
  const sink = new Collector({ keep: true })
  const err = await rejection(res.pipeTo(sink))
  t.equal(err.code, 'EBODY_TIMEOUT', err.message)
  t.equal(sink.bytes, sent, 'what was sent arrived')
  t.ok(sink.body.equals(body.subarray(0, sent)))
  t.equal(sink.writableEnded, false)
  await closed(server.sockets[0] as net.Socket, 'the stalled connection closed')
})

t.test('body timeout does not count pauses caused by a slow destination', async (t) => {
  const body = randomBytes(2 * MiB)
  const server = await upstream(t, async (socket) => {
    await send(socket, ok(body))
  })
  const client = blobClient(t, { bodyTimeoutMs: 100, readBufferBytes: 64 * KiB })
  const res = await client.get(server.origin, '/', {})
  // Three writes take 300 ms each: three times the body timeout, while the registry is ready.
  const sink = new Collector({ highWaterMark: 1, delay: (i) => i < 3 ? 300 : 'now' })
  const started = Date.now()
  await within(res.pipeTo(sink), 10_000, 'the body through a slow destination')
  await sink.finished()
  const took = Date.now() - started
  t.equal(sink.digest(), sha256(body), 'complete and exact')
  t.ok(took >= 850, `the destination really paused the body longer than the timeout (${took} ms)`)
})

t.test('a stale kept-alive connection is retried once, transparently', async (t) => {
  for (const cap of [256, 1]) await t.test(`maxConnectionsPerOrigin ${cap}`, async (t) => { await staleRetry(t, cap) })
})

async function staleRetry (t: Test, maxConnectionsPerOrigin: number): Promise<void> {
  const server = await upstream(t, async (socket, request) => {
    if (request.connection === 1 && request.index === 1) {
      socket.destroy()
      return
    }
    await send(socket, ok(`answer ${request.connection}.${request.index}`))
  })
  const client = blobClient(t, { maxConnectionsPerOrigin })
  const bodies: string[] = []
  for (let i = 0; i < 3; i++) {
    const res = await within(client.get(server.origin, `/${i}`, {}), 5000, `request ${i}`)
    const sink = new Collector({ keep: true })
    await res.pipeTo(sink)
    bodies.push(sink.body.toString())
  }
  t.same(bodies, ['answer 1.0', 'answer 2.0', 'answer 2.1'], 'the second get succeeded on a new connection')
  t.equal(server.sockets.length, 2)
  t.same(server.requests.map((r) => [r.line, r.connection]), [
    ['GET /0 HTTP/1.1', 1],
    ['GET /1 HTTP/1.1', 1],
    ['GET /1 HTTP/1.1', 2],
    ['GET /2 HTTP/1.1', 2]
  ], 'sent once on the stale connection, once more on a new one')
}

t.test('no retry once part of the answer arrived', async (t) => {
  const server = await upstream(t, async (socket, request) => {
    if (request.connection === 1 && request.index === 1) {
      await send(socket, 'HTTP/1.1 200')
      socket.destroy()
      return
    }
    await send(socket, ok('fine'))
  })
  const client = blobClient(t)
  const first = await client.get(server.origin, '/0', {})
  await first.pipeTo(new Collector())
  const err = await rejection(client.get(server.origin, '/1', {}))
  t.equal(err.code, 'ECONNRESET', err.message)
  t.equal(server.sockets.length, 1, 'no second connection')
  t.equal(server.requests.length, 2, 'the request was not sent again')
})

t.test('a connection the registry closed while idle is not used again', async (t) => {
  const server = await upstream(t, async (socket, request) => {
    await send(socket, ok(`answer ${request.connection}`))
    if (request.connection === 1) socket.end()
  })
  const client = blobClient(t)
  const first = await client.get(server.origin, '/0', {})
  await first.pipeTo(new Collector())
  await until(() => client.openConnections === 0, 'the closed idle connection noticed')
  const second = await client.get(server.origin, '/1', {})
  const sink = new Collector({ keep: true })
  await second.pipeTo(sink)
  t.equal(sink.body.toString(), 'answer 2')
  t.same(server.requests.map((r) => r.connection), [1, 2], 'nothing was sent on the closed connection')
})

// ---------------------------------------------------------------------------------------------
// Integrity under concurrency, buffer reuse, backpressure
// ---------------------------------------------------------------------------------------------

/** Serves `bodies[n]` for `/n`: with a Content-Length, or chunked in random sizes when `chunked(n)`. */
async function blobServer (t: Test, bodies: Buffer[], chunked: (n: number) => boolean, seed: number, secure?: { key: Buffer, cert: Buffer }): Promise<Upstream> {
  const rand = prng(seed)
  return await upstream(t, async (socket, request) => {
    const n = Number(request.line.split(' ')[1]?.slice(1))
    const body = bodies[n] as Buffer
    if (!chunked(n)) {
      await send(socket, responseHead('HTTP/1.1 200 OK', [['Content-Length', String(body.length)]]))
      await send(socket, body)
      return
    }
    await send(socket, responseHead('HTTP/1.1 200 OK', [['Transfer-Encoding', 'chunked']]))
    let last: Promise<void> = Promise.resolve()
    for (let at = 0; at < body.length;) {
      const size = Math.min(body.length - at, 1 + Math.floor(rand() * 200 * KiB))
      socket.write(`${size.toString(16)}\r\n`)
      socket.write(body.subarray(at, at + size))
      last = send(socket, '\r\n')
      at += size
    }
    await last
    await send(socket, '0\r\n\r\n')
  }, secure)
}

/** Delays about half the write callbacks by a turn or 0–5 ms: buffers stay held, writes back up. */
function jitter (seed: number): Delay {
  const rand = prng(seed)
  return () => {
    const r = rand()
    if (r < 0.3) return Math.floor(rand() * 6)
    if (r < 0.5) return 'immediate'
    return 'now'
  }
}

async function concurrentDownloads (t: Test, bodies: Buffer[], chunked: (n: number) => boolean, seed: number, secure?: { key: Buffer, cert: Buffer }): Promise<void> {
  const server = await blobServer(t, bodies, chunked, seed, secure)
  const client = blobClient(t, { readBufferBytes: 64 * KiB, ...(secure === undefined ? {} : { ca: secure.cert }) })
  const pool = secure === undefined ? client.pool : client.tlsPool
  // Half the destinations take several reads before they push back, so reading goes on while
  // earlier buffers are still held by writes: a buffer reused too early shows in the digest.
  const sinks = bodies.map((_body, n) => new Collector({ delay: jitter(seed * 100 + n), highWaterMark: n % 2 === 0 ? 16 * KiB : 128 * KiB }))
  const started = Date.now()
  await within(Promise.all(bodies.map(async (_body, n) => {
    const res = await client.get(server.origin, `/${n}`, {})
    t.equal(res.statusCode, 200)
    await res.pipeTo(sinks[n] as Collector)
    await (sinks[n] as Collector).finished()
  })), 40_000, 'the concurrent downloads')
  t.comment(`${bodies.length} downloads in ${Date.now() - started} ms, pool ${JSON.stringify(pool.stats())}`)
  for (const [n, body] of bodies.entries()) {
    const sink = sinks[n] as Collector
    t.equal(sink.bytes, body.length, `download ${n}: every byte`)
    t.equal(sink.digest(), sha256(body), `download ${n}${chunked(n) ? ' (chunked)' : ''}: the exact bytes`)
  }
  const writes = sinks.reduce((sum, sink) => sum + sink.writes, 0)
  const total = bodies.reduce((sum, body) => sum + body.length, 0)
  t.ok(writes >= total / (64 * KiB), `at least one write per 64 KiB read (${writes} writes)`)
  const { allocated } = pool.stats()
  t.ok(allocated < 64, `buffers are reused: ${allocated} allocated for ${writes} writes`)
  t.equal(server.sockets.length, bodies.length, 'one connection per concurrent download')
}

t.test('8 concurrent downloads with held buffers and backpressure: every byte exact', async (t) => {
  const bodies = Array.from({ length: 8 }, (_v, n) => randomBytes(16 * MiB - n * 4099))
  await concurrentDownloads(t, bodies, () => false, 11)
})

t.test('8 concurrent downloads, half of them chunked: every byte exact', async (t) => {
  const bodies = Array.from({ length: 8 }, (_v, n) => randomBytes(8 * MiB + n * 7919))
  await concurrentDownloads(t, bodies, (n) => n % 2 === 1, 12)
})

t.test('TLS: 8 concurrent downloads, half of them chunked, records coalesced while writes are held: every byte exact', async (t) => {
  // Over TLS consecutive records share a buffer: its head is still being written while its tail
  // is read into. A byte overwritten too early shows in the digest.
  const bodies = Array.from({ length: 8 }, (_v, n) => randomBytes(4 * MiB + n * 7919))
  await concurrentDownloads(t, bodies, (n) => n % 2 === 1, 13, selfSigned())
})

t.test('a slow destination holds the registry back: few buffers for a 64 MiB body', async (t) => {
  const body = randomBytes(64 * MiB)
  const server = await upstream(t, async (socket) => { await send(socket, ok(body)) })
  const client = blobClient(t)
  const res = await client.get(server.origin, '/', {})
  const sink = new Collector({ delay: () => 'immediate' })
  await within(res.pipeTo(sink), 30_000, 'the 64 MiB body')
  await sink.finished()
  t.equal(sink.digest(), sha256(body), 'the exact bytes')
  const { allocated } = client.pool.stats()
  t.ok(allocated <= 4, `${allocated} read buffers of 1 MiB for ${sink.writes} writes`)
})

t.test('the destination closing early: ECLIENTGONE and the registry connection closed', async (t) => {
  const server = await upstream(t, async (socket) => {
    await send(socket, responseHead('HTTP/1.1 200 OK', [['Content-Length', String(8 * MiB)]]))
    await send(socket, randomBytes(MiB))
    // The rest never comes; only the client's close ends this.
  })
  const client = blobClient(t)
  const res = await client.get(server.origin, '/', {})
  const sink = new Collector()
  sink.once('chunk', () => { setImmediate(() => sink.destroy()) })
  const err = await rejection(res.pipeTo(sink))
  t.equal(err.code, 'ECLIENTGONE', err.message)
  await closed(server.sockets[0] as net.Socket, 'the registry connection closed')
  await until(() => client.openConnections === 0, 'the connection forgotten')
})

t.test('discard drops the body and its connection', async (t) => {
  const server = await upstream(t, async (socket, request) => {
    await send(socket, ok(request.connection === 1 ? randomBytes(MiB) : Buffer.from('next')))
  })
  const client = blobClient(t)
  const res = await client.get(server.origin, '/', {})
  res.discard()
  await closed(server.sockets[0] as net.Socket, 'the discarded connection closed')
  const next = await client.get(server.origin, '/', {})
  const sink = new Collector({ keep: true })
  await next.pipeTo(sink)
  t.equal(sink.body.toString(), 'next')
  t.equal(server.sockets.length, 2)
  const late = await rejection(res.pipeTo(new Collector()))
  t.equal(late.code, 'ECONNRESET', 'a discarded body cannot be read afterwards')
})

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

t.test('TLS: verified against the given CA, exact bytes; unverified, no request is sent', async (t) => {
  const { key, cert } = selfSigned()
  const body = randomBytes(3 * MiB)
  const server = await upstream(t, async (socket, request) => {
    const head = responseHead('HTTP/1.1 200 OK', [['Content-Length', String(body.length)]])
    if (request.index === 0) {
      // As most servers do: the head, then the body, in separate writes (separate TLS records).
      await send(socket, head)
      await send(socket, body)
    } else if (request.index === 1) {
      // The same, back to back: the records are likely to arrive in one TCP read.
      socket.write(head)
      await send(socket, body)
    } else {
      await send(socket, Buffer.concat([Buffer.from(head), body]))
    }
  }, { key, cert })

  t.test('trusted', async (t) => {
    const client = blobClient(t, { ca: cert })
    for (const way of ['head and body written apart', 'head and body written back to back', 'head and body in one write']) {
      const res = await within(client.get(server.origin, '/v2/', { authorization: 'Basic eA==' }), 5000, way)
      t.equal(res.statusCode, 200, way)
      const sink = new Collector()
      const err = await within(res.pipeTo(sink).then(() => undefined, (err: Error) => err), 10_000, way)
      t.error(err, `${way}: the body was read`)
      t.equal(sink.bytes, body.length, `${way}: every byte`)
      t.equal(sink.digest(), sha256(body), `${way}: the exact bytes`)
    }
    t.equal(server.sockets.length, 1, 'one TLS connection for all three')
  })

  t.test('untrusted', async (t) => {
    const before = server.received()
    const requests = server.requests.length
    const client = blobClient(t)
    const err = await rejection(client.get(server.origin, '/v2/', { authorization: 'Basic c2VjcmV0' }))
    t.match(err.code, /SELF_SIGNED|CERT/, `${err.code}: ${err.message}`)
    t.equal(server.received(), before, 'not a byte of the request reached the server')
    t.equal(server.requests.length, requests)
  })
})

t.test('read buffers per scheme: 1 MiB for plain HTTP, 64 KiB for TLS, whose reads are 16 KiB at most', async (t) => {
  const { key, cert } = selfSigned()
  const body = randomBytes(4 * MiB)
  const plain = await upstream(t, async (socket) => { await send(socket, ok(body)) })
  const secure = await upstream(t, async (socket) => { await send(socket, ok(body)) }, { key, cert })
  const client = blobClient(t, { ca: cert })
  t.equal(client.pool.size, MiB, 'plain HTTP: 1 MiB')
  t.equal(client.tlsPool.size, 64 * KiB, 'TLS: 64 KiB')
  for (const [scheme, server, own, other] of [['https', secure, client.tlsPool, client.pool], ['http', plain, client.pool, client.tlsPool]] as const) {
    const before = other.stats().allocated
    const res = await client.get(server.origin, '/', {})
    const sink = new Collector()
    const reads: number[] = []
    sink.on('chunk', (length: number) => reads.push(length))
    await within(res.pipeTo(sink), 10_000, `${scheme}: the body`)
    await sink.finished()
    t.equal(sink.digest(), sha256(body), `${scheme}: the exact bytes`)
    t.ok(own.stats().allocated > 0, `${scheme}: read into its own pool`)
    t.equal(other.stats().allocated, before, `${scheme}: not into the other`)
    const largest = Math.max(...reads)
    // The premise of the smaller TLS buffers: should Node hand over more, this says so.
    if (scheme === 'https') t.ok(client.largestRead.tls <= 16 * KiB, `https: no read over 16 KiB (largest ${client.largestRead.tls})`)
    else t.ok(largest > 64 * KiB, `http: reads beyond a TLS buffer (largest ${largest})`)
    // Over TLS consecutive records leave in one write (finding 8).
    if (scheme === 'https') t.ok(largest > 16 * KiB, `https: records written together (largest write ${largest})`)
  }
  t.equal(blobClient(t, { readBufferBytes: 16 * KiB }).tlsPool.size, 16 * KiB, 'never larger than readBufferBytes unless asked')
  t.equal(blobClient(t, { tlsReadBufferBytes: 32 * KiB }).tlsPool.size, 32 * KiB, 'tlsReadBufferBytes when given')
})

t.test('a consumer attaching a few I/O turns after the head still gets the whole body', async (t) => {
  const { key, cert } = selfSigned()
  const body = randomBytes(256 * KiB)
  for (const secure of [false, true]) {
    const scheme = secure ? 'https' : 'http'
    let flushed: () => void = () => {}
    const sent = new Promise<void>((resolve) => { flushed = resolve })
    const server = await upstream(t, async (socket) => {
      socket.setNoDelay(true)
      // Head and body back to back, as soon as the request is in.
      socket.write(responseHead('HTTP/1.1 200 OK', [['Content-Length', String(body.length)]]))
      await send(socket, body)
      flushed()
    }, secure ? { key, cert } : undefined)
    const client = blobClient(t, secure ? { ca: cert } : {})
    const res = await client.get(server.origin, '/', {})
    t.equal(res.statusCode, 200, `${scheme}: the head`)
    // The caller looks at the head for a while (a few turns of the event loop, with the body
    // already sent) before it asks for the body.
    await within(sent, 5000, `${scheme}: the body sent`)
    for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve))
    const sink = new Collector()
    const err = await within(res.pipeTo(sink).then(() => undefined, (err: Error) => err), 10_000, `${scheme}: the body`)
    t.error(err, `${scheme}: the body could still be read`)
    if (err === undefined) await sink.finished()
    t.equal(sink.digest(), sha256(body), `${scheme}: the exact bytes`)
  }
})

// ---------------------------------------------------------------------------------------------
// Small bodies, heads, requests
// ---------------------------------------------------------------------------------------------

t.test('stream(): an error body read as a stream; the connection is kept', async (t) => {
  const json = JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry', detail: 'x'.repeat(300) }] })
  const big = randomBytes(300 * KiB)
  const server = await upstream(t, async (socket, request) => {
    if (request.line.includes('/missing')) {
      await send(socket, Buffer.concat([Buffer.from(responseHead('HTTP/1.1 404 Not Found', [['Content-Type', 'application/json'], ['Content-Length', String(Buffer.byteLength(json))]])), Buffer.from(json)]))
    } else if (request.line.includes('/forbidden')) {
      await send(socket, responseHead('HTTP/1.1 403 Forbidden', [['Transfer-Encoding', 'chunked']]))
      await send(socket, `${big.length.toString(16)}\r\n`)
      await send(socket, big)
      await send(socket, '\r\n0\r\n\r\n')
    } else {
      await send(socket, ok(request.line.split(' ')[1] ?? ''))
    }
  })
  const client = blobClient(t, { readBufferBytes: 16 * KiB })
  const res = await client.get(server.origin, '/missing', {})
  t.equal(res.statusCode, 404)
  t.equal(res.headers['content-type'], 'application/json')
  const parts: Buffer[] = []
  for await (const part of res.stream()) parts.push(part as Buffer)
  t.equal(Buffer.concat(parts).toString(), json, 'the JSON as sent')

  const chunkedRes = await client.get(server.origin, '/forbidden', {})
  t.equal(chunkedRes.statusCode, 403)
  const readable = chunkedRes.stream()
  const got: Buffer[] = []
  for await (const part of readable) {
    got.push(part as Buffer)
    // A slow reader: the stream's backpressure pauses the registry.
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  t.equal(sha256(Buffer.concat(got)), sha256(big), 'a 300 KiB chunked body through stream(), exact')

  const third = await client.get(server.origin, '/third', {})
  const sink = new Collector({ keep: true })
  await third.pipeTo(sink)
  t.equal(sink.body.toString(), '/third')
  t.equal(server.sockets.length, 1, 'the connection was reused after the streamed bodies')

  // A stream destroyed before its end takes its connection with it.
  const fourth = await client.get(server.origin, '/forbidden', {})
  const cut = fourth.stream()
  await within(once(cut, 'readable'), 5000, 'the first bytes of the stream')
  cut.destroy()
  await closed(server.sockets[0] as net.Socket, 'a stream destroyed mid-body closes its connection')
  const fifth = await client.get(server.origin, '/fifth', {})
  const last = new Collector({ keep: true })
  await fifth.pipeTo(last)
  t.equal(last.body.toString(), '/fifth')
  t.same(server.requests.map((r) => r.connection), [1, 1, 1, 1, 2], 'a new connection after the cut')
})

t.test('parseResponseHead', async (t) => {
  const head = parseResponseHead([
    'HTTP/1.1 200 OK',
    'Set-Cookie: a=1',
    'Link: </a>; rel=next',
    'Content-Type: application/json',
    'set-cookie: b=2; Path=/',
    'LINK: </b>; rel=prev',
    'Content-Type: text/html',
    'X-Spaced: \t  padded value \t ',
    'X-Empty:',
    'Content-Length: 12',
    'X-Obs: caf\u00e9',
    'X-Nbsp: \u00a0kept\u00a0',
    'Cookie: a=1',
    'Cookie: b=2'
  ].join('\r\n'))
  t.equal(head.statusCode, 200)
  t.equal(head.minorVersion, 1)
  t.same(head.headers['set-cookie'], ['a=1', 'b=2; Path=/'], 'set-cookie: an array of every value')
  t.equal(head.headers.link, '</a>; rel=next, </b>; rel=prev', 'repeated link: joined with ", "')
  t.equal(head.headers['content-type'], 'application/json', 'a repeated single-valued header keeps the first')
  t.equal(head.headers['x-spaced'], 'padded value', 'value whitespace trimmed')
  t.equal(head.headers['x-empty'], '')
  t.equal(head.headers['content-length'], '12')
  t.equal(head.headers['x-obs'], 'caf\u00e9', 'obs-text (latin1) is allowed in values')
  t.equal(head.headers['x-nbsp'], '\u00a0kept\u00a0', 'only SP and HTAB are trimmed, not NBSP (obs-text)')
  t.equal(head.headers.cookie, 'a=1; b=2', 'repeated cookie: joined with "; ", as node:http does')
  t.same(Object.keys(head.headers).filter((name) => name !== name.toLowerCase()), [], 'names lower-cased')

  const single = parseResponseHead('HTTP/1.1 200 OK\r\nSet-Cookie: only=1')
  t.same(single.headers['set-cookie'], ['only=1'], 'a single set-cookie is an array too')

  const old = parseResponseHead('HTTP/1.0 404 Not Found\r\nServer: x')
  t.equal(old.minorVersion, 0, 'HTTP/1.0')
  t.equal(old.statusCode, 404)

  t.equal(parseResponseHead('HTTP/1.1 204').statusCode, 204, 'no reason phrase')
  t.equal(parseResponseHead('HTTP/1.1 599 Whatever you like').statusCode, 599)

  for (const bad of ['HTTP/1.1 200 OK\r\n folded', 'HTTP/1.2 200 OK', 'HTTP/1.1 20 OK', 'HTTP/1.1 2000 OK', 'http/1.1 200 OK', 'HTTP/1.1  200 OK', 'HTTP/1.1 200 OK\r\nBad Name: x', 'HTTP/1.1 200 OK\r\nX: a\u0000b', 'HTTP/1.1 200 OK\r\nX: a\nb',
    'HTTP/1.1 200 OK\r\nX: \u000ba', 'HTTP/1.1 200 OK\r\nX: a\u000c', 'HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Length: 12']) {
    let thrown: unknown
    try {
      parseResponseHead(bad)
    } catch (err) {
      thrown = err
    }
    t.equal((thrown as UpstreamFailure | undefined)?.code, 'EBADRESPONSE', `${JSON.stringify(bad)}: rejected`)
  }
})

t.test('destroying the client cuts a running download', async (t) => {
  const server = await upstream(t, async (socket) => {
    await send(socket, responseHead('HTTP/1.1 200 OK', [['Content-Length', String(4 * MiB)]]))
    await send(socket, randomBytes(64 * KiB))
  })
  const client = blobClient(t)
  const res = await client.get(server.origin, '/', {})
  const sink = new Collector()
  const piping = res.pipeTo(sink)
  sink.once('chunk', () => { client.destroy() })
  const err = await rejection(piping)
  t.equal(err.code, 'ECONNRESET', err.message)
  t.equal(sink.writableEnded, false)
  await closed(server.sockets[0] as net.Socket, 'the upstream connection closed')
})

t.test('requests that cannot be sent safely, and a destroyed client', async (t) => {
  const server = await upstream(t, async (socket) => { await send(socket, ok('x')) })
  const client = blobClient(t)
  for (const [path, headers, why] of [
    ['/a\r\nX-Injected: 1', {}, 'CRLF in the path'],
    ['/a', { 'x-a': 'b\r\nX-Injected: 1' }, 'CRLF in a value'],
    ['/a', { 'x-a': ['ok', 'b\nc'] }, 'LF in one of several values'],
    ['/a', { 'bad name': 'x' }, 'a space in a name']
  ] as Array<[string, Record<string, string | string[]>, string]>) {
    const err = await rejection(client.get(server.origin, path, headers))
    t.equal(err.code, 'EBADREQUEST', why)
  }
  t.equal(server.received(), 0, 'nothing was sent')
  client.destroy()
  const err = await rejection(client.get(server.origin, '/', {}))
  t.equal(err.code, 'ECLOSED', 'a destroyed client sends nothing more')
})
