import type { Clock } from '../../src/credentials/clock.js'

interface Timer { at: number, seq: number, callback: () => void }

/** A clock whose time moves only when a test says so; timers fire in order as it moves. */
export class FakeClock implements Clock {
  #now: number
  #seq = 0
  #timers = new Map<number, Timer>()

  constructor (start = Date.UTC(2026, 10, 22, 12)) {
    this.#now = start
  }

  now (): number {
    return this.#now
  }

  setTimeout (callback: () => void, ms: number): unknown {
    const seq = ++this.#seq
    this.#timers.set(seq, { at: this.#now + Math.max(0, ms), seq, callback })
    return seq
  }

  clearTimeout (handle: unknown): void {
    this.#timers.delete(handle as number)
  }

  get pending (): number[] {
    return [...this.#timers.values()].map((t) => t.at - this.#now).sort((a, b) => a - b)
  }

  /** Moves time forward, firing due timers in order and letting their promises settle. */
  async tick (ms: number): Promise<void> {
    const end = this.#now + ms
    for (let guard = 0; guard < 10_000; guard++) {
      const next = [...this.#timers.values()].filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0]
      if (next === undefined) break
      this.#timers.delete(next.seq)
      this.#now = next.at
      next.callback()
      await settle()
    }
    this.#now = end
    await settle()
  }
}

/** Lets pending promise callbacks run (no real time passes). */
export async function settle (): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}
