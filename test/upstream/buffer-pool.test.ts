import t, { type Test } from 'tap'
import { BufferPool } from '../../src/upstream/transport/buffer-pool.js'

interface FakeInterval { callback: () => void, ms: number, unrefed: boolean, cleared: boolean }

/**
 * Replaces the global setInterval/clearInterval (the pool looks them up when it calls them) with
 * recorders, so a test fires the idle trim itself instead of waiting for it. Restored on teardown.
 */
function fakeIntervals (t: Test): FakeInterval[] {
  const created: FakeInterval[] = []
  const realSet = globalThis.setInterval
  const realClear = globalThis.clearInterval
  const fakeSet = (callback: () => void, ms: number): unknown => {
    const timer: FakeInterval = { callback, ms, unrefed: false, cleared: false }
    created.push(timer)
    const handle = { timer, unref: () => { timer.unrefed = true; return handle }, ref: () => handle }
    return handle
  }
  const fakeClear = (handle: unknown): void => {
    const timer = (handle as { timer?: FakeInterval } | undefined)?.timer
    if (timer !== undefined) timer.cleared = true
  }
  globalThis.setInterval = fakeSet as unknown as typeof setInterval
  globalThis.clearInterval = fakeClear as unknown as typeof clearInterval
  t.teardown(() => {
    globalThis.setInterval = realSet
    globalThis.clearInterval = realClear
  })
  return created
}

t.test('take allocates buffers of the pool\'s size, give lets a free one be taken again', async (t) => {
  const pool = new BufferPool(4096, 4)
  const a = pool.take()
  t.equal(a.bytes.length, 4096)
  t.equal(a.holds, 0)
  t.equal(a.reading, false)
  t.equal(a.pooled, false)
  t.same(pool.stats(), { allocated: 1, free: 0 })
  const b = pool.take()
  t.not(b, a)
  t.not(b.bytes.buffer, a.bytes.buffer, 'each buffer has memory of its own (no shared slab)')
  t.same(pool.stats(), { allocated: 2, free: 0 })

  pool.give(a)
  t.equal(a.pooled, true)
  t.same(pool.stats(), { allocated: 2, free: 1 })
  const again = pool.take()
  t.equal(again, a, 'the given buffer is taken again, not a new one')
  t.equal(again.pooled, false)
  t.same(pool.stats(), { allocated: 2, free: 0 })
})

t.test('a buffer still read into or still held by writes is not pooled', async (t) => {
  const pool = new BufferPool(1024, 4)
  const buffer = pool.take()

  buffer.reading = true
  pool.give(buffer)
  t.equal(buffer.pooled, false, 'reading: not pooled')
  t.equal(pool.stats().free, 0)

  buffer.reading = false
  buffer.holds = 2
  pool.give(buffer)
  t.equal(buffer.pooled, false, 'two writes hold it: not pooled')
  buffer.holds = 1
  pool.give(buffer)
  t.equal(buffer.pooled, false, 'one write holds it: not pooled')
  t.equal(pool.stats().free, 0)
  t.not(pool.take(), buffer, 'a take meanwhile gets another buffer')

  buffer.holds = 0
  pool.give(buffer)
  t.equal(buffer.pooled, true, 'no owner left: pooled')
  t.equal(pool.stats().free, 1)
})

t.test('giving a buffer twice pools it once: two takes never share it', async (t) => {
  const pool = new BufferPool(1024, 8)
  const buffer = pool.take()
  pool.give(buffer)
  pool.give(buffer)
  pool.give(buffer)
  t.same(pool.stats(), { allocated: 1, free: 1 })
  const first = pool.take()
  const second = pool.take()
  t.equal(first, buffer)
  t.not(second, buffer, 'the second take does not get the same buffer')
  t.same(pool.stats(), { allocated: 2, free: 0 })

  // Taken again, then given twice again: still once.
  pool.give(first)
  pool.give(first)
  t.equal(pool.stats().free, 1)
})

t.test('at most maxFree buffers are kept; the rest are dropped', async (t) => {
  const pool = new BufferPool(512, 2)
  const buffers = [pool.take(), pool.take(), pool.take(), pool.take()]
  t.same(pool.stats(), { allocated: 4, free: 0 })
  for (const buffer of buffers) pool.give(buffer)
  t.same(pool.stats(), { allocated: 4, free: 2 })
  t.same(buffers.map((b) => b.pooled), [true, true, false, false], 'the ones beyond maxFree are not marked pooled')

  const taken = [pool.take(), pool.take(), pool.take()]
  t.ok(taken.includes(buffers[0]!) && taken.includes(buffers[1]!), 'both kept buffers are reused')
  t.notOk(taken.includes(buffers[2]!) || taken.includes(buffers[3]!), 'dropped buffers never come back')
  t.same(pool.stats(), { allocated: 5, free: 0 }, 'the third take allocates')

  const none = new BufferPool(512, 0)
  const lone = none.take()
  none.give(lone)
  t.same(none.stats(), { allocated: 1, free: 0 }, 'maxFree 0 keeps nothing')
  t.equal(lone.pooled, false)
})

t.test('idle trim (fake interval): buffers unused for a whole period are let go, the needed ones kept', async (t) => {
  const intervals = fakeIntervals(t)
  const pool = new BufferPool(256, 8, 20)
  const [a, b, c] = [pool.take(), pool.take(), pool.take()] as const
  t.equal(intervals.length, 0, 'no timer before anything is pooled')
  pool.give(a)
  pool.give(b)
  pool.give(c)
  t.equal(intervals.length, 1, 'one interval for the pool, not one per give')
  const timer = intervals[0]!
  t.equal(timer.ms, 20)
  t.equal(timer.unrefed, true, 'the interval does not keep the process alive')

  timer.callback()
  t.equal(pool.stats().free, 3, 'the first, partial period drops nothing')

  // One buffer needed in this period, two never touched: those two go, the needed one stays.
  pool.give(pool.take())
  timer.callback()
  t.equal(pool.stats().free, 1, 'the two that stayed free all period are dropped')
  t.equal([a, b, c].filter((x) => x.pooled).length, 1, 'dropped buffers are no longer marked pooled')
  t.equal(timer.cleared, false)

  // A period without any take: the last one goes and the interval stops.
  timer.callback()
  t.same(pool.stats(), { allocated: 3, free: 0 })
  t.equal(timer.cleared, true, 'the interval stops with the pool empty')

  // The pool works on after a trim: new allocations, a new interval on the next give.
  const d = pool.take()
  t.notOk([a, b, c].includes(d))
  t.same(pool.stats(), { allocated: 4, free: 0 })
  pool.give(d)
  t.equal(intervals.length, 2, 'a new interval once something is pooled again')

  // A buffer taken in every period is kept however long that goes on.
  const second = intervals[1]!
  second.callback()
  for (let i = 0; i < 5; i++) {
    pool.give(pool.take())
    second.callback()
    t.equal(pool.stats().free, 1, `period ${i + 1} with a take: kept`)
  }
  second.callback()
  t.equal(pool.stats().free, 0, 'idle period: dropped')
})

t.test('idle trim (real timers): free buffers are let go after idleMs without a take', async (t) => {
  const pool = new BufferPool(256, 4, 20)
  const buffers = [pool.take(), pool.take(), pool.take()]
  for (const buffer of buffers) pool.give(buffer)
  t.equal(pool.stats().free, 3)
  const started = Date.now()
  while (pool.stats().free > 0 && Date.now() - started < 2000) {
    await new Promise<void>((resolve) => setImmediate(resolve))
  }
  t.equal(pool.stats().free, 0, 'dropped within 2 s')
  t.ok(Date.now() - started >= 20, 'not before one idle period')
  t.ok(buffers.every((b) => !b.pooled))
  const next = pool.take()
  t.notOk(buffers.includes(next), 'a take after the trim allocates')
  t.equal(pool.stats().allocated, 4)
})
