import { IncomingMessage, type IncomingHttpHeaders } from 'node:http'
import { finished, type Readable, type Writable } from 'node:stream'
import type { BodyDestination } from './types.js'

const noop = (): void => {}

/** The destination of a body closed before the body ended. */
export function clientGone (): Error {
  return Object.assign(new Error('the client went away'), { code: 'ECLIENTGONE' })
}

/**
 * Writes chunks to `destination` with backpressure and ends it; rejects with ECLIENTGONE when the
 * destination closes first. Any async iterable: a Readable, or a generator reading a file.
 */
export async function writeChunks (chunks: AsyncIterable<Buffer>, destination: BodyDestination): Promise<void> {
  let closed = false
  const onClose = (): void => { closed = true }
  destination.on('close', onClose)
  try {
    for await (const chunk of chunks) {
      if (closed && !destination.writableFinished) throw clientGone()
      if (!destination.write(chunk, noop)) await drained(destination)
    }
    destination.end()
  } finally {
    destination.off('close', onClose)
  }
}

async function drained (destination: BodyDestination): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => { cleanup(); resolve() }
    const onClose = (): void => { cleanup(); reject(clientGone()) }
    const cleanup = (): void => {
      destination.off('drain', onDrain)
      destination.off('close', onClose)
    }
    destination.on('drain', onDrain)
    destination.on('close', onClose)
  })
}

/** A body read up to a limit: whole, or its first bytes and the unread rest. */
export interface LimitedRead {
  /** The body, or its first bytes when it is larger than the limit. */
  head: Buffer
  /** The unread rest, when the body is larger than the limit. */
  rest?: Readable
}

/** Reads a body up to `limit` bytes; a larger one keeps its unread rest for passing on. */
export async function readLimited (stream: Readable, limit: number): Promise<LimitedRead> {
  return await new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let length = 0
    const onData = (chunk: Buffer) => {
      chunks.push(chunk)
      length += chunk.length
      if (length > limit) {
        stream.pause()
        cleanup()
        resolve({ head: Buffer.concat(chunks), rest: stream })
      }
    }
    const onEnd = () => { cleanup(); resolve({ head: Buffer.concat(chunks) }) }
    const onError = (err: Error) => { cleanup(); reject(err) }
    const cleanup = () => {
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('error', onError)
    }
    stream.on('data', onData)
    stream.once('end', onEnd)
    stream.once('error', onError)
  })
}

/** The part already read, then the rest. */
export async function * concatenated (head: Buffer, rest: Readable): AsyncGenerator<Buffer> {
  yield head
  for await (const chunk of rest) yield chunk as Buffer
}

/** The first value of a response header. */
export function firstHeader (headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

/**
 * Streams a request body into `destination` (a request to the registry) with backpressure and
 * ends it; an error on either side destroys both, as stream.pipeline does.
 *
 * A body a client sent to the proxy arrives in chunks that node:http's parser copied into
 * ArrayBuffers of their own (one per socket read, up to 64 KiB), and that external memory is what
 * drove V8's garbage collection during uploads: about 30 full mark-compacts per GiB
 * (docs/performance.md, finding 5). Once the registry's socket has taken a chunk, nothing
 * reads it again, so its memory is released there and then (ArrayBuffer.prototype.transfer
 * detaches it) instead of waiting for a collection. Only such chunks are released: those of an
 * IncomingMessage, and only when they own their whole ArrayBuffer; any other body's chunks may be
 * its owner's to keep.
 */
export function sendBody (body: Readable, destination: Writable): void {
  let failed = false
  const fail = (err: Error): void => {
    if (failed) return
    failed = true
    body.destroy(err)
    destination.destroy(err)
  }
  const release = body instanceof IncomingMessage && canRelease
  body.on('data', (chunk: Buffer) => {
    if (!destination.write(chunk, release ? releaser(chunk) : undefined)) body.pause()
  })
  destination.on('drain', () => { body.resume() })
  body.once('end', () => { destination.end() })
  finished(body, { writable: false }, (err) => { if (err !== undefined && err !== null) fail(err) })
  finished(destination, { readable: false }, (err) => { if (err !== undefined && err !== null) fail(err) })
}

/** ES2024; Node 20 lacks it, and its chunks are then left to the garbage collector. */
const canRelease = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function'

function releaser (chunk: Buffer): ((err?: Error | null) => void) | undefined {
  const buffer = chunk.buffer
  if (chunk.byteOffset !== 0 || buffer.byteLength !== chunk.byteLength || !(buffer instanceof ArrayBuffer)) return undefined
  return () => { (buffer as ArrayBuffer & { transfer: (length: number) => ArrayBuffer }).transfer(0) }
}
