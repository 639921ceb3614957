/** Time and timers, injected so that expiry and backoff are tested with a fake clock. */
export interface Clock {
  now (): number
  setTimeout (callback: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

// setTimeout overflows above 2^31-1 ms and fires at once; no refresh is ever that far away.
const MAX_TIMER_MS = 2 ** 31 - 1

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout (callback, ms) {
    const timer = setTimeout(callback, Math.min(Math.max(ms, 0), MAX_TIMER_MS))
    // The refresher must never be what keeps the process alive.
    timer.unref()
    return timer
  },
  clearTimeout (handle) {
    clearTimeout(handle as NodeJS.Timeout)
  }
}
