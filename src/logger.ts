import { writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { isatty } from 'node:tty'
import pino, { type DestinationStream, type Logger, type LevelWithSilent } from 'pino'

/**
 * Every place a credential could appear in a log object. Fastify's request serializer logs no
 * headers, and the proxy never logs a token on purpose; this is the net under both.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["proxy-authorization"]',
  '*.headers.authorization',
  'token',
  '*.token',
  'authorizationToken',
  '*.authorizationToken',
  'password',
  '*.password'
]

/** How long one log line may wait for a full pipe (EAGAIN) before it is dropped. */
export const STALL_LIMIT_MS = 1000
const STALL_STEP_MS = 10

/** Lines waiting for the end of the event loop's turn are written at once from this size on. */
export const BATCH_LIMIT_BYTES = 64 * 1024

export interface StdioDestinationDeps {
  /** fs.writeSync: returns the bytes written, throws on failure. */
  write?: (fd: number, data: Uint8Array) => number
  /** Blocks the thread for this long (the write is synchronous, so the wait is too). */
  wait?: (ms: number) => void
  /** Runs the flush of the lines written so far later in this turn of the event loop (setImmediate). */
  schedule?: (flush: () => void) => void
}

export interface FailedDescriptor { fd: number, code: string }

const waitCell = new Int32Array(new SharedArrayBuffer(4))
const blockFor = (ms: number): void => { Atomics.wait(waitCell, 0, 0, ms) }

/**
 * Log lines to the first of some file descriptors that still works (stdout, then stderr).
 *
 * Lines are gathered and written together once per turn of the event loop (setImmediate), or as
 * soon as BATCH_LIMIT_BYTES wait: under load one write(2) carries many requests' lines instead of
 * one each, the cost issue 15 measured. The write itself stays synchronous, so `flush()` at exit
 * (createLogger registers it) loses nothing: what the process logged is written before it ends.
 * pino's asynchronous destination was not taken: SonicBoom's flushSync retries a failed write
 * forever, 100 ms apart, so a hung-up terminal (EIO) would keep the process from ending.
 *
 * A write that fails for any reason but a full pipe (EPIPE from a reader that went away, EIO
 * from a hung-up terminal, EBADF) gives that descriptor up for good: nothing retries it, so a
 * dead terminal cannot keep the process busy.
 */
export class StdioDestination {
  readonly #fds: number[]
  readonly #write: (fd: number, data: Uint8Array) => number
  readonly #wait: (ms: number) => void
  readonly #schedule: (flush: () => void) => void
  readonly #flush = (): void => { this.flush() }
  #pending: string[] = []
  #pendingBytes = 0
  #scheduled = false
  #dropped = 0
  /** Called when a descriptor failed, with the one in use from now on (undefined: none). */
  onFailover: ((failed: FailedDescriptor, next: number | undefined) => void) | undefined

  constructor (fds: number[] = [1, 2], deps: StdioDestinationDeps = {}) {
    this.#fds = [...fds]
    this.#write = deps.write ?? writeSync
    this.#wait = deps.wait ?? blockFor
    this.#schedule = deps.schedule ?? setImmediate
  }

  /** The descriptor lines go to now; undefined once every one has failed. */
  get fd (): number | undefined {
    return this.#fds[0]
  }

  /** Lines given up because a full pipe did not take them within STALL_LIMIT_MS. */
  get dropped (): number {
    return this.#dropped
  }

  /** Queues a line; it is written by the next flush, at the latest at the end of this turn. */
  write (line: string): void {
    this.#pending.push(line)
    this.#pendingBytes += line.length
    if (this.#pendingBytes >= BATCH_LIMIT_BYTES) {
      this.flush()
    } else if (!this.#scheduled) {
      this.#scheduled = true
      this.#schedule(this.#flush)
    }
  }

  /** Writes every queued line now, synchronously (pino's `logger.flush(callback)` lands here). */
  flush (callback?: (err?: Error) => void): void {
    this.#scheduled = false
    const lines = this.#pending
    if (lines.length > 0) {
      this.#pending = []
      this.#pendingBytes = 0
      this.#writeAll(lines.length === 1 ? lines[0] as string : lines.join(''), lines.length)
    }
    callback?.()
  }

  #writeAll (text: string, lines: number): void {
    const data = Buffer.from(text)
    let offset = 0
    let stalledMs = 0
    while (offset < data.length) {
      const fd = this.#fds[0]
      if (fd === undefined) return
      try {
        offset += this.#write(fd, data.subarray(offset))
        stalledMs = 0
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'UNKNOWN'
        if (code === 'EAGAIN') {
          // A full pipe (Node makes stdio pipes non-blocking): its reader is slow, not gone.
          if (stalledMs >= STALL_LIMIT_MS) {
            this.#dropped += lines
            return
          }
          this.#wait(STALL_STEP_MS)
          stalledMs += STALL_STEP_MS
          continue
        }
        this.#fds.shift()
        // The lines go to the next descriptor whole.
        offset = 0
        this.onFailover?.({ fd, code }, this.#fds[0])
      }
    }
  }
}

const atExit = new Set<StdioDestination>()

/** Whatever is queued when the process ends (a fatal error, a signal's exit) is written first. */
function flushedAtExit (destination: StdioDestination): void {
  if (atExit.size === 0) process.on('exit', () => { for (const queued of atExit) queued.flush() })
  atExit.add(destination)
}

const FD_NAMES: Record<number, string> = { 1: 'stdout', 2: 'stderr' }
const fdName = (fd: number): string => FD_NAMES[fd] ?? `fd ${fd}`

export function createLogger (level: LevelWithSilent, destination?: DestinationStream): Logger {
  const options = {
    level,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    base: { pid: process.pid }
  }
  if (destination !== undefined) return pino(options, destination)
  const stdio = new StdioDestination([1, 2])
  flushedAtExit(stdio)
  // Pretty in this thread when stdout is a terminal. pino-pretty's transport would run a worker
  // thread whose flush at exit never gives up on a terminal that has gone away.
  let stream: DestinationStream = stdio
  if (isatty(1)) {
    // Loaded only for a terminal: a proxy logging to a pipe or file never needs it.
    const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty')
    const prettify = prettyFactory({ translateTime: 'SYS:standard', ignore: 'pid,hostname', colorize: true })
    stream = { write: (line: string) => { stdio.write(prettify(line)) } }
  }
  const logger = pino(options, stream)
  stdio.onFailover = (failed, next) => {
    // Once pino's current write has returned: it does not expect to be called from inside one.
    if (next !== undefined) {
      process.nextTick(() => logger.warn({ failedStream: fdName(failed.fd), code: failed.code }, `logging to ${fdName(next)}: ${fdName(failed.fd)} failed (${failed.code})`))
    }
  }
  return logger
}
