import type { IncomingHttpHeaders } from 'node:http'
import net from 'node:net'
import { Readable } from 'node:stream'
import tls from 'node:tls'
import { BufferPool, type ReadBuffer } from './buffer-pool.js'
import { connectionListed } from '../headers.js'
import type { BodyDestination } from './types.js'

/**
 * An HTTP/1.1 client for blob downloads, the one place where the proxy moves gigabytes. It reads
 * the registry's socket into pooled buffers (`onread`), writes each buffer to the client and
 * reuses it once the kernel has taken the bytes, so a download allocates nothing per read. That
 * cuts the CPU a gigabyte costs to about a third (docs/performance.md). node:http's parser owns
 * its socket and cannot do this, hence a parser of our own for the response head and framing.
 *
 * Only bodiless GETs come here. Connections are kept alive per origin, at most
 * maxConnectionsPerOrigin of them (requests beyond wait their turn); TLS is always verified.
 */
export interface BlobClientOptions {
  connectTimeoutMs: number
  /** Time for the response head once the request is written. */
  headersTimeoutMs: number
  /** Longest pause of the registry inside a body; 0: none. A pause the client causes does not count. */
  bodyTimeoutMs: number
  /** Extra trusted CAs (tests); production adds them with NODE_EXTRA_CA_CERTS. */
  ca?: string | Buffer | undefined
  /** Size of the read buffers of plain-HTTP connections. */
  readBufferBytes?: number
  /**
   * Size of the read buffers of TLS connections; by default 64 KiB, or readBufferBytes if smaller.
   * Node hands TLS cleartext to `onread` 16 KiB at a time whatever the buffer (docs/performance.md).
   */
  tlsReadBufferBytes?: number
  /** Read buffers kept for reuse; beyond that they are left to the garbage collector. */
  maxFreeBuffers?: number
  /** Kept buffers that stay unused for a whole period of this length are let go. */
  bufferIdleMs?: number
  maxIdlePerOrigin?: number
  idleTimeoutMs?: number
  /**
   * Connections per origin, busy, idle or closing (as node:http's maxSockets, 256 in agents.ts);
   * requests beyond them wait for one to come free.
   */
  maxConnectionsPerOrigin?: number
  /** Longest wait for a free connection at the cap; by default the connect timeout. */
  queueTimeoutMs?: number
}

/** A failure talking to the registry, with a code the error mapping understands. */
export class UpstreamFailure extends Error {
  constructor (message: string, readonly code: string) {
    super(message)
    this.name = 'UpstreamFailure'
  }
}

export type { BodyDestination } from './types.js'

export interface BlobResponse {
  statusCode: number
  headers: IncomingHttpHeaders
  /**
   * Streams the body into `destination` in pooled buffers, pausing the registry while the client
   * is slow. Resolves when the body is complete and ended; rejects when the registry fails
   * mid-body or the destination closes early (the caller then cuts the client's response).
   */
  pipeTo: (destination: BodyDestination) => Promise<void>
  /** The body as a stream of copies: for small bodies (errors, redirects). */
  stream: () => Readable
  /** Drops the body and the connection. */
  discard: () => void
}

const MAX_HEAD_BYTES = 64 * 1024
/** The largest cleartext of one TLS record (RFC 8446 §5.1): what Node hands over per read at most. */
const TLS_RECORD_BYTES = 16 * 1024
const MAX_CHUNK_LINE_BYTES = 4 * 1024
const MAX_TRAILER_BYTES = 16 * 1024
const TCHAR = String.raw`[!#$%&'*+\-.^_\`|~0-9A-Za-z]`
const TOKEN = new RegExp(`^${TCHAR}+$`)
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/
/** RFC 9112 §5.1: a field value's leading and trailing whitespace is SP and HTAB only, not NBSP. */
const FIELD_WHITESPACE = /^[ \t]+|[ \t]+$/g
/**
 * RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ), a name a token, a
 * value a token or a quoted-string. BWS is accepted as RFC 9110 §5.6.3 requires (llhttp refuses it).
 */
const QUOTED_STRING = String.raw`"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"`
const CHUNK_EXTENSIONS = new RegExp(String.raw`^(?:[ \t]*;[ \t]*${TCHAR}+(?:[ \t]*=[ \t]*(?:${TCHAR}+|${QUOTED_STRING}))?)*$`)
const UNSAFE_IN_REQUEST = /[\r\n\0]/
/** Like node:http, a second value of these is dropped rather than joined. */
const SINGLE_VALUED = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host',
  'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards',
  'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent'
])

export interface ResponseHead {
  statusCode: number
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minorVersion: number
  headers: IncomingHttpHeaders
}

function invalidResponse (why: string): UpstreamFailure {
  return new UpstreamFailure(`the registry sent an invalid response: ${why}`, 'EBADRESPONSE')
}

/** Parses a response head (status line and fields, without the empty line that ends it). */
export function parseResponseHead (text: string): ResponseHead {
  const lines = text.split('\r\n')
  const status = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [^\r\n]*)?$/.exec(lines[0] ?? '')
  if (status === null) throw invalidResponse('bad status line')
  const headers: IncomingHttpHeaders = {}
  for (let i = 1; i < lines.length; i++) {
    const [name, value] = fieldLine(lines[i] as string)
    addHeader(headers, name.toLowerCase(), value)
  }
  return { statusCode: Number(status[2]), minorVersion: Number(status[1]), headers }
}

/** A header or trailer line split into name and value (RFC 9112 §5); anything else is refused. */
function fieldLine (line: string): [string, string] {
  const colon = line.indexOf(':')
  const name = colon === -1 ? '' : line.slice(0, colon)
  // A name must be a token: no obsolete line folding, no space before the colon.
  if (!TOKEN.test(name)) throw invalidResponse(`bad header line ${JSON.stringify(line.slice(0, 80))}`)
  const value = line.slice(colon + 1).replace(FIELD_WHITESPACE, '')
  if (INVALID_VALUE.test(value)) throw invalidResponse(`bad characters in the value of ${name}`)
  return [name, value]
}

function addHeader (headers: IncomingHttpHeaders, name: string, value: string): void {
  const existing = headers[name]
  if (existing === undefined) {
    headers[name] = name === 'set-cookie' ? [value] : value
  } else if (name === 'set-cookie') {
    (existing as string[]).push(value)
  } else if (name === 'content-length') {
    // RFC 9110 §8.6 lets a recipient take identical values as one; llhttp (node:http, undici)
    // refuses any second one. On framing the two parsers of this proxy must agree.
    throw invalidResponse(existing === value ? 'a repeated Content-Length' : 'conflicting Content-Length values')
  } else if (!SINGLE_VALUED.has(name)) {
    // As node:http joins them: cookies with "; ", everything else with ", ".
    headers[name] = `${existing as string}${name === 'cookie' ? '; ' : ', '}${value}`
  }
}

type Framing =
  | { kind: 'none' }
  | { kind: 'length', remaining: number }
  | { kind: 'chunked', decoder: ChunkedDecoder }
  | { kind: 'close' }

function framingOf (head: ResponseHead): Framing {
  if (head.statusCode === 204 || head.statusCode === 304) return { kind: 'none' }
  const transferEncoding = head.headers['transfer-encoding']
  if (transferEncoding !== undefined && head.headers['content-length'] !== undefined) {
    // RFC 9112 §6.3: a sign of request smuggling; node:http and undici refuse it too.
    throw invalidResponse('both Transfer-Encoding and Content-Length')
  }
  if (transferEncoding !== undefined) {
    const codings = transferEncoding.toLowerCase().split(',').map((c) => c.trim())
    // An empty Transfer-Encoding names no coding at all: refused, as llhttp 9.4 (Node 24) does.
    if (codings.every((c) => c === '')) throw invalidResponse('an empty Transfer-Encoding')
    // RFC 9112 §6.3: chunked last means chunked; any other coding is delimited by the close.
    return codings[codings.length - 1] === 'chunked' ? { kind: 'chunked', decoder: new ChunkedDecoder() } : { kind: 'close' }
  }
  const length = head.headers['content-length']
  if (length !== undefined) {
    if (!/^\d{1,15}$/.test(length)) throw invalidResponse(`bad Content-Length ${JSON.stringify(length.slice(0, 40))}`)
    const remaining = Number(length)
    return remaining === 0 ? { kind: 'none' } : { kind: 'length', remaining }
  }
  return { kind: 'close' }
}

function keepsAlive (head: ResponseHead, framing: Framing): boolean {
  if (framing.kind === 'close') return false
  const connection = connectionListed(head.headers.connection)
  return head.minorVersion === 1 ? !connection.includes('close') : connection.includes('keep-alive')
}

const CR = 13
const LF = 10

/**
 * Removes chunked framing, calling `emit` for each run of body bytes. Sizes, extensions and
 * trailers are bounded; a malformed stream is an error, never a guess.
 */
export class ChunkedDecoder {
  private state: 'size' | 'extension' | 'size-lf' | 'data' | 'data-cr' | 'data-lf' | 'trailer-start' | 'trailer-line' | 'trailer-lf' | 'end-lf' | 'done' = 'size'
  private size = 0
  /** Hex digits of the size after its leading zeros. */
  private digits = 0
  /** Bytes of the size line so far, digits included. */
  private lineBytes = 0
  private trailerBytes = 0
  /** The extensions of a size line, or a trailer line, as it arrives: checked whole at its CR. */
  private line = ''

  get done (): boolean {
    return this.state === 'done'
  }

  /** Decodes `buffer[start, end)`; returns where the chunked body ended, or `end` if it has not. */
  feed (buffer: Buffer, start: number, end: number, emit: (from: number, to: number) => void): number {
    let i = start
    while (i < end && this.state !== 'done') {
      if (this.state === 'data') {
        const to = Math.min(end, i + this.size)
        emit(i, to)
        this.size -= to - i
        i = to
        if (this.size === 0) this.state = 'data-cr'
        continue
      }
      const byte = buffer[i++] as number
      switch (this.state) {
        case 'size': {
          const digit = hexValue(byte)
          if (digit !== -1) {
            // 13 significant hex digits stay below 2^53; no blob is larger. Leading zeros are
            // allowed (RFC 9112 §7.1: 1*HEXDIG) and bounded with the line.
            if ((this.size > 0 || digit > 0) && ++this.digits > 13) throw invalidResponse('chunk size too large')
            if (++this.lineBytes > MAX_CHUNK_LINE_BYTES) throw invalidResponse('chunk size line too long')
            this.size = this.size * 16 + digit
          } else if (this.lineBytes > 0 && (byte === 0x3b || byte === 0x20 || byte === 0x09)) {
            this.state = 'extension'
            this.line = String.fromCharCode(byte)
          } else if (this.lineBytes > 0 && byte === CR) {
            this.state = 'size-lf'
          } else {
            throw invalidResponse('bad chunk size')
          }
          break
        }
        case 'extension':
          if (byte === CR) {
            // Checked whole: a bare LF, a NUL or an unclosed quote must not pass for an extension.
            if (!CHUNK_EXTENSIONS.test(this.line)) throw invalidResponse(`bad chunk extension ${JSON.stringify(this.line.slice(0, 80))}`)
            this.line = ''
            this.state = 'size-lf'
          } else if (++this.lineBytes > MAX_CHUNK_LINE_BYTES) {
            throw invalidResponse('chunk extension too long')
          } else {
            this.line += String.fromCharCode(byte)
          }
          break
        case 'size-lf':
          if (byte !== LF) throw invalidResponse('bad chunk size line')
          this.state = this.size === 0 ? 'trailer-start' : 'data'
          this.digits = 0
          this.lineBytes = 0
          break
        case 'data-cr':
          if (byte !== CR) throw invalidResponse('chunk longer than its size')
          this.state = 'data-lf'
          break
        case 'data-lf':
          if (byte !== LF) throw invalidResponse('chunk longer than its size')
          this.state = 'size'
          this.size = 0
          break
        case 'trailer-start':
          if (++this.trailerBytes > MAX_TRAILER_BYTES) throw invalidResponse('trailer too long')
          if (byte === CR) {
            this.state = 'end-lf'
          } else {
            this.state = 'trailer-line'
            this.line = String.fromCharCode(byte)
          }
          break
        case 'trailer-line':
          if (++this.trailerBytes > MAX_TRAILER_BYTES) throw invalidResponse('trailer too long')
          if (byte === CR) this.state = 'trailer-lf'
          else this.line += String.fromCharCode(byte)
          break
        case 'trailer-lf':
          if (byte !== LF) throw invalidResponse('bad trailer line')
          // Trailer fields are dropped, but only well-formed ones: the same rules as the head's.
          fieldLine(this.line)
          this.line = ''
          this.state = 'trailer-start'
          break
        case 'end-lf':
          if (byte !== LF) throw invalidResponse('bad end of chunked body')
          this.state = 'done'
          break
      }
    }
    return i
  }
}

function hexValue (byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x57
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x37
  return -1
}

/** Where the bytes of a body go, whichever the consumer chose. */
interface BodySink {
  /** `release` is called once `chunk` is no longer needed; false asks for a pause. */
  write: (chunk: Buffer, release: () => void) => boolean
  end: () => void
  fail: (err: Error) => void
}

interface Target {
  host: string
  port: number
  secure: boolean
  /** The Host header: the origin's host, with the port only when it is not the default. */
  authority: string
}

type Phase = 'head' | 'waiting' | 'body' | 'idle' | 'closed'

/** One connection to the registry and the exchange running on it. */
class Connection {
  readonly socket: net.Socket
  phase: Phase = 'head'
  /** Responses completed on this connection. */
  served = 0
  /** A byte of the current response has arrived: the request may have been processed. */
  answered = false
  /** The pool of this connection's scheme. */
  private readonly pool: BufferPool
  private headBytes: Buffer | null = null
  private waiter: { resolve: (response: BlobResponse) => void, reject: (err: Error) => void } | null = null
  private framing: Framing = { kind: 'none' }
  private keepAlive = false
  /** Body bytes that arrived with the head, before a consumer was attached. */
  private early: Buffer | null = null
  private sink: BodySink | null = null
  private paused = false
  /** The pooled buffer the socket reads into, when it reads a body. */
  private reading: ReadBuffer | null = null
  /** What the socket was handed for its next read: `reading`, or (TLS) the free part of it. */
  private readInto: Buffer | null = null
  /**
   * TLS: Node hands cleartext over one record (at most 16 KiB) per read, and one write per
   * record to the client cost more CPU than decrypting it (docs/performance.md, finding 10). So
   * consecutive records are read into the same buffer, one after another, and written together:
   * when the buffer is full, or at the end of the event loop's turn.
   */
  private readonly coalesce: boolean
  /** Bytes of `reading` already read into (coalescing). */
  private filled = 0
  /** Body bytes of `reading` not yet written, [pendingFrom, pendingTo) (coalescing). */
  private pendingFrom = 0
  private pendingTo = 0
  private flushScheduled = false

  constructor (private readonly client: BlobClient, readonly origin: string, target: Target) {
    this.pool = target.secure ? client.tlsPool : client.pool
    this.coalesce = target.secure
    const onread = { buffer: this.nextBuffer, callback: this.onRead }
    if (target.secure) {
      const session = client.sessions.get(origin)
      this.socket = tls.connect({
        host: target.host,
        port: target.port,
        ...(net.isIP(target.host) === 0 ? { servername: target.host } : {}),
        rejectUnauthorized: true,
        ALPNProtocols: ['http/1.1'],
        ...(client.options.ca === undefined ? {} : { ca: client.options.ca }),
        ...(session === undefined ? {} : { session }),
        // tls.connect passes onread to its socket; @types/node does not list it.
        onread
      } as tls.ConnectionOptions)
      this.socket.on('session', (data: Buffer) => client.sessions.set(origin, data))
    } else {
      this.socket = net.connect({ host: target.host, port: target.port, onread })
    }
    this.socket.setNoDelay(true)
    this.socket.setKeepAlive(true, 30_000)
    const connectTimer = setTimeout(() => {
      this.fail(new UpstreamFailure(`no connection within ${client.options.connectTimeoutMs} ms`, 'ECONNECT_TIMEOUT'))
    }, client.options.connectTimeoutMs)
    const connected = () => clearTimeout(connectTimer)
    this.socket.once(target.secure ? 'secureConnect' : 'connect', connected)
    this.socket.on('timeout', this.onTimeout)
    this.socket.on('end', this.onEnd)
    this.socket.on('error', (err) => this.fail(err))
    this.socket.on('close', () => {
      connected()
      this.fail(new UpstreamFailure('the registry closed the connection', 'ECONNRESET'))
      this.client.forget(this)
      this.releaseReading()
    })
  }

  /** Sends a request; resolves with the response once its head has arrived. */
  async send (head: string): Promise<BlobResponse> {
    // Handed over at the cap, it waited a turn: the registry may have closed it meanwhile.
    if (this.phase === 'closed') throw new UpstreamFailure('the connection was closed', 'ECONNRESET')
    this.phase = 'head'
    this.answered = false
    this.socket.setTimeout(this.client.options.headersTimeoutMs)
    return await new Promise((resolve, reject) => {
      this.waiter = { resolve, reject }
      this.socket.write(head)
    })
  }

  /** Called by the socket for the buffer of its next read. */
  private readonly nextBuffer = (): Buffer => {
    if (this.phase === 'body' || this.phase === 'waiting') {
      if (this.reading === null) {
        const buffer = this.pool.take()
        buffer.reading = true
        this.reading = buffer
        this.filled = 0
        this.pendingFrom = this.pendingTo = 0
      }
      this.readInto = this.filled === 0 ? this.reading.bytes : this.reading.bytes.subarray(this.filled)
      return this.readInto
    }
    this.readInto = null
    // Heads are copied out as they arrive, so all connections can share one small buffer.
    return this.client.headBuffer
  }

  private readonly onRead = (length: number, bytes: Buffer): boolean => {
    const buffer = this.reading !== null && this.readInto === bytes ? this.reading : null
    let more = false
    try {
      if (buffer === null && this.phase === 'body') {
        // Body bytes in the shared head buffer, which the next read of any connection
        // overwrites: they must be copied before a write holds on to them.
        more = this.consume(Buffer.from(bytes.subarray(0, length)), length, null)
      } else {
        more = this.consume(bytes, length, buffer)
      }
    } catch (err) {
      this.fail(err as Error)
      more = false
    }
    if (buffer !== null && buffer === this.reading) {
      const largest = this.client.largestRead
      if (this.coalesce) largest.tls = Math.max(largest.tls, length)
      else largest.plain = Math.max(largest.plain, length)
      if (!this.coalesce) {
        this.releaseReading()
      } else {
        this.filled += length
        // Full (no room for another whole record): what is pending goes now, the next read
        // gets a new buffer.
        if (buffer.bytes.length - this.filled < TLS_RECORD_BYTES) {
          if (!this.flush() && this.phase === 'body') {
            // Resumed by the destination's drain.
            this.paused = true
            more = false
          }
          this.releaseReading()
        }
      }
    }
    return more
  }

  /** Lets go of the buffer the socket reads into; it returns to the pool once its writes are done. */
  private releaseReading (): void {
    const buffer = this.reading
    if (buffer === null) return
    this.reading = null
    this.readInto = null
    buffer.reading = false
    this.pool.give(buffer)
  }

  /** Coalescing: writes the pending body bytes of `reading`; false asks for a pause. */
  private flush (): boolean {
    const buffer = this.reading
    const sink = this.sink
    if (buffer === null || sink === null || this.pendingTo === this.pendingFrom) return true
    const chunk = buffer.bytes.subarray(this.pendingFrom, this.pendingTo)
    this.pendingFrom = this.pendingTo
    buffer.holds++
    return sink.write(chunk, () => {
      buffer.holds--
      this.pool.give(buffer)
    })
  }

  /** The end of the event loop's turn: what was read in it is written. */
  private readonly flushLater = (): void => {
    this.flushScheduled = false
    if (this.phase !== 'body' || this.flush()) return
    if (!this.paused) {
      this.paused = true
      this.socket.pause()
    }
  }

  /** Returns false to stop reading until a consumer asks for more. */
  private consume (bytes: Buffer, length: number, buffer: ReadBuffer | null): boolean {
    if (this.phase === 'head') {
      this.answered = true
      return this.consumeHead(bytes.subarray(0, length))
    }
    if (this.phase === 'body') return this.consumeBody(bytes, 0, length, buffer)
    if (this.phase === 'waiting') {
      // A paused TLS socket still hands over the records it has decrypted: they are body bytes
      // for the consumer that has not attached yet.
      const copy = Buffer.from(bytes.subarray(0, length))
      this.early = this.early === null ? copy : Buffer.concat([this.early, copy])
      return false
    }
    // Bytes nobody asked for (idle, or a response still being looked at): the connection is
    // out of step with the registry.
    this.fail(invalidResponse('bytes after the end of a response'))
    return false
  }

  private consumeHead (bytes: Buffer): boolean {
    // Copied: the bytes sit in a shared or pooled buffer that the next read overwrites.
    let pending = this.headBytes === null ? Buffer.from(bytes) : Buffer.concat([this.headBytes, bytes])
    for (;;) {
      const end = pending.indexOf('\r\n\r\n')
      // The bound is on the head's bytes, wherever its end falls: without an end yet, the head
      // is at least as long as what is pending, less a terminator it might end with.
      if ((end === -1 ? pending.length - 3 : end) > MAX_HEAD_BYTES) throw invalidResponse('response head too large')
      if (end === -1) {
        this.headBytes = pending
        return true
      }
      const head = parseResponseHead(pending.toString('latin1', 0, end))
      pending = pending.subarray(end + 4)
      if (head.statusCode === 101) throw invalidResponse('unexpected protocol switch')
      // Informational answers (100 Continue, 103 Early Hints) precede the real one.
      if (head.statusCode < 200) continue
      this.headBytes = null
      this.framing = framingOf(head)
      this.keepAlive = keepsAlive(head, this.framing)
      this.early = pending.length === 0 ? null : pending
      this.phase = 'waiting'
      this.socket.setTimeout(0)
      const waiter = this.waiter
      this.waiter = null
      waiter?.resolve(this.response(head))
      // Nothing more is read until the consumer decides what to do with the body.
      return false
    }
  }

  private response (head: ResponseHead): BlobResponse {
    return {
      statusCode: head.statusCode,
      headers: head.headers,
      pipeTo: async (destination) => await this.pipeTo(destination),
      stream: () => this.stream(),
      discard: () => { this.destroy() }
    }
  }

  private async pipeTo (destination: BodyDestination): Promise<void> {
    return await new Promise((resolve, reject) => {
      let ended = false
      // Releases of the writes still in flight. Once the destination has closed, its socket is
      // closed and nothing will read those bytes again: they go back to the pool at once rather
      // than to the garbage collector with the writes that will never complete.
      const inFlight = new Set<() => void>()
      const onDrain = () => this.resume()
      const onClose = () => {
        destination.off('drain', onDrain)
        destination.off('close', onClose)
        for (const release of inFlight) release()
        if (!ended && !destination.writableFinished) this.fail(new UpstreamFailure('the client went away', 'ECLIENTGONE'))
      }
      destination.on('close', onClose)
      destination.on('drain', onDrain)
      this.attach({
        write: (chunk, release) => {
          let released = false
          const once = (): void => {
            if (released) return
            released = true
            inFlight.delete(once)
            release()
          }
          inFlight.add(once)
          return destination.write(chunk, once)
        },
        end: () => {
          ended = true
          destination.off('drain', onDrain)
          destination.end()
          resolve()
        },
        fail: (err) => {
          destination.off('drain', onDrain)
          reject(err)
        }
      })
    })
  }

  private stream (): Readable {
    const readable: Readable = new Readable({
      read: () => this.resume(),
      destroy: (err, callback) => {
        if (this.sink === sink) this.fail(new UpstreamFailure('the body was not read to its end', 'ECLIENTGONE'))
        callback(err)
      }
    })
    const sink: BodySink = {
      write: (chunk, release) => {
        const more = readable.push(Buffer.from(chunk))
        release()
        return more
      },
      end: () => { readable.push(null) },
      fail: (err) => { readable.destroy(err) }
    }
    this.attach(sink)
    return readable
  }

  private attach (sink: BodySink): void {
    if (this.phase !== 'waiting') {
      sink.fail(new UpstreamFailure('the body is no longer available', 'ECONNRESET'))
      return
    }
    this.sink = sink
    this.phase = 'body'
    const early = this.early
    this.early = null
    if (this.framing.kind === 'none') {
      // Bytes after a response without a body belong to no response.
      if (early !== null) this.keepAlive = false
      this.complete()
      return
    }
    let more = true
    if (early !== null) {
      try {
        more = this.consumeBody(early, 0, early.length, null)
      } catch (err) {
        this.fail(err as Error)
        return
      }
    }
    if (this.phase === 'body') {
      this.paused = !more
      if (more) this.read()
    }
  }

  private consumeBody (bytes: Buffer, start: number, end: number, buffer: ReadBuffer | null): boolean {
    const sink = this.sink as BodySink
    let more = true
    const write = (from: number, to: number): void => {
      if (from === to) return
      if (buffer !== null && this.coalesce && buffer === this.reading) {
        // `bytes` starts at `filled`: contiguous runs become one pending write.
        const at = this.filled + from
        if (at !== this.pendingTo) more = this.flush() && more
        if (this.pendingFrom === this.pendingTo) this.pendingFrom = at
        this.pendingTo = this.filled + to
        if (!this.flushScheduled) {
          this.flushScheduled = true
          setImmediate(this.flushLater)
        }
        return
      }
      if (buffer === null) {
        // Bytes still pending in the coalescing buffer were read before these.
        more = this.flush() && more
        // Not a pooled buffer (early bytes): they are this exchange's own.
        more = sink.write(bytes.subarray(from, to), noop) && more
        return
      }
      buffer.holds++
      more = sink.write(bytes.subarray(from, to), () => {
        buffer.holds--
        this.pool.give(buffer)
      }) && more
    }
    const framing = this.framing
    let used = end
    let finished = false
    if (framing.kind === 'length') {
      used = Math.min(end, start + framing.remaining)
      write(start, used)
      framing.remaining -= used - start
      finished = framing.remaining === 0
    } else if (framing.kind === 'chunked') {
      used = framing.decoder.feed(bytes, start, end, write)
      finished = framing.decoder.done
    } else if (framing.kind === 'close') {
      write(start, end)
    } else {
      used = start
      finished = true
    }
    // The registry sent more than the response it framed: do not trust the connection again.
    if (used < end) this.keepAlive = false
    if (finished) {
      this.complete()
      // Kept alive, the idle connection reads on: a close or stray bytes from the registry show.
      return this.phase === 'idle'
    }
    // Only the destination's drain (resume) lifts a pause: a TLS socket told to stop still hands
    // over the records it has decrypted, and over TLS those may only join a pending write.
    if (!more) this.paused = true
    return !this.paused
  }

  private read (): void {
    this.socket.setTimeout(this.client.options.bodyTimeoutMs)
    this.socket.resume()
  }

  private resume (): void {
    if (this.phase !== 'body' || !this.paused) return
    this.paused = false
    this.read()
  }

  private readonly onTimeout = (): void => {
    if (this.phase === 'head') {
      this.fail(new UpstreamFailure(`no response from the registry within ${this.client.options.headersTimeoutMs} ms`, 'EHEADERS_TIMEOUT'))
    } else if (this.phase === 'body' && !this.paused) {
      this.fail(new UpstreamFailure(`the registry paused the body for ${this.client.options.bodyTimeoutMs} ms`, 'EBODY_TIMEOUT'))
    } else if (this.phase === 'idle') {
      this.destroy()
    }
    // Paused for the client, or the consumer not yet attached: not the registry's pause.
  }

  private readonly onEnd = (): void => {
    if (this.phase === 'body' && this.framing.kind === 'close') {
      this.complete()
      return
    }
    if (this.phase === 'idle') {
      this.destroy()
      return
    }
    this.fail(new UpstreamFailure('the registry closed the connection before the response was complete', 'ECONNRESET'))
  }

  private complete (): void {
    // The body's last bytes, still pending, go before the end.
    this.flush()
    this.releaseReading()
    const sink = this.sink
    this.sink = null
    this.served++
    this.phase = 'idle'
    this.paused = false
    this.socket.setTimeout(0)
    if (this.keepAlive) this.client.release(this)
    else this.destroy()
    sink?.end()
  }

  /** Ends the exchange with an error; the connection is not used again. */
  fail (err: Error): void {
    if (this.phase === 'closed') return
    const wasIdle = this.phase === 'idle'
    this.phase = 'closed'
    const waiter = this.waiter
    const sink = this.sink
    this.waiter = null
    this.sink = null
    this.early = null
    this.socket.destroy()
    if (wasIdle) return
    waiter?.reject(err)
    sink?.fail(err)
  }

  destroy (): void {
    this.fail(new UpstreamFailure('the connection was closed', 'ECONNRESET'))
  }
}

function noop (): void {}

/** A request waiting for a connection at the cap. */
interface Waiter {
  /** A retry after a stale connection: only a new connection will do. */
  fresh: boolean
  resolve: (connection: Connection) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
}

export class BlobClient {
  readonly options: Required<Omit<BlobClientOptions, 'ca' | 'queueTimeoutMs'>> & Pick<BlobClientOptions, 'ca'> & { queueTimeoutMs: number }
  /** Read buffers of plain-HTTP connections. */
  readonly pool: BufferPool
  /** Read buffers of TLS connections. */
  readonly tlsPool: BufferPool
  /** The largest read of a body so far, per scheme; for tests and metrics. */
  readonly largestRead = { plain: 0, tls: 0 }
  /** Response heads are read here and copied out at once. */
  readonly headBuffer = Buffer.allocUnsafeSlow(16 * 1024)
  readonly sessions = new Map<string, Buffer>()
  private readonly idle = new Map<string, Connection[]>()
  private readonly targets = new Map<string, Target>()
  private readonly connections = new Set<Connection>()
  /** Connections per origin until their sockets have closed: what the cap counts. */
  private readonly counts = new Map<string, number>()
  private readonly waiting = new Map<string, Waiter[]>()
  private closed = false

  constructor (options: BlobClientOptions) {
    const readBufferBytes = options.readBufferBytes ?? 1024 * 1024
    this.options = {
      // 1 MiB reads: a tenth more throughput than 256 KiB (fewer reads and writes per GiB), at
      // about 2 MiB per running download (the buffer read into and the one being written).
      readBufferBytes,
      // Over TLS every read is 16 KiB or less, so a larger buffer saves nothing and only weighs on
      // V8's external memory; 64 KiB leaves room should Node hand over more (docs/performance.md).
      tlsReadBufferBytes: Math.min(readBufferBytes, 64 * 1024),
      maxFreeBuffers: 64,
      maxIdlePerOrigin: 32,
      idleTimeoutMs: 30_000,
      bufferIdleMs: 30_000,
      maxConnectionsPerOrigin: 256,
      ...options,
      queueTimeoutMs: options.queueTimeoutMs ?? options.connectTimeoutMs
    }
    this.pool = new BufferPool(this.options.readBufferBytes, this.options.maxFreeBuffers, this.options.bufferIdleMs)
    this.tlsPool = new BufferPool(this.options.tlsReadBufferBytes, this.options.maxFreeBuffers, this.options.bufferIdleMs)
  }

  /**
   * GETs `path` (path and query) from `origin`. A kept-alive connection the registry closed while
   * idle fails before any answer; the request is then sent once more on a new connection.
   */
  async get (origin: string, path: string, headers: Record<string, string | string[]>): Promise<BlobResponse> {
    if (this.closed) throw new UpstreamFailure('the proxy is shutting down', 'ECLOSED')
    const target = this.targetOf(origin)
    const head = requestHead(path, target.authority, headers)
    const connection = await this.acquire(origin, target, false)
    try {
      return await connection.send(head)
    } catch (err) {
      if (connection.served === 0 || connection.answered || !isReset(err)) throw err
    }
    return await (await this.acquire(origin, target, true)).send(head)
  }

  /** A connection whose response completed and may carry the next request. */
  release (connection: Connection): void {
    const queue = this.waiting.get(connection.origin) ?? []
    const next = queue.findIndex((waiter) => !waiter.fresh)
    if (!this.closed && next !== -1) {
      // Straight to the next request waiting at the cap; it reads on for stray bytes meanwhile.
      const [waiter] = queue.splice(next, 1) as [Waiter]
      clearTimeout(waiter.timer)
      connection.socket.resume()
      waiter.resolve(connection)
      return
    }
    const idle = this.idle.get(connection.origin) ?? []
    // Only retries wait: they need a new connection, and this one's slot makes room for it.
    if (this.closed || idle.length >= this.options.maxIdlePerOrigin || queue.length > 0) {
      connection.destroy()
      return
    }
    idle.push(connection)
    this.idle.set(connection.origin, idle)
    connection.socket.setTimeout(this.options.idleTimeoutMs)
    connection.socket.unref()
    connection.socket.resume()
  }

  /** Called once a connection's socket has closed: its slot is free. */
  forget (connection: Connection): void {
    if (!this.connections.delete(connection)) return
    const origin = connection.origin
    this.counts.set(origin, (this.counts.get(origin) ?? 1) - 1)
    const idle = this.idle.get(origin)
    const at = idle?.indexOf(connection) ?? -1
    if (at !== -1) idle?.splice(at, 1)
    this.dispatch(origin)
  }

  /** Connections open now, idle or busy; for tests and metrics. */
  get openConnections (): number {
    return this.connections.size
  }

  /** Requests waiting for a connection at the cap; for tests and metrics. */
  get queuedRequests (): number {
    let queued = 0
    for (const queue of this.waiting.values()) queued += queue.length
    return queued
  }

  destroy (): void {
    this.closed = true
    for (const queue of this.waiting.values()) {
      for (const waiter of queue.splice(0)) {
        clearTimeout(waiter.timer)
        waiter.reject(new UpstreamFailure('the proxy is shutting down', 'ECLOSED'))
      }
    }
    for (const connection of [...this.connections]) connection.destroy()
  }

  /** An idle connection, a new one below the cap, or the next one to come free within the queue timeout. */
  private async acquire (origin: string, target: Target, fresh: boolean): Promise<Connection> {
    const ready = fresh ? undefined : this.takeIdle(origin)
    if (ready !== undefined) return ready
    if ((this.counts.get(origin) ?? 0) < this.options.maxConnectionsPerOrigin) return this.open(origin, target)
    // A retry at the cap: an idle connection gives its slot up (it frees once its socket closes).
    if (fresh) this.idle.get(origin)?.shift()?.destroy()
    return await new Promise((resolve, reject) => {
      const queue = this.waiting.get(origin) ?? []
      this.waiting.set(origin, queue)
      const waiter: Waiter = {
        fresh,
        resolve,
        reject,
        timer: setTimeout(() => {
          queue.splice(queue.indexOf(waiter), 1)
          const { maxConnectionsPerOrigin, queueTimeoutMs } = this.options
          reject(new UpstreamFailure(`no free connection to the registry within ${queueTimeoutMs} ms (all ${maxConnectionsPerOrigin} busy)`, 'EQUEUE_TIMEOUT'))
        }, this.options.queueTimeoutMs)
      }
      queue.push(waiter)
    })
  }

  /** Gives freed slots to the requests waiting for them, in order. */
  private dispatch (origin: string): void {
    const queue = this.waiting.get(origin) ?? []
    const target = this.targets.get(origin)
    if (target === undefined) return
    while (!this.closed && queue.length > 0) {
      const waiter = queue[0] as Waiter
      const connection = (waiter.fresh ? undefined : this.takeIdle(origin)) ??
        ((this.counts.get(origin) ?? 0) < this.options.maxConnectionsPerOrigin ? this.open(origin, target) : undefined)
      if (connection === undefined) return
      queue.shift()
      clearTimeout(waiter.timer)
      waiter.resolve(connection)
    }
  }

  private takeIdle (origin: string): Connection | undefined {
    const idle = this.idle.get(origin)
    for (let connection = idle?.pop(); connection !== undefined; connection = idle?.pop()) {
      if (connection.phase !== 'idle' || connection.socket.destroyed) continue
      connection.socket.ref()
      return connection
    }
    return undefined
  }

  private open (origin: string, target: Target): Connection {
    const connection = new Connection(this, origin, target)
    this.connections.add(connection)
    this.counts.set(origin, (this.counts.get(origin) ?? 0) + 1)
    return connection
  }

  private targetOf (origin: string): Target {
    let target = this.targets.get(origin)
    if (target === undefined) {
      const url = new URL(origin)
      const secure = url.protocol === 'https:'
      const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
      target = { host, port: url.port === '' ? (secure ? 443 : 80) : Number(url.port), secure, authority: url.host }
      this.targets.set(origin, target)
    }
    return target
  }
}

function isReset (err: unknown): boolean {
  const code = (err as { code?: string }).code
  return code === 'ECONNRESET' || code === 'EPIPE'
}

function requestHead (path: string, authority: string, headers: Record<string, string | string[]>): string {
  if (UNSAFE_IN_REQUEST.test(path)) throw new UpstreamFailure('the request target has line breaks', 'EBADREQUEST')
  let head = `GET ${path} HTTP/1.1\r\nhost: ${authority}\r\n`
  for (const name in headers) {
    const value = headers[name] as string | string[]
    for (const one of Array.isArray(value) ? value : [value]) {
      if (!TOKEN.test(name) || UNSAFE_IN_REQUEST.test(one)) throw new UpstreamFailure(`the request header ${name} cannot be sent`, 'EBADREQUEST')
      head += `${name}: ${one}\r\n`
    }
  }
  return `${head}\r\n`
}
