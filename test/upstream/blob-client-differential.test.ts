import { createHash } from 'node:crypto'
import http from 'node:http'
import net from 'node:net'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { BlobClient } from '../../src/upstream/transport/blob-client.js'

/*
 * Differential tests: the blob client's HTTP/1.1 response parser against Node's own (llhttp, through
 * node:http) on the same bytes. A raw TCP server answers every request with one case's bytes, cut
 * into writes as a plan says, then closes; both clients fetch it, and their outcomes must agree —
 * accepted or rejected, and when accepted the status, the header values and the body bytes.
 * Where they differ on purpose, the case names both outcomes and the reason (DIFFERENT below).
 *
 * node:http runs as the proxy's other paths run it (strict llhttp, no keep-alive here), except
 * that its head limit is raised from 16 KiB to the blob client's 64 KiB so the two are compared
 * on parsing rather than on a setting. HEAD is not in the corpus: the blob client sends GETs only.
 * Run with DIFFERENTIAL_TABLE=1 to see what each client made of each case.
 */

const KiB = 1024

/** What a client made of a response. Rejections are compared by kind only; `reason` is for messages. */
type Outcome =
  | { kind: 'accept', status: number, headers: Record<string, string | string[]>, body: Buffer }
  | { kind: 'reject', reason: string }

type Kind = Outcome['kind']

interface Case {
  name: string
  bytes: Buffer
  /** What both clients must make of it. */
  expect: Kind
  /** A deliberate difference: what each client does, and why. */
  differs?: { blob: Kind, node: Kind, why: string }
}

/** Bytes written one after another, each write flushed and read by the client before the next. */
type Plan = Buffer[]

/** Resolves after a few turns of the event loop, enough for a loopback read in between. */
async function turns (n = 3): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

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

async function writeAll (socket: net.Socket, plan: Plan): Promise<void> {
  for (const part of plan) {
    await new Promise<void>((resolve, reject) => socket.write(part, (err) => { if (err == null) resolve(); else reject(err) }))
    await turns()
  }
}

interface RawServer {
  origin: string
  /** Registers what `/id` answers; returns the path. */
  serve: (plan: Plan) => string
}

/**
 * Reads a request head, writes the plan's parts (each awaited, then a few loop turns so the client
 * reads it on its own), then closes. It knows nothing of HTTP beyond the blank line.
 */
async function rawServer (t: Test): Promise<RawServer> {
  const plans = new Map<string, Plan>()
  let next = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.setNoDelay(true)
    let pending = ''
    let answered = false
    socket.on('data', (data: Buffer) => {
      if (answered) return
      pending += data.toString('latin1')
      const end = pending.indexOf('\r\n\r\n')
      if (end === -1) return
      answered = true
      const path = pending.slice(0, end).split(' ')[1] ?? ''
      const plan = plans.get(path)
      plans.delete(path)
      writeAll(socket, plan ?? []).then(() => socket.end(), () => socket.destroy())
    })
  })
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
    origin: `http://127.0.0.1:${port}`,
    serve: (plan) => {
      const path = `/${next++}`
      plans.set(path, plan)
      return path
    }
  }
}

/** node:http as the proxy's other paths use it, without keep-alive; its head limit set to the blob client's. */
async function viaNode (agent: http.Agent, url: string): Promise<Outcome> {
  return await new Promise<Outcome>((resolve) => {
    let responded = false
    const req = http.get(url, { agent, maxHeaderSize: 64 * KiB, insecureHTTPParser: false }, (res) => {
      responded = true
      const parts: Buffer[] = []
      res.on('data', (part: Buffer) => parts.push(part))
      res.on('error', (err: Error & { code?: string }) => resolve({ kind: 'reject', reason: `response ${err.code ?? err.message}` }))
      const settle = (): void => {
        if (!res.complete) {
          resolve({ kind: 'reject', reason: 'response incomplete' })
          return
        }
        const headers = Object.fromEntries(Object.entries(res.headers)) as Record<string, string | string[]>
        resolve({ kind: 'accept', status: res.statusCode ?? 0, headers, body: Buffer.concat(parts) })
      }
      res.on('end', settle)
      res.on('close', settle)
    })
    // After the response began, its own events decide: an error about bytes after a complete
    // response (e.g. a body on a 204) does not undo it.
    req.on('error', (err: Error & { code?: string }) => { if (!responded) resolve({ kind: 'reject', reason: `${err.code ?? ''} ${err.message}` }) })
    // A 101 without an 'upgrade' listener: node:http closes the socket and emits no response.
    req.on('close', () => { if (!responded) resolve({ kind: 'reject', reason: 'closed without a response' }) })
  })
}

class Keep extends Writable {
  readonly parts: Buffer[] = []
  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.parts.push(Buffer.from(chunk))
    callback()
  }
}

async function viaBlobClient (client: BlobClient, origin: string, path: string): Promise<Outcome> {
  try {
    const res = await client.get(origin, path, {})
    const sink = new Keep()
    await res.pipeTo(sink)
    return { kind: 'accept', status: res.statusCode, headers: { ...res.headers } as Record<string, string | string[]>, body: Buffer.concat(sink.parts) }
  } catch (err) {
    const { code, message } = err as Error & { code?: string }
    return { kind: 'reject', reason: `${code ?? ''} ${message}` }
  }
}

/** The comparable part of an outcome; a body by length and digest, so a mismatch prints short. */
function summary (outcome: Outcome): unknown {
  if (outcome.kind === 'reject') return { kind: 'reject' }
  const { status, headers, body } = outcome
  return { kind: 'accept', status, headers, bodyLength: body.length, bodySha256: createHash('sha256').update(body).digest('hex').slice(0, 16) }
}

function describe (outcome: Outcome): string {
  return outcome.kind === 'reject' ? `rejected (${outcome.reason.trim()})` : `accepted ${outcome.status}, ${outcome.body.length} body bytes`
}

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

function bytes (text: string | Buffer): Buffer {
  return typeof text === 'string' ? Buffer.from(text, 'latin1') : text
}

/** Well-formed: both accept it, with the same status, headers and body. */
function valid (name: string, text: string | Buffer): Case {
  return { name, bytes: bytes(text), expect: 'accept' }
}

/** Not what RFC 9112 allows, but harmless, and both read it alike. */
function tolerated (name: string, text: string): Case {
  return { name: `${name} (tolerated by both)`, bytes: bytes(text), expect: 'accept' }
}

/** Both refuse it. */
function malformed (name: string, text: string): Case {
  return { name, bytes: bytes(text), expect: 'reject' }
}

/** A deliberate difference, with its reason. */
function different (name: string, text: string, outcomes: { blob: Kind, node: Kind }, why: string): Case {
  return { name, bytes: bytes(text), expect: outcomes.blob, differs: { ...outcomes, why } }
}

const OK = 'HTTP/1.1 200 OK\r\n'
const CHUNKED = `${OK}Transfer-Encoding: chunked\r\n\r\n`
const binaryBody = Buffer.from(Array.from({ length: 3000 }, (_v, i) => (i * 131 + 7) % 256))

function padded (fields: number, bytesEach: number): string {
  return Array.from({ length: fields }, (_v, i) => `X-Pad-${i}: ${'p'.repeat(bytesEach)}\r\n`).join('')
}

const VALID: Case[] = [
  valid('Content-Length', `${OK}Content-Type: application/octet-stream\r\nDocker-Content-Digest: sha256:abc\r\nContent-Length: 11\r\n\r\nhello world`),
  valid('Content-Length 0', `${OK}Content-Length: 0\r\n\r\n`),
  valid('Content-Length with leading zeros', `${OK}Content-Length: 0005\r\n\r\nhello`),
  valid('Content-Length with whitespace around it', `${OK}Content-Length:\t5 \r\n\r\nhello`),
  valid('Content-Length, a binary body', Buffer.concat([bytes(`${OK}Content-Length: ${binaryBody.length}\r\n\r\n`), binaryBody])),
  valid('chunked with extensions and a trailer', `${OK}Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n` +
    '5;name=value\r\nhello\r\n' +
    '1;a=1;b="quoted;\\"value\t\xe9"\r\n,\r\n' +
    'B;flag\r\n 0123456789\r\n' +
    'b\r\n lower hex.\r\n' +
    '0;last=yes\r\nX-Checksum: abc\r\nX-Other: a: b\r\n\r\n'),
  valid('chunked, upper-case hex, no trailer', `${CHUNKED}1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n`),
  valid('chunked, sizes with leading zeros', `${CHUNKED}00000000000000003\r\nabc\r\n000\r\n\r\n`),
  valid('chunked, an empty body', `${CHUNKED}0\r\n\r\n`),
  valid('chunked, Transfer-Encoding in mixed case', `${OK}Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`),
  valid('chunked after another coding (the body stays encoded)', `${OK}Transfer-Encoding: gzip, chunked\r\n\r\n4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n`),
  valid('chunked in a second Transfer-Encoding line', `${OK}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`),
  valid('chunked not last: delimited by the close', `${OK}Transfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc`),
  valid('Transfer-Encoding identity: delimited by the close', `${OK}Transfer-Encoding: identity\r\n\r\nabc`),
  valid('Transfer-Encoding on HTTP/1.0', 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'),
  valid('close-delimited HTTP/1.1', `${OK}Content-Type: text/plain\r\n\r\nuntil the close`),
  valid('close-delimited HTTP/1.0', 'HTTP/1.0 200 OK\r\n\r\nold style body'),
  valid('close-delimited HTTP/1.0 with keep-alive', 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nbody'),
  valid('HTTP/1.0 with Content-Length', 'HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc'),
  valid('Connection: close with a length', `${OK}Connection: close\r\nContent-Length: 2\r\n\r\nhi`),
  valid('204 without a body', 'HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n'),
  valid('204 with a Content-Length: bytes after it are not its body', 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello'),
  valid('204 with Transfer-Encoding: bytes after it are not its body', 'HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'),
  valid('304 with a Content-Length but no body', 'HTTP/1.1 304 Not Modified\r\nETag: "abc"\r\nContent-Length: 1234\r\n\r\n'),
  valid('100 and 103 before the answer', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n' +
    `${OK}Content-Length: 2\r\n\r\nok`),
  valid('a 100 with a Content-Length (ignored)', `HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n${OK}Content-Length: 2\r\n\r\nok`),
  valid('404 with a JSON error body', 'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{"errors":[{"code":"NOPE"}]}'),
  valid('307 redirect without a body', 'HTTP/1.1 307 Temporary Redirect\r\nLocation: https://s3.example/blob?sig=x\r\nContent-Length: 0\r\n\r\n'),
  valid('status 599, a long reason', 'HTTP/1.1 599 Whatever you like, really\r\nContent-Length: 1\r\n\r\nx'),
  valid('status 999', 'HTTP/1.1 999 High\r\nContent-Length: 0\r\n\r\n'),
  valid('no reason phrase', 'HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx'),
  valid('an empty reason phrase', 'HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx'),
  valid('a reason phrase with spaces, a tab and obs-text', 'HTTP/1.1 200  O\tK \xe9\xff\r\nContent-Length: 1\r\n\r\nx'),
  valid('repeated fields: set-cookie, cookie, joined, single-valued',
    `${OK}Set-Cookie: a=1\r\nLink: </a>; rel=next\r\nContent-Type: application/json\r\nset-cookie: b=2; Path=/\r\n` +
    'LINK: </b>; rel=prev\r\nContent-Type: text/html\r\nX-Multi: 1\r\nx-multi: 2\r\nETag: "1"\r\nETag: "2"\r\n' +
    'Cookie: c=1\r\nCookie: d=2\r\nContent-Length: 1\r\n\r\nx'),
  valid('value whitespace, inner tabs, obs-text, NBSP and NEL at the edges, empty values',
    `${OK}X-Spaced: \t  padded value \t \r\nX-Tab: a\tb\r\nX-Latin1: caf\xe9 \x80\x9f\xff\r\nX-Nbsp: \xa0kept\xa0\r\n` +
    'X-Nel: \x85kept\x85\r\nX-Empty:\r\nX-Empty2: \r\nContent-Length: 1\r\n\r\nx'),
  valid('every tchar in a name', `${OK}X-!#$%&'*+.^_\`|~09az: v\r\nContent-Length: 1\r\n\r\nx`),
  valid('bytes after a Content-Length body are not part of it', `${OK}Content-Length: 5\r\n\r\nhello${OK}Content-Length: 4\r\n\r\nevil`),
  valid('a 32 KiB head', `${OK}${padded(32, 1000)}Content-Length: 1\r\n\r\nx`)
]

const TOLERATED: Case[] = [
  tolerated('NUL in the reason phrase, which is ignored', 'HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n'),
  tolerated('a control character in the reason phrase', 'HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n'),
  tolerated('an unknown coding: delimited by the close', `${OK}Transfer-Encoding: chunkedx\r\n\r\nabc`)
]

const MALFORMED: Case[] = [
  // Status lines
  malformed('nothing at all', ''),
  malformed('not HTTP', 'ICY 200 OK\r\nContent-Length: 0\r\n\r\n'),
  malformed('letters for status digits', 'HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n'),
  malformed('a two-digit status', 'HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n'),
  malformed('a four-digit status', 'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n'),
  malformed('no space after the status', 'HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n'),
  malformed('lower-case protocol', 'http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'),
  malformed('HTTP/2 as a version', 'HTTP/2 200\r\nContent-Length: 0\r\n\r\n'),
  malformed('HTTP/1.2', 'HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n'),
  malformed('two spaces before the status', 'HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n'),
  malformed('a tab before the status', 'HTTP/1.1\t200 OK\r\nContent-Length: 0\r\n\r\n'),
  malformed('a space before the version', ' HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'),
  malformed('a bare CR in the reason phrase', 'HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n'),
  malformed('a protocol switch', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n'),
  malformed('an interim response, then a bad status line', 'HTTP/1.1 103 Early\r\n\r\nHTTP/1.1 2OO OK\r\n\r\n'),
  // Field lines
  malformed('obs-fold with a space', `${OK}X-A: a\r\n  folded\r\nContent-Length: 0\r\n\r\n`),
  malformed('obs-fold with a tab', `${OK}X-A: a\r\n\tfolded\r\nContent-Length: 0\r\n\r\n`),
  malformed('whitespace before the first field', `${OK} X-A: b\r\nContent-Length: 0\r\n\r\n`),
  malformed('a space before the colon', `${OK}Content-Length : 0\r\n\r\n`),
  malformed('a line without a colon', `${OK}Content-Length 0\r\n\r\n`),
  malformed('an empty name', `${OK}: x\r\nContent-Length: 0\r\n\r\n`),
  malformed('a space inside a name', `${OK}X A: b\r\nContent-Length: 0\r\n\r\n`),
  malformed('a separator in a name', `${OK}X(A): b\r\nContent-Length: 0\r\n\r\n`),
  malformed('obs-text in a name', `${OK}X-\xe9: a\r\nContent-Length: 0\r\n\r\n`),
  malformed('a control character in a value', `${OK}X-A: a\x01b\r\nContent-Length: 0\r\n\r\n`),
  malformed('NUL in a value', `${OK}X-A: a\x00b\r\nContent-Length: 0\r\n\r\n`),
  malformed('a bare CR in a value', `${OK}X-A: a\rb\r\nContent-Length: 0\r\n\r\n`),
  malformed('DEL in a value', `${OK}X-A: a\x7fb\r\nContent-Length: 0\r\n\r\n`),
  malformed('VT at the edge of a value (not whitespace)', `${OK}X-A: \x0babc\x0b\r\nContent-Length: 0\r\n\r\n`),
  malformed('FF at the edge of a value (not whitespace)', `${OK}X-A: \x0cabc\r\nContent-Length: 0\r\n\r\n`),
  malformed('bare LF line ends', 'HTTP/1.1 200 OK\nContent-Length: 2\n\nhi'),
  malformed('a bare LF ending one field line', `${OK}X-A: b\nContent-Length: 2\r\n\r\nhi`),
  malformed('a bare LF ending the head', `${OK}Content-Length: 2\r\n\nhi`),
  malformed('a head over 64 KiB', `${OK}${padded(70, 1000)}Content-Length: 1\r\n\r\nx`),
  // Content-Length
  malformed('conflicting Content-Lengths', `${OK}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`),
  malformed('a repeated Content-Length, the same value', `${OK}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`),
  malformed('a Content-Length list', `${OK}Content-Length: 5, 5\r\n\r\nhello`),
  malformed('a non-numeric Content-Length', `${OK}Content-Length: 5a\r\n\r\nhello`),
  malformed('a negative Content-Length', `${OK}Content-Length: -1\r\n\r\n`),
  malformed('a Content-Length with a sign', `${OK}Content-Length: +5\r\n\r\nhello`),
  malformed('a space inside a Content-Length', `${OK}Content-Length: 1 2\r\n\r\nhello`),
  malformed('an empty Content-Length', `${OK}Content-Length: \r\n\r\nhello`),
  malformed('a Content-Length beyond 64 bits', `${OK}Content-Length: 99999999999999999999\r\n\r\nhello`),
  malformed('Transfer-Encoding and Content-Length', `${OK}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n`),
  malformed('Content-Length and Transfer-Encoding', `${OK}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`),
  // Chunked framing
  malformed('a chunk size in bad hex', `${CHUNKED}zz\r\nhello\r\n0\r\n\r\n`),
  malformed('a negative chunk size', `${CHUNKED}-1\r\nh\r\n0\r\n\r\n`),
  malformed('a chunk size with 0x', `${CHUNKED}0x5\r\nhello\r\n0\r\n\r\n`),
  malformed('a space before the chunk size', `${CHUNKED} 5\r\nhello\r\n0\r\n\r\n`),
  malformed('a space after the chunk size', `${CHUNKED}5 \r\nhello\r\n0\r\n\r\n`),
  malformed('a tab after the chunk size', `${CHUNKED}5\t\r\nhello\r\n0\r\n\r\n`),
  malformed('an empty chunk size', `${CHUNKED}\r\nhello\r\n0\r\n\r\n`),
  malformed('a chunk size beyond 64 bits', `${CHUNKED}10000000000000000\r\nhello\r\n0\r\n\r\n`),
  malformed('a bare LF after the chunk size', `${CHUNKED}5\nhello\r\n0\r\n\r\n`),
  malformed('data longer than its chunk size', `${CHUNKED}2\r\nhello\r\n0\r\n\r\n`),
  malformed('no CRLF after the chunk data', `${CHUNKED}3\r\nabc0\r\n\r\n`),
  malformed('a bare LF after the chunk data', `${CHUNKED}5\r\nhello\n0\r\n\r\n`),
  malformed('an extension without a name', `${CHUNKED}5;\r\nhello\r\n0\r\n\r\n`),
  malformed('whitespace after an extension', `${CHUNKED}5;a=b \r\nhello\r\n0\r\n\r\n`),
  malformed('an unclosed quote in an extension', `${CHUNKED}5;a="b\r\nhello\r\n0\r\n\r\n`),
  malformed('bytes after a quoted extension value', `${CHUNKED}5;a="b"c\r\nhello\r\n0\r\n\r\n`),
  malformed('an extension value neither token nor quoted', `${CHUNKED}5;a=b/c\r\nhello\r\n0\r\n\r\n`),
  malformed('DEL in a quoted extension value', `${CHUNKED}5;a="x\x7fy"\r\nhello\r\n0\r\n\r\n`),
  malformed('a bare LF in an extension', `${CHUNKED}5;a\nb\r\nhello\r\n0\r\n\r\n`),
  malformed('NUL in an extension', `${CHUNKED}5;a=\x00\r\nhello\r\n0\r\n\r\n`),
  malformed('a bare LF in the trailer', `${CHUNKED}5\r\nhello\r\n0\r\nX-T: 1\nX-U: 2\r\n\r\n`),
  malformed('a trailer line without a colon', `${CHUNKED}5\r\nhello\r\n0\r\nnot a field\r\n\r\n`),
  malformed('obs-fold in the trailer', `${CHUNKED}5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n`),
  malformed('NUL in a trailer value', `${CHUNKED}5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n`),
  malformed('a bad end of the chunked body', `${CHUNKED}5\r\nhello\r\n0\r\n\rX`),
  // Cut short by the close
  malformed('a head cut short', `${OK}Content-Length: 5\r\n`),
  malformed('a Content-Length body cut short', `${OK}Content-Length: 10\r\n\r\nhello`),
  malformed('a chunked body without its last chunk', `${CHUNKED}5\r\nhello\r\n`),
  malformed('a chunk cut short', `${CHUNKED}5\r\nhel`),
  malformed('a chunk size too large to be sent', `${CHUNKED}ffffffffffffffff\r\nabc`)
]

const RFC_BWS = 'RFC 9110 §5.6.3: a recipient MUST accept bad whitespace (BWS) where the grammar has it; llhttp refuses it. ' +
  'Whitespace cannot end the line, so both still agree where the chunk ends.'
const RFC_CHUNK_EXT = 'RFC 9112 §7.1.1: an extension is ";" name [ "=" value ], a name a token, a value a token or a quoted-string; ' +
  'llhttp lets this one through. No registry sends extensions; a malformed stream is an error, never a guess.'

const DIFFERENT: Case[] = [
  // The blob client stricter
  // llhttp 9.3 (Node 20) reads the body to the close; 9.4 (Node 24) refuses the response, as the blob client does.
  different('an empty Transfer-Encoding', `${OK}Transfer-Encoding: \r\n\r\nabc`, { blob: 'reject', node: (process.versions.llhttp ?? '0').localeCompare('9.4', undefined, { numeric: true }) < 0 ? 'accept' : 'reject' },
    'an empty Transfer-Encoding names no coding; newer llhttp refuses it too'),
  different('status 099', 'HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n', { blob: 'reject', node: 'accept' },
    'RFC 9110 §15: status codes run from 100 to 599; node:http\'s own server refuses to send one below 100 (ERR_HTTP_INVALID_STATUS_CODE).'),
  different('status 000', 'HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n', { blob: 'reject', node: 'accept' },
    'as status 099'),
  different('version HTTP/0.9 in a status line', 'HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n', { blob: 'reject', node: 'accept' },
    'the request was HTTP/1.1; HTTP/0.9 has no status line, so this is no HTTP/0.9 response either.'),
  different('version HTTP/2.0 in a status line', 'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n', { blob: 'reject', node: 'accept' },
    'RFC 9113 §3: HTTP/2 is never text on the wire; a 2.0 in an HTTP/1.1 status line is a broken upstream.'),
  different('a 101 without Upgrade', 'HTTP/1.1 101 Switching Protocols\r\n\r\n', { blob: 'reject', node: 'accept' },
    'RFC 9110 §15.2.2: a server switches only to a protocol the client asked for, and a blob GET asks for none; ' +
    'node:http hands out a bodiless 101 and leaves the connection to whatever follows.'),
  different('an extension name with "=" and no value', `${CHUNKED}5;a=\r\nhello\r\n0\r\n\r\n`, { blob: 'reject', node: 'accept' }, RFC_CHUNK_EXT),
  different('an extension value without a name', `${CHUNKED}5;=b\r\nhello\r\n0\r\n\r\n`, { blob: 'reject', node: 'accept' }, RFC_CHUNK_EXT),
  different('an empty extension', `${CHUNKED}5;;a\r\nhello\r\n0\r\n\r\n`, { blob: 'reject', node: 'accept' }, RFC_CHUNK_EXT),
  different('a head of 11,000 short fields (66 KB)', `${OK}${'A: b\r\n'.repeat(11_000)}Content-Length: 1\r\n\r\nx`, { blob: 'reject', node: 'accept' },
    'the blob client bounds the head\'s bytes as they arrive (64 KiB); node:http counts only the names, values and ' +
    'status llhttp hands over (22,000 bytes here), not line ends and separators.'),
  // The blob client more lenient
  different('whitespace before an extension\'s ";"', `${CHUNKED}5 ;a=b\r\nhello\r\n0\r\n\r\n`, { blob: 'accept', node: 'reject' }, RFC_BWS),
  different('whitespace after an extension\'s ";"', `${CHUNKED}5; a=b\r\nhello\r\n0\r\n\r\n`, { blob: 'accept', node: 'reject' }, RFC_BWS),
  different('whitespace around an extension\'s "="', `${CHUNKED}5;a = b\r\nhello\r\n0\r\n\r\n`, { blob: 'accept', node: 'reject' }, RFC_BWS),
  different('a Content-Length in the trailer', `${CHUNKED}5\r\nhello\r\n0\r\nContent-Length: 9\r\n\r\n`, { blob: 'accept', node: 'reject' },
    'RFC 9110 §6.5.1: framing fields do not belong in a trailer, and the blob client drops trailer fields unread, so ' +
    'this one frames nothing; llhttp applies its header rule (no Content-Length with Transfer-Encoding) to trailers too.'),
  // Both accept, different headers
  different('2,100 fields', `${OK}${Array.from({ length: 2100 }, (_v, i) => `X-${i}: v\r\n`).join('')}Content-Length: 0\r\n\r\n`, { blob: 'accept', node: 'accept' },
    'node:http keeps the first 2,000 fields (maxHeadersCount) and drops the rest silently; the blob client keeps ' +
    'every field of a head within its 64 KiB.')
]

const CORPUS = [...VALID, ...TOLERATED, ...MALFORMED, ...DIFFERENT]

// ---------------------------------------------------------------------------------------------
// Plans: how the bytes are cut into writes
// ---------------------------------------------------------------------------------------------

function splitAt (bytes: Buffer, at: number): Plan {
  return [bytes.subarray(0, at), bytes.subarray(at)]
}

function bytewise (bytes: Buffer): Plan {
  return Array.from({ length: bytes.length }, (_v, i) => bytes.subarray(i, i + 1))
}

/** Writes of 1 to `max` bytes. */
function randomly (bytes: Buffer, rand: () => number, max: number): Plan {
  const plan: Plan = []
  for (let at = 0; at < bytes.length;) {
    const size = 1 + Math.floor(rand() * Math.min(max, bytes.length - at))
    plan.push(bytes.subarray(at, at + size))
    at += size
  }
  return plan
}

// ---------------------------------------------------------------------------------------------
// The comparison
// ---------------------------------------------------------------------------------------------

type Fetch = (plan: Plan) => Promise<{ node: Outcome, blob: Outcome }>

async function bothClients (t: Test): Promise<Fetch> {
  const server = await rawServer(t)
  const agent = new http.Agent({ keepAlive: false })
  // No idle connections: each fetch gets a connection of its own, as node:http's does.
  const client = new BlobClient({ connectTimeoutMs: 5000, headersTimeoutMs: 5000, bodyTimeoutMs: 5000, maxIdlePerOrigin: 0, readBufferBytes: 16 * KiB })
  t.teardown(() => {
    agent.destroy()
    client.destroy()
  })
  return async (plan) => {
    const [node, blob] = await within(Promise.all([
      viaNode(agent, server.origin + server.serve(plan)),
      viaBlobClient(client, server.origin, server.serve(plan))
    ]), 10_000, 'both clients')
    return { node, blob }
  }
}

/** Null when the outcomes are what the case says; otherwise what went wrong. */
function mismatch (c: Case, { node, blob }: { node: Outcome, blob: Outcome }): string | null {
  const wantNode = c.differs?.node ?? c.expect
  const wantBlob = c.differs?.blob ?? c.expect
  if (node.kind !== wantNode || blob.kind !== wantBlob) {
    return `node:http ${describe(node)}, the blob client ${describe(blob)}; expected node:http to ${wantNode}, the blob client to ${wantBlob}`
  }
  if (node.kind === 'reject' || blob.kind === 'reject') return null
  const same = JSON.stringify(summary(node)) === JSON.stringify(summary(blob))
  if (c.differs === undefined && !same) return `both accepted, but read differently: node:http ${JSON.stringify(summary(node))}, the blob client ${JSON.stringify(summary(blob))}`
  if (c.differs !== undefined && same) return 'both accepted and read it alike: the listed difference is gone'
  return null
}

/** Fetches `c` with both clients under every plan, at most `parallel` at a time; the first mismatches. */
async function compare (fetch: Fetch, c: Case, plans: Array<[string, Plan]>, parallel = 8): Promise<string[]> {
  const problems: string[] = []
  let next = 0
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < plans.length) {
      const [how, plan] = plans[next++] as [string, Plan]
      const problem = mismatch(c, await fetch(plan))
      if (problem !== null && problems.length < 3) problems.push(`${how}: ${problem}`)
    }
  }))
  return problems
}

function title (c: Case): string {
  if (c.differs === undefined) return `${c.name}: both ${c.expect}`
  return `${c.name}: node:http ${c.differs.node}s, the blob client ${c.differs.blob}s — ${c.differs.why}`
}

t.test('in one write: each case as the corpus says, the same status, headers and body when both accept', async (t) => {
  const fetch = await bothClients(t)
  for (const c of CORPUS) {
    const outcome = await fetch([c.bytes])
    if (process.env.DIFFERENTIAL_TABLE !== undefined) t.comment(`${c.name}: node:http ${describe(outcome.node)} | blob client ${describe(outcome.blob)}`)
    const problem = mismatch(c, outcome)
    t.equal(problem, null, title(c))
  }
})

/** Cases small enough to be cut at every byte. */
const SMALL = CORPUS.filter((c) => c.bytes.length <= 512)

t.test('cut in two at every byte boundary: the same outcomes', async (t) => {
  const fetch = await bothClients(t)
  for (const c of SMALL) {
    const plans = Array.from({ length: Math.max(0, c.bytes.length - 1) }, (_v, i): [string, Plan] => [`cut at ${i + 1}`, splitAt(c.bytes, i + 1)])
    t.same(await compare(fetch, c, plans), [], c.name)
  }
})

t.test('one byte per write, and random cuts (seeded): the same outcomes', async (t) => {
  const fetch = await bothClients(t)
  const rand = prng(7)
  for (const c of CORPUS) {
    const plans: Array<[string, Plan]> = []
    if (c.bytes.length <= 4 * KiB) plans.push(['one byte per write', bytewise(c.bytes)])
    const max = c.bytes.length <= 4 * KiB ? 16 : 4 * KiB
    for (let i = 0; i < 4; i++) plans.push([`random cuts #${i} (1–${max} bytes)`, randomly(c.bytes, rand, max)])
    t.same(await compare(fetch, c, plans, 2), [], c.name)
  }
})

t.test('the corpus: every difference has its reason, every name is unique', async (t) => {
  t.same(CORPUS.filter((c) => c.differs !== undefined && c.differs.why.length < 10).map((c) => c.name), [], 'every difference has its reason')
  t.equal(new Set(CORPUS.map((c) => c.name)).size, CORPUS.length, 'case names are unique')
})
