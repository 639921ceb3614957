import t from 'tap'
import { STALL_LIMIT_MS, StdioDestination, type FailedDescriptor } from '../src/logger.js'

function errno (code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: write failed`), { code })
}

/** Descriptors whose writes follow a script: a number of bytes taken, or an error code. */
function fakeDescriptors (script: Record<number, Array<number | string>>) {
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
  return { written, calls, waits, deps: { write, wait: (ms: number) => { waits.push(ms) } } }
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
