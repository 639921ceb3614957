import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { BodyDestination } from './types.js'

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
      if (!destination.write(chunk, () => {})) await drained(destination)
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
