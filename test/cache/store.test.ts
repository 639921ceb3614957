import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { nodeFileSystem, type CacheFileSystem } from '../../src/cache/file-system.js'
import { CacheLockedError, CacheStore, type Entry } from '../../src/cache/store.js'
import { FakeClock, settle } from '../helpers/fake-clock.js'
import { logSink, type LogSink } from '../helpers/log-sink.js'
import { pattern, sha256, tempDir } from './support.js'

const REFRESH_MS = 10_000

interface Opened { store: CacheStore, clock: FakeClock, logs: LogSink, evicted: string[], corrupt: string[] }

async function open (t: Test, dir: string, options: { maxSize?: number, fs?: CacheFileSystem, clock?: FakeClock } = {}): Promise<Opened> {
  const clock = options.clock ?? new FakeClock(Date.now())
  const logs = logSink('debug')
  const evicted: string[] = []
  const corrupt: string[] = []
  const store = await CacheStore.open({
    dir,
    maxSize: options.maxSize ?? 1_000_000,
    fs: options.fs ?? nodeFileSystem,
    clock,
    log: logs.logger,
    lockRefreshMs: REFRESH_MS,
    onEvict: (entry) => { evicted.push(entry.digest) },
    onCorrupt: (digest) => { corrupt.push(digest) }
  })
  t.teardown(async () => { await store.close() })
  return { store, clock, logs, evicted, corrupt }
}

/** Writes a committed entry by hand, as an earlier process would have left it. */
async function plant (dir: string, data: Buffer, mtimeMs: number, meta?: unknown): Promise<string> {
  const digest = sha256(data)
  const folder = join(dir, 'blobs', 'sha256')
  await mkdir(folder, { recursive: true })
  const path = join(folder, digest.slice(7))
  await writeFile(path, data)
  await writeFile(`${path}.json`, JSON.stringify(meta ?? { digest, size: data.length, headers: { 'content-type': 'application/octet-stream' } }))
  await utimes(path, mtimeMs / 1000, mtimeMs / 1000)
  return digest
}

async function writeLock (dir: string, owner: unknown, ageMs: number, now: number): Promise<string> {
  const path = join(dir, 'lock')
  await mkdir(dir, { recursive: true })
  await writeFile(path, typeof owner === 'string' ? owner : JSON.stringify(owner))
  await utimes(path, (now - ageMs) / 1000, (now - ageMs) / 1000)
  return path
}

/** Commits `data` through a reservation, as a fill does. */
async function commitBytes (store: CacheStore, data: Buffer): Promise<Entry> {
  const entry: Entry = { digest: sha256(data), size: data.length, headers: {} }
  const reservation = store.reserve(data.length)
  if (reservation === undefined) throw new Error('no room')
  const temp = await store.createTemp(entry.digest)
  await temp.file.write(data, 0, data.length, 0)
  await temp.file.close()
  await store.commit(temp.path, entry, reservation)
  return entry
}

t.test('the lock: a live owner\'s is refused, a stale or half-written one taken over, and refreshed while held', async (t) => {
  const clock = new FakeClock(Date.now())
  const live = await tempDir(t)
  await writeLock(live, { pid: 4242, host: 'node-a', token: 't' }, 3 * REFRESH_MS - 1000, clock.now())
  await t.rejects(open(t, live, { clock }), new CacheLockedError(`cache directory ${live} is in use by process 4242 on node-a (its lock file was refreshed 29 s ago); give each proxy its own --cache-dir`))
  t.same(JSON.parse(await readFile(join(live, 'lock'), 'utf8')), { pid: 4242, host: 'node-a', token: 't' }, 'the live owner\'s lock is left alone')

  const halfFresh = await tempDir(t)
  await writeLock(halfFresh, '{"pid":42', 1000, clock.now())
  await t.rejects(open(t, halfFresh, { clock }), { name: 'CacheLockedError', message: `cache directory ${halfFresh} is locked: its lock file is being written or was left unreadable 1 s ago` }, 'a lock being written right now is not taken')

  const stale = await tempDir(t)
  await writeLock(stale, { pid: 4242, host: 'old-pod', token: 't' }, 3 * REFRESH_MS, clock.now())
  const { store } = await open(t, stale, { clock })
  const lock = join(stale, 'lock')
  const mine = JSON.parse(await readFile(lock, 'utf8')) as { pid: number, host: string }
  t.same([mine.pid, mine.host], [process.pid, hostname()], 'a lock not refreshed for three periods (a killed pod\'s) is taken over')

  await clock.tick(REFRESH_MS)
  await settle()
  t.equal(Math.round((await stat(lock)).mtimeMs), clock.now(), 'refreshed after one period')
  await clock.tick(REFRESH_MS)
  await settle()
  t.equal(Math.round((await stat(lock)).mtimeMs), clock.now(), 'and again')
  await store.close()
  t.same(clock.pending, [], 'no refresh after close')
  await t.rejects(stat(lock), { code: 'ENOENT' }, 'close removes its own lock')

  const halfStale = await tempDir(t)
  await writeLock(halfStale, '{"pid":42', 3 * REFRESH_MS, clock.now())
  await t.resolves(open(t, halfStale, { clock }), 'a half-written lock left long ago is taken over')

  const earlierLife = await tempDir(t)
  await writeLock(earlierLife, { pid: process.pid, host: hostname(), token: 'before-restart' }, 0, clock.now())
  await t.resolves(open(t, earlierLife, { clock }), 'a fresh lock naming this pid and host, not held by this process, is a restarted container\'s')
  await t.rejects(open(t, earlierLife, { clock }), CacheLockedError, 'but one this process holds is refused')
})

t.test('close leaves a lock another process has taken over since', async (t) => {
  const dir = await tempDir(t)
  const { store } = await open(t, dir)
  await writeFile(join(dir, 'lock'), JSON.stringify({ pid: 7, host: 'elsewhere', token: 'theirs' }))
  await store.close()
  t.same(JSON.parse(await readFile(join(dir, 'lock'), 'utf8')), { pid: 7, host: 'elsewhere', token: 'theirs' })
})

t.test('creating the lock: a racing process\'s lock is reported as such, other errors as they are', async (t) => {
  const failing = (code: string): CacheFileSystem => ({
    ...nodeFileSystem,
    open: async (path, flags) => {
      if (flags === 'wx') throw Object.assign(new Error(`${code}: on ${path}`), { code })
      return await nodeFileSystem.open(path, flags)
    }
  })
  const dir = await tempDir(t)
  await t.rejects(open(t, dir, { fs: failing('EEXIST') }), new CacheLockedError(`cache directory ${dir} was locked by another process while this one started`))
  await t.rejects(open(t, dir, { fs: failing('EACCES') }), { code: 'EACCES', message: `EACCES: on ${join(dir, 'lock')}` })
})

t.test('restart: whole entries come back in least-recently-used order; debris and damaged files are removed', async (t) => {
  const dir = await tempDir(t)
  const now = Date.now()
  const older = await plant(dir, pattern(1000, 1), now - 60_000)
  const newer = await plant(dir, pattern(2000, 2), now - 1000)
  const folder = join(dir, 'blobs', 'sha256')
  const unreadable = await plant(dir, pattern(300, 3), now)
  await writeFile(join(folder, `${unreadable.slice(7)}.json`), '{"digest":')
  const renamed = await plant(dir, pattern(300, 4), now, { digest: older, size: 300 })
  const short = await plant(dir, pattern(300, 5), now, { digest: sha256(pattern(300, 5)), size: 301 })
  const orphanMeta = sha256(pattern(10, 6)).slice(7)
  await writeFile(join(folder, `${orphanMeta}.json`), '{}')
  const noMeta = sha256(pattern(10, 7)).slice(7)
  await writeFile(join(folder, noMeta), pattern(10, 7))
  await writeFile(join(folder, 'not-a-digest'), 'x')
  await writeFile(join(folder, 'not-a-digest.json'), JSON.stringify({ digest: 'sha256:not-a-digest', size: 1 }))

  const { store, logs, corrupt } = await open(t, dir)
  t.equal(store.entries, 2)
  t.equal(store.committedBytes, 3000)
  t.same((await readdir(folder)).sort(), [older.slice(7), `${older.slice(7)}.json`, newer.slice(7), `${newer.slice(7)}.json`].sort(), 'only whole entries are left')
  t.same(logs.lines.filter((l) => l.msg === 'damaged cache file removed').map((l) => [l.digest, l.reason]).sort(), [
    [unreadable, 'Unexpected end of JSON input'],
    [renamed, 'metadata does not name this file'],
    [short, 'size 300, expected 301'],
    [`sha256:${noMeta}`, 'no metadata'],
    ['sha256:not-a-digest', 'no metadata']
  ].sort())
  t.same(corrupt, [short], 'a size mismatch counts as a verification failure; missing metadata is debris')
  t.same(logs.lines.find((l) => l.msg === 'cache opened'), { ...logs.lines.find((l) => l.msg === 'cache opened'), entries: 2, bytes: 3000, maxBytes: 1_000_000 })

  const room = store.reserve(1_000_000 - 2000)
  t.ok(room !== undefined)
  t.same([store.has(older), store.has(newer)], [false, true], 'the entry used longest ago went first')
})

t.test('restart with a smaller bound evicts the least recently used; a hit moves an entry to the back across restarts', async (t) => {
  const dir = await tempDir(t)
  const now = Date.now()
  const a = await plant(dir, pattern(1000, 1), now - 30_000)
  const b = await plant(dir, pattern(1000, 2), now - 20_000)
  const c = await plant(dir, pattern(1000, 3), now - 10_000)
  const clock = new FakeClock(now)
  const first = await open(t, dir, { clock })
  t.same(first.store.get(a)?.size, 1000)
  await settle()
  t.equal(Math.round((await stat(join(dir, 'blobs', 'sha256', a.slice(7)))).mtimeMs), now, 'a hit sets the file\'s time')
  await first.store.close()

  const second = await open(t, dir, { maxSize: 2000 })
  t.same(second.evicted, [b], 'b is now the least recently used')
  t.same([second.store.has(a), second.store.has(b), second.store.has(c)], [true, false, true])
  t.equal(second.store.size, 2000)
  await settle()
  await t.rejects(stat(join(dir, 'blobs', 'sha256', b.slice(7))), { code: 'ENOENT' })
})

t.test('reservations: bounded by fills under way, released once, never larger than the bound', async (t) => {
  const { store, evicted } = await open(t, await tempDir(t), { maxSize: 1000 })
  t.equal(store.reserve(1001), undefined, 'larger than the bound')
  const first = store.reserve(600)
  t.equal(store.size, 600)
  t.equal(store.reserve(500), undefined, 'the bound is taken by a fill under way; nothing committed could be evicted for it')
  first?.release()
  first?.release()
  t.equal(store.size, 0, 'a second release changes nothing')
  const a = await commitBytes(store, pattern(400, 1))
  const b = await commitBytes(store, pattern(400, 2))
  t.ok(store.get(a.digest))
  const third = store.reserve(300)
  t.ok(third !== undefined)
  t.same(evicted, [b.digest], 'made room by evicting the least recently used')
  t.equal(store.size, 700)
})

t.test('commit: a failing metadata write keeps nothing and gives the reservation back; a commit after close is not indexed', async (t) => {
  let failWrite = true
  const fs: CacheFileSystem = {
    ...nodeFileSystem,
    writeFile: async (path, data) => {
      if (failWrite) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' })
      await nodeFileSystem.writeFile(path, data)
    }
  }
  const dir = await tempDir(t)
  const { store } = await open(t, dir, { fs })
  const data = pattern(500)
  await t.rejects(commitBytes(store, data), { code: 'EIO' })
  t.equal(store.size, 0, 'the reservation is released')
  t.equal(store.has(sha256(data)), false)
  t.same(await readdir(join(dir, 'blobs', 'sha256')), [], 'no data file without its metadata')

  failWrite = false
  const reservation = store.reserve(data.length)!
  const temp = await store.createTemp(sha256(data))
  await temp.file.write(data, 0, data.length, 0)
  await temp.file.close()
  await store.close()
  await store.commit(temp.path, { digest: sha256(data), size: data.length, headers: {} }, reservation)
  t.equal(store.entries, 0, 'a closed store indexes nothing')
  t.equal(store.size, 0)
})

t.test('commit keeps the bound even when an entry is larger than its reservation, and recommitting a digest counts it once', async (t) => {
  const { store, evicted } = await open(t, await tempDir(t), { maxSize: 1000 })
  const old = await commitBytes(store, pattern(600, 1))
  const small = store.reserve(100)!
  const data = pattern(600, 2)
  const temp = await store.createTemp(sha256(data))
  await temp.file.write(data, 0, data.length, 0)
  await temp.file.close()
  await store.commit(temp.path, { digest: sha256(data), size: 600, headers: {} }, small)
  t.same(evicted, [old.digest])
  t.equal(store.size, 600)

  await commitBytes(store, data)
  t.equal(store.entries, 1)
  t.equal(store.size, 600, 'the earlier copy is not counted twice')
})

t.test('put: a manifest read whole is written once, refused when it cannot fit, and a failed write leaves nothing', async (t) => {
  let opens = 0
  let failWrites = false
  const fs: CacheFileSystem = {
    ...nodeFileSystem,
    open: async (path, flags) => {
      opens++
      const file = await nodeFileSystem.open(path, flags)
      return {
        read: async (...args) => await file.read(...args),
        close: async () => { await file.close() },
        write: async (...args) => {
          if (failWrites) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
          return await file.write(...args)
        }
      }
    }
  }
  const dir = await tempDir(t)
  const { store } = await open(t, dir, { fs, maxSize: 1000 })
  const body = Buffer.from('{"schemaVersion":2}')
  const entry: Entry = { digest: sha256(body), size: body.length, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } }
  t.equal(await store.put(entry, body), true)
  const before = opens
  t.equal(await store.put(entry, body), true, 'already there')
  t.equal(opens, before, 'and not written again')
  t.same(JSON.parse(await readFile(join(dir, 'blobs', 'sha256', `${entry.digest.slice(7)}.json`), 'utf8')), entry)

  const big = pattern(1001)
  t.equal(await store.put({ digest: sha256(big), size: big.length, headers: {} }, big), false)

  failWrites = true
  const other = Buffer.from('{"schemaVersion":2,"x":1}')
  await t.rejects(store.put({ digest: sha256(other), size: other.length, headers: {} }, other), { code: 'ENOSPC' })
  t.equal(store.size, body.length, 'the reservation is released')
  await settle()
  t.same(await readdir(join(dir, 'tmp')), [], 'the temporary file is removed')
})

t.test('an entry whose file vanished is forgotten when opened', async (t) => {
  const { store } = await open(t, await tempDir(t))
  const entry = await commitBytes(store, pattern(300))
  await nodeFileSystem.unlink(join(store.dir, 'blobs', 'sha256', entry.digest.slice(7)))
  t.equal(await store.openEntry(entry.digest), undefined)
  t.equal(store.has(entry.digest), false)
  t.equal(store.size, 0)
  t.equal(store.get(entry.digest), undefined)
  store.remove(entry.digest)
  t.equal(store.size, 0, 'removing an unknown digest changes nothing')
})
