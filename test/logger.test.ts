import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { BATCH_LIMIT_BYTES, STALL_LIMIT_MS, StdioDestination, type FailedDescriptor } from '../src/logger.js'

function errno (code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: write failed`), { code })
}

/**
 * Descriptors whose writes follow a script: a number of bytes taken, or an error code. Each line
 * is flushed as it is written unless `batched`, where `turn()` ends the event loop's turn.
 */
function fakeDescriptors (script: Record<number, Array<number | string>>, batched = false) {
  const written: Record<number, string> = {}
  const calls: number[] = []
  const waits: number[] = []
  const write = (fd: number, data: Uint8Array): number => {
    calls.push(fd)
    const next = script[fd]?.shift() ?? data.length
    if (typeof next === 'string') throw errno(next)
    const taken = Math.min(next, data.length)
    written[fd] = (written[fd] ?? '') + Buffer.from(data.subarray(0, taken)).toString()
    return taken
  }
  const scheduled: Array<() => void> = []
  const schedule = batched ? (flush: () => void) => { scheduled.push(flush) } : (flush: () => void) => { flush() }
  const turn = (): void => { for (const flush of scheduled.splice(0)) flush() }
  return { written, calls, waits, scheduled, turn, deps: { write, wait: (ms: number) => { waits.push(ms) }, schedule } }
}

t.test('a failed stdout is given up for stderr, and the line that failed goes there whole', async (t) => {
  const fds = fakeDescriptors({ 1: [4, 'EPIPE'] })
  const destination = new StdioDestination([1, 2], fds.deps)
  const failovers: Array<[FailedDescriptor, number | undefined]> = []
  destination.onFailover = (failed, next) => failovers.push([failed, next])
  destination.write('first line\n')
  destination.write('second line\n')
  t.same(fds.written, { 1: 'firs', 2: 'first line\nsecond line\n' })
  t.same(failovers, [[{ fd: 1, code: 'EPIPE' }, 2]])
  t.same(fds.calls, [1, 1, 2, 2], 'stdout is not tried again')
  t.equal(destination.fd, 2)
})

t.test('once every descriptor has failed, logging stops: no write is tried again', async (t) => {
  const fds = fakeDescriptors({ 1: ['EIO'], 2: ['EBADF'] })
  const destination = new StdioDestination([1, 2], fds.deps)
  const failovers: Array<[FailedDescriptor, number | undefined]> = []
  destination.onFailover = (failed, next) => failovers.push([failed, next])
  destination.write('lost\n')
  t.same(failovers, [[{ fd: 1, code: 'EIO' }, 2], [{ fd: 2, code: 'EBADF' }, undefined]])
  t.equal(destination.fd, undefined)
  const before = fds.calls.length
  for (let i = 0; i < 1000; i++) destination.write('into the void\n')
  t.equal(fds.calls.length, before, 'no system call for lines nobody can read')
  t.same(fds.waits, [], 'and no waiting')
})

t.test('partial writes are completed', async (t) => {
  const fds = fakeDescriptors({ 1: [1, 2, 3] })
  const destination = new StdioDestination([1], fds.deps)
  destination.write('0123456789\n')
  t.equal(fds.written[1], '0123456789\n')
})

t.test('a full pipe (EAGAIN) is waited for, then the line is written', async (t) => {
  const fds = fakeDescriptors({ 1: [3, 'EAGAIN', 'EAGAIN', 'EAGAIN'] })
  const destination = new StdioDestination([1, 2], fds.deps)
  destination.write('slow reader\n')
  t.equal(fds.written[1], 'slow reader\n')
  t.same(fds.waits, [10, 10, 10])
  t.equal(destination.dropped, 0)
  t.equal(destination.fd, 1, 'a slow reader is not a failed one')
})

t.test('a pipe that stays full costs a line, bounded in time, and keeps its reader', async (t) => {
  const fds = fakeDescriptors({ 1: Array(STALL_LIMIT_MS / 10 + 1).fill('EAGAIN') })
  const destination = new StdioDestination([1, 2], fds.deps)
  destination.write('dropped\n')
  t.equal(destination.dropped, 1)
  t.equal(fds.waits.reduce((sum, ms) => sum + ms, 0), STALL_LIMIT_MS, 'waited at most STALL_LIMIT_MS')
  t.equal(fds.written[2], undefined, 'not moved to stderr')
  destination.write('next\n')
  t.equal(fds.written[1], 'next\n', 'the reader gets the next line')
})

t.test('lines written in one turn of the event loop go out in one write, in order, at its end', async (t) => {
  const fds = fakeDescriptors({}, true)
  const destination = new StdioDestination([1, 2], fds.deps)
  destination.write('one\n')
  destination.write('two\n')
  destination.write('three\n')
  t.same(fds.calls, [], 'nothing written yet')
  t.equal(fds.scheduled.length, 1, 'one flush scheduled, not one per line')
  fds.turn()
  t.same(fds.calls, [1], 'one system call')
  t.equal(fds.written[1], 'one\ntwo\nthree\n')
  destination.write('four\n')
  t.equal(fds.scheduled.length, 1, 'the next turn schedules again')
  fds.turn()
  t.equal(fds.written[1], 'one\ntwo\nthree\nfour\n')
  t.same(fds.calls, [1, 1])
})

t.test('a batch is written at once when it reaches BATCH_LIMIT_BYTES: memory stays bounded under a burst', async (t) => {
  const fds = fakeDescriptors({}, true)
  const destination = new StdioDestination([1], fds.deps)
  const line = 'x'.repeat(1023) + '\n'
  for (let i = 0; i < BATCH_LIMIT_BYTES / 1024 - 1; i++) destination.write(line)
  t.same(fds.calls, [], 'below the limit: waiting for the end of the turn')
  destination.write(line)
  t.same(fds.calls, [1], 'at the limit: written')
  t.equal(fds.written[1]?.length, BATCH_LIMIT_BYTES)
  fds.turn()
  t.same(fds.calls, [1], 'the scheduled flush finds nothing left to write')
})

t.test('flush() writes what is queued now and calls back (pino\'s logger.flush)', async (t) => {
  const fds = fakeDescriptors({}, true)
  const destination = new StdioDestination([1], fds.deps)
  destination.write('queued\n')
  let called = false
  destination.flush(() => { called = true })
  t.equal(fds.written[1], 'queued\n')
  t.ok(called)
  destination.flush()
  t.same(fds.calls, [1], 'an empty flush makes no system call')
})

t.test('a batch whose descriptor fails goes to the next one whole, and a stalled batch counts every line dropped', async (t) => {
  const fds = fakeDescriptors({ 1: [5, 'EIO'] }, true)
  const destination = new StdioDestination([1, 2], fds.deps)
  destination.write('first\n')
  destination.write('second\n')
  fds.turn()
  t.same(fds.written, { 1: 'first', 2: 'first\nsecond\n' })
  const stalled = fakeDescriptors({ 1: Array(STALL_LIMIT_MS / 10 + 1).fill('EAGAIN') }, true)
  const slow = new StdioDestination([1], stalled.deps)
  slow.write('a\n')
  slow.write('b\n')
  slow.write('c\n')
  stalled.turn()
  t.equal(slow.dropped, 3)
})

t.test('a process that logs and ends at once (fatal, exit) loses no line', async (t) => {
  const logger = fileURLToPath(new URL('../src/logger.ts', import.meta.url))
  const script = `
    const { createLogger } = await import(${JSON.stringify(logger)})
    const log = createLogger('info')
    for (let i = 0; i < 100; i++) log.info({ i }, 'line')
    log.fatal('cannot start: the last words')
    process.exit(1)
  `
  const child = spawnSync(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 })
  t.equal(child.status, 1, child.stderr)
  const lines = child.stdout.trim().split('\n').map((l) => JSON.parse(l) as { msg: string, i?: number })
  t.equal(lines.length, 101)
  t.same(lines.slice(0, 100).map((l) => l.i), Array.from({ length: 100 }, (_, i) => i), 'in order')
  t.equal(lines[100]?.msg, 'cannot start: the last words')
})
