import { Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import type { Logger } from 'pino'
import { DigestMismatchError, DigestVerifier } from '../oci/digest.js'
import type { ResponseBody } from '../upstream/transport/types.js'
import type { CacheFile } from './file-system.js'
import type { CacheStore, Reservation, StoredHeaders } from './store.js'

/** Why a fill ended without a verified file. */
export type FillFailureReason = 'verification' | 'upstream' | 'disk'

export class FillFailedError extends Error {
  override name = 'FillFailedError'
  constructor (message: string, readonly reason: FillFailureReason, options?: { cause?: unknown }) {
    super(message, options)
  }
}

export interface FillStart {
  body: ResponseBody
  size: number
  headers: StoredHeaders
  temp: { path: string, file: CacheFile }
  reservation: Reservation
  store: CacheStore
  log: Logger
  /** Called once, when the fill ends: committed, or why not. */
  onEnd?: (failure: FillFailedError | undefined, fill: Fill) => void
}

/**
 * One upstream download of one digest into a temporary file, verified as it is written and
 * committed by rename only when digest and size match. Every client of that digest — the one
 * whose request started it and any that arrive meanwhile — reads the file as it grows, so the
 * fetch runs at the registry's pace, not the slowest client's, and a client that leaves takes
 * nothing from the others. When every client has left, the fill still finishes (the next pull is
 * served from it); it is bounded by the cache size like any other.
 */
export class Fill {
  /** Resolves true once bytes are coming, false when the request did not lead to a fill. */
  readonly started: Promise<boolean>
  size = 0
  headers: StoredHeaders = {}
  #resolveStarted!: (started: boolean) => void
  #written = 0
  #state: 'starting' | 'filling' | 'complete' | 'failed' = 'starting'
  #failure: FillFailedError | undefined
  #waiters: Array<() => void> = []
  #file: CacheFile | undefined
  #refs = 0
  #ended = false

  constructor (readonly digest: string) {
    this.started = new Promise((resolve) => { this.#resolveStarted = resolve })
  }

  get written (): number { return this.#written }
  get complete (): boolean { return this.#state === 'complete' }
  get failure (): FillFailedError | undefined { return this.#failure }
  get running (): boolean { return this.#state === 'starting' || this.#state === 'filling' }

  /** The request that would have started it was answered without a fill (an error, no room). */
  abandon (): void {
    this.#state = 'failed'
    this.#resolveStarted(false)
  }

  begin (start: FillStart): void {
    this.size = start.size
    this.headers = start.headers
    this.#file = start.temp.file
    this.#state = 'filling'
    this.#resolveStarted(true)
    this.#run(start).catch((err: unknown) => { start.log.error({ err }, 'cache fill failed unexpectedly') })
  }

  /**
   * Bytes a reader of [.., end] may take now. The last byte of the blob waits for the
   * verification, so no client ever holds a complete-looking body that did not match; a range
   * that stops short of the end waits for the whole file to be verified.
   */
  deliverable (end: number): number {
    if (this.#state === 'complete') return this.size
    if (end < this.size - 1) return 0
    return Math.min(this.#written, this.size - 1)
  }

  /** Resolves when more bytes are written, or the fill ends. */
  async progress (): Promise<void> {
    if (!this.running) return
    await new Promise<void>((resolve) => { this.#waiters.push(resolve) })
  }

  /** A reader's hold on the open file; the file closes when the fill has ended and every reader let go. */
  acquire (): () => void {
    this.#refs++
    let released = false
    return () => {
      if (released) return
      released = true
      this.#refs--
      this.#closeIfIdle()
    }
  }

  async read (buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    const file = this.#file
    if (file === undefined) throw new FillFailedError('the cache file is closed', 'disk')
    return (await file.read(buffer, offset, length, position)).bytesRead
  }

  #wake (): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const wake of waiters) wake()
  }

  #closeIfIdle (): void {
    if (this.#refs > 0 || !this.#ended || this.#file === undefined) return
    const file = this.#file
    this.#file = undefined
    file.close().catch(() => {})
  }

  async #run (start: FillStart): Promise<void> {
    const verifier = new DigestVerifier(this.digest, start.size)
    const file = start.temp.file
    let diskError: Error | undefined
    const destination = new Writable({
      highWaterMark: 1024 * 1024,
      write: (chunk: Buffer, _encoding, callback) => {
        if (this.#written + chunk.length > start.size) {
          callback(new DigestMismatchError(`more than the ${start.size} bytes announced for ${this.digest}`, this.digest, 'unknown'))
          return
        }
        verifier.update(chunk)
        writeAll(file, chunk, this.#written).then(() => {
          this.#written += chunk.length
          this.#wake()
          callback()
        }, (err: Error) => {
          diskError = err
          callback(err)
        })
      },
      final: (callback) => {
        try {
          verifier.verify()
          callback()
        } catch (err) {
          callback(err as Error)
        }
      }
    })
    // Its errors are read from `finished` and diskError below, not as events.
    destination.on('error', () => {})
    let failure: FillFailedError | undefined
    try {
      await start.body.pipeTo(destination)
      await finished(destination)
    } catch (err) {
      destination.destroy()
      failure = diskError !== undefined
        ? new FillFailedError(`the cache file could not be written: ${diskError.message}`, 'disk', { cause: diskError })
        : err instanceof DigestMismatchError
          ? new FillFailedError(`the registry sent bytes that do not match ${this.digest}: ${err.message}`, 'verification', { cause: err })
          : new FillFailedError(`the registry failed in the middle of ${this.digest}`, 'upstream', { cause: err })
    }
    if (failure === undefined) {
      try {
        await start.store.commit(start.temp.path, { digest: this.digest, size: start.size, headers: start.headers }, start.reservation)
      } catch (err) {
        start.log.warn({ digest: this.digest, reason: (err as Error).message }, 'a verified cache file could not be committed')
        await start.store.removeTemp(start.temp.path)
        failure = new FillFailedError(`the cache file could not be committed: ${(err as Error).message}`, 'disk', { cause: err })
      }
      // Verified: readers finish from the open file whether or not the commit worked; after it, so
      // a client that has its last byte finds the entry committed.
      this.#state = 'complete'
      this.#wake()
    } else {
      start.body.discard()
      start.reservation.release()
      this.#failure = failure
      this.#state = 'failed'
      this.#wake()
      await start.store.removeTemp(start.temp.path)
    }
    this.#ended = true
    this.#closeIfIdle()
    start.onEnd?.(failure, this)
  }
}

async function writeAll (file: CacheFile, chunk: Buffer, position: number): Promise<void> {
  let offset = 0
  while (offset < chunk.length) {
    const { bytesWritten } = await file.write(chunk, offset, chunk.length - offset, position + offset)
    if (bytesWritten === 0) throw Object.assign(new Error('no bytes written'), { code: 'EIO' })
    offset += bytesWritten
  }
}
