/**
 * Read buffers that are used again instead of allocated for every socket read. Node hands each
 * read a fresh 64 KiB Buffer; at a gigabyte per second that is 16,000 external allocations a
 * second, and V8 answers them with full mark-compacts, which cost more CPU than moving the
 * bytes (docs/performance.md, finding 1).
 *
 * A buffer is in the pool or out of it, never both. Out of it, the socket may be reading into it
 * (over TLS, into its free part while writes still send the part already filled) and writes may
 * still be sending its bytes to a client; `give` after each of them lets go, and it returns once
 * none holds it. A buffer the pool already holds is never added twice, so no two connections can
 * share it.
 */
export class ReadBuffer {
  /** Writes of this buffer's bytes not yet handed to the kernel. */
  holds = 0
  /** A socket reads into it (or its callback is running). */
  reading = false
  pooled = false

  constructor (readonly bytes: Buffer) {}
}

export class BufferPool {
  private readonly free: ReadBuffer[] = []
  private allocated = 0
  /** The fewest free buffers since the last trim: that many were not needed in the period. */
  private lowWater = 0
  private trimmer: NodeJS.Timeout | undefined

  /**
   * Up to `maxFree` buffers are kept for the next reads, as many as the busiest moment needed;
   * every `idleMs`, the ones that stayed free for the whole period are let go, so a burst of
   * downloads does not pin its buffers for the life of the process.
   */
  constructor (readonly size: number, private readonly maxFree: number, private readonly idleMs = 30_000) {}

  take (): ReadBuffer {
    const buffer = this.free.pop()
    if (this.free.length < this.lowWater) this.lowWater = this.free.length
    if (buffer !== undefined) {
      buffer.pooled = false
      return buffer
    }
    this.allocated++
    // Slow: outside Node's shared 8 KiB slab, so a pooled buffer never pins other allocations.
    return new ReadBuffer(Buffer.allocUnsafeSlow(this.size))
  }

  /** Returns a buffer once nothing reads into it and no write still needs its bytes. */
  give (buffer: ReadBuffer): void {
    if (buffer.pooled || buffer.reading || buffer.holds > 0) return
    if (this.free.length >= this.maxFree) return
    buffer.pooled = true
    this.free.push(buffer)
    if (this.trimmer === undefined) {
      // The period now starting is partial: nothing is known to be surplus yet.
      this.lowWater = 0
      this.trimmer = setInterval(this.trim, this.idleMs).unref()
    }
  }

  private readonly trim = (): void => {
    // The least recently used buffers sit at the bottom of the stack.
    for (const buffer of this.free.splice(0, this.lowWater)) buffer.pooled = false
    this.lowWater = this.free.length
    if (this.free.length === 0) {
      clearInterval(this.trimmer)
      this.trimmer = undefined
    }
  }

  /** For tests and metrics: buffers allocated so far and buffers waiting in the pool. */
  stats (): { allocated: number, free: number } {
    return { allocated: this.allocated, free: this.free.length }
  }
}
