import { Readable } from 'node:stream'
import { DigestVerifier } from '../oci/digest.js'
import { writeChunks } from '../upstream/transport/body-io.js'
import type { ResponseBody } from '../upstream/transport/types.js'
import type { CacheFile } from './file-system.js'
import { FillFailedError, type Fill } from './fill.js'

/** Bytes read from a cache file per write to the client. */
const CHUNK_BYTES = 256 * 1024

/** Where a hit's bytes come from: a committed file, or a fill still being written. */
export interface ByteSource {
  size: number
  /** Bytes of [.., end] that may be sent now (exclusive end offset). */
  deliverable: (end: number) => number
  /** Resolves when more may be deliverable. */
  progress: () => Promise<void>
  failure: () => FillFailedError | undefined
  read: (buffer: Buffer, offset: number, length: number, position: number) => Promise<number>
  release: () => void
}

export function committedSource (file: CacheFile, size: number): ByteSource {
  let closed = false
  return {
    size,
    deliverable: () => size,
    progress: async () => {},
    failure: () => undefined,
    read: async (buffer, offset, length, position) => (await file.read(buffer, offset, length, position)).bytesRead,
    release: () => {
      if (closed) return
      closed = true
      file.close().catch(() => {})
    }
  }
}

export function fillSource (fill: Fill): ByteSource {
  const release = fill.acquire()
  return {
    size: fill.size,
    deliverable: (end) => fill.deliverable(end),
    progress: async () => { await fill.progress() },
    failure: () => fill.failure,
    read: async (buffer, offset, length, position) => await fill.read(buffer, offset, length, position),
    release
  }
}

export interface FileBodyOptions {
  source: ByteSource
  /** First and last byte (inclusive) to send. */
  start: number
  end: number
  /** Hash the whole file while sending it and hold its last chunk back unless it matches. */
  verify?: string | undefined
  /** A committed file found shorter than its entry or not matching its digest. */
  onCorrupt?: ((reason: string) => void) | undefined
  /** Bytes sent from the file. */
  onBytes?: ((bytes: number) => void) | undefined
  /**
   * The fill failed writing its file (a full disk): the rest, [position, end], from the registry
   * instead, so the client still gets its bytes.
   */
  resume?: ((position: number, end: number) => Promise<ResponseBody>) | undefined
}

/** A cache file (or the part of it a Range asks for) as a response body, in constant memory. */
export function fileBody (options: FileBodyOptions): ResponseBody {
  let used = false
  const chunks = (): AsyncGenerator<Buffer> => {
    used = true
    return readChunks(options)
  }
  return {
    pipeTo: async (destination) => { await writeChunks(chunks(), destination) },
    stream: () => Readable.from(chunks(), { objectMode: false }),
    discard: () => { if (!used) { used = true; options.source.release() } }
  }
}

async function * readChunks (options: FileBodyOptions): AsyncGenerator<Buffer> {
  const { source, end } = options
  const verifier = options.verify === undefined ? undefined : new DigestVerifier(options.verify, source.size)
  let position = options.start
  try {
    while (position <= end) {
      const limit = source.deliverable(end)
      if (limit <= position) {
        const failure = source.failure()
        if (failure !== undefined) {
          if (failure.reason === 'disk' && options.resume !== undefined) {
            const rest = await options.resume(position, end)
            for await (const chunk of rest.stream()) yield chunk as Buffer
            return
          }
          throw failure
        }
        await source.progress()
        continue
      }
      const length = Math.min(CHUNK_BYTES, end + 1 - position, limit - position)
      const buffer = Buffer.allocUnsafe(length)
      const read = await source.read(buffer, 0, length, position)
      if (read === 0) {
        options.onCorrupt?.(`the file ends at ${position} bytes, its entry says ${source.size}`)
        throw new FillFailedError('the cache file is shorter than its entry', 'verification')
      }
      position += read
      const chunk = read === length ? buffer : buffer.subarray(0, read)
      if (verifier !== undefined) {
        verifier.update(chunk)
        if (position > end) {
          try {
            verifier.verify()
          } catch (err) {
            options.onCorrupt?.((err as Error).message)
            throw new FillFailedError(`the cache file does not match its digest: ${(err as Error).message}`, 'verification', { cause: err })
          }
        }
      }
      options.onBytes?.(read)
      yield chunk
    }
  } finally {
    source.release()
  }
}
