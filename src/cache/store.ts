import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Clock } from '../credentials/clock.js'
import { isValidDigest } from '../oci/grammar.js'
import type { CacheFile, CacheFileSystem } from './file-system.js'

/** The response headers a hit repeats, as the registry (or its storage) sent them on the miss. */
export interface StoredHeaders {
  'content-type'?: string
  etag?: string
  'accept-ranges'?: string
  'last-modified'?: string
}

/** One committed, verified file. */
export interface Entry {
  digest: string
  size: number
  headers: StoredHeaders
}

export interface Reservation {
  readonly bytes: number
  release: () => void
}

export interface CacheStoreOptions {
  dir: string
  maxSize: number
  fs: CacheFileSystem
  clock: Clock
  log: Logger
  /** How often the lock file is refreshed; a lock not refreshed for three times this is stale. */
  lockRefreshMs?: number
  onEvict?: (entry: Entry) => void
  /** A file found damaged (wrong size, unreadable metadata) and removed. */
  onCorrupt?: (digest: string) => void
}

export class CacheLockedError extends Error {
  override name = 'CacheLockedError'
}

interface LockOwner { pid: number, host: string, token: string }

const LOCK_REFRESH_MS = 10_000
const UNREADABLE: LockOwner = { pid: -1, host: '', token: '' }
/**
 * Cache directories this process holds: a lock naming this pid and host is ours only if listed
 * here; otherwise it was left by an earlier life of the same pid (a restarted container's pid 1).
 */
const HELD_BY_THIS_PROCESS = new Set<string>()

/**
 * The cache directory: `blobs/<algorithm>/<hex>` (the verified bytes) beside `<hex>.json` (size
 * and headers), `tmp/` for fills under way, `lock` for the one process that owns it. A data file
 * exists only once its metadata is written (rename is the commit), so a process killed at any
 * moment leaves either a whole entry or debris that the next start removes.
 *
 * The index is in memory, least recently used first (a Map keeps insertion order); the bound
 * counts committed entries and the reservations of fills still being written.
 */
export class CacheStore {
  readonly #options: CacheStoreOptions
  readonly #index = new Map<string, Entry>()
  #committed = 0
  #reserved = 0
  #lockTimer: unknown
  #lockToken = randomBytes(8).toString('hex')
  #closed = false
  readonly #folders = new Set<string>()

  private constructor (options: CacheStoreOptions) {
    this.#options = options
  }

  /** Takes the directory's lock, removes debris and rebuilds the index from the files. */
  static async open (options: CacheStoreOptions): Promise<CacheStore> {
    const store = new CacheStore(options)
    await store.#start()
    return store
  }

  get dir (): string { return this.#options.dir }
  get maxSize (): number { return this.#options.maxSize }
  /** Bytes committed plus bytes reserved by fills under way. */
  get size (): number { return this.#committed + this.#reserved }
  get committedBytes (): number { return this.#committed }
  get entries (): number { return this.#index.size }

  /** A committed entry, marked as just used. */
  get (digest: string): Entry | undefined {
    const entry = this.#index.get(digest)
    if (entry === undefined) return undefined
    this.#index.delete(digest)
    this.#index.set(digest, entry)
    this.#options.fs.touch(this.#dataPath(digest), this.#options.clock.now()).catch(() => {})
    return entry
  }

  /** Whether a digest is committed, without marking it used. */
  has (digest: string): boolean {
    return this.#index.has(digest)
  }

  /**
   * Room for a fill of `bytes`, made by evicting the least recently used entries; undefined when
   * it cannot fit (larger than the bound, or the bound taken by fills under way).
   */
  reserve (bytes: number): Reservation | undefined {
    if (bytes > this.#options.maxSize) return undefined
    for (const entry of this.#index.values()) {
      if (this.size + bytes <= this.#options.maxSize) break
      this.#evict(entry)
    }
    if (this.size + bytes > this.#options.maxSize) return undefined
    this.#reserved += bytes
    let released = false
    return {
      bytes,
      release: () => {
        if (released) return
        released = true
        this.#reserved -= bytes
      }
    }
  }

  /** A fresh temporary file for a fill. */
  async createTemp (digest: string): Promise<{ path: string, file: CacheFile }> {
    const path = join(this.#options.dir, 'tmp', `${digest.replace(':', '-')}.${randomBytes(6).toString('hex')}`)
    return { path, file: await this.#options.fs.open(path, 'w+') }
  }

  /** Commits a verified temporary file under its digest: metadata first, then the atomic rename. */
  async commit (tempPath: string, entry: Entry, reservation: Reservation): Promise<void> {
    const data = this.#dataPath(entry.digest)
    try {
      const algorithm = entry.digest.slice(0, entry.digest.indexOf(':'))
      if (!this.#folders.has(algorithm)) {
        await this.#options.fs.mkdir(join(this.#options.dir, 'blobs', algorithm))
        this.#folders.add(algorithm)
      }
      await this.#options.fs.writeFile(`${data}.json`, JSON.stringify({ digest: entry.digest, size: entry.size, headers: entry.headers }))
      await this.#options.fs.rename(tempPath, data)
    } finally {
      reservation.release()
    }
    if (this.#closed) return
    const previous = this.#index.get(entry.digest)
    if (previous !== undefined) this.#committed -= previous.size
    this.#index.delete(entry.digest)
    this.#index.set(entry.digest, entry)
    this.#committed += entry.size
    // Another fill (or a bound lowered by a restart) may have pushed it over: trim from the old end.
    for (const old of this.#index.values()) {
      if (this.size <= this.#options.maxSize || old === entry) break
      this.#evict(old)
    }
  }

  /** Writes a small body (a manifest read whole) as an entry; false when it does not fit. */
  async put (entry: Entry, body: Buffer): Promise<boolean> {
    if (this.#index.has(entry.digest)) return true
    const reservation = this.reserve(body.length)
    if (reservation === undefined) return false
    let temp: { path: string, file: CacheFile } | undefined
    try {
      temp = await this.createTemp(entry.digest)
      await temp.file.write(body, 0, body.length, 0)
      await temp.file.close()
      await this.commit(temp.path, entry, reservation)
      return true
    } catch (err) {
      reservation.release()
      if (temp !== undefined) this.#options.fs.unlink(temp.path).catch(() => {})
      throw err
    }
  }

  /** Opens a committed entry for reading; undefined when it is gone (evicted meanwhile). */
  async openEntry (digest: string): Promise<CacheFile | undefined> {
    try {
      return await this.#options.fs.open(this.#dataPath(digest), 'r')
    } catch {
      this.#forget(digest)
      return undefined
    }
  }

  /** Removes an entry found damaged; a reader with the file open keeps reading what it has. */
  remove (digest: string): void {
    const entry = this.#index.get(digest)
    if (entry !== undefined) this.#drop(entry)
  }

  async removeTemp (path: string): Promise<void> {
    await this.#options.fs.unlink(path).catch(() => {})
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#options.clock.clearTimeout(this.#lockTimer)
    const lock = join(this.#options.dir, 'lock')
    const owner = await this.#readLock(lock)
    if (owner?.token === this.#lockToken) {
      await this.#options.fs.unlink(lock).catch(() => {})
      HELD_BY_THIS_PROCESS.delete(lock)
    }
  }

  #dataPath (digest: string): string {
    const [algorithm, hex] = digest.split(':') as [string, string]
    return join(this.#options.dir, 'blobs', algorithm, hex)
  }

  #evict (entry: Entry): void {
    this.#drop(entry)
    this.#options.onEvict?.(entry)
    this.#options.log.debug({ digest: entry.digest, size: entry.size }, 'cache entry evicted')
  }

  #drop (entry: Entry): void {
    this.#forget(entry.digest)
    const data = this.#dataPath(entry.digest)
    // Data first: without it the metadata is debris the next start removes, never an entry.
    this.#options.fs.unlink(data).catch(() => {}).finally(() => { this.#options.fs.unlink(`${data}.json`).catch(() => {}) })
  }

  #forget (digest: string): void {
    const entry = this.#index.get(digest)
    if (entry === undefined) return
    this.#index.delete(digest)
    this.#committed -= entry.size
  }

  async #start (): Promise<void> {
    const { fs, dir } = this.#options
    await fs.mkdir(join(dir, 'tmp'))
    await fs.mkdir(join(dir, 'blobs'))
    await this.#lock()
    // Fills of a previous process that never committed: killed mid-write.
    for (const name of await fs.readdir(join(dir, 'tmp'))) await fs.unlink(join(dir, 'tmp', name)).catch(() => {})
    const found: Array<{ entry: Entry, mtimeMs: number }> = []
    for (const algorithm of await fs.readdir(join(dir, 'blobs'))) {
      const folder = join(dir, 'blobs', algorithm)
      const names = new Set(await fs.readdir(folder).catch(() => []))
      for (const name of names) {
        const isMeta = name.endsWith('.json')
        const hex = isMeta ? name.slice(0, -5) : name
        const digest = `${algorithm}:${hex}`
        if (isMeta) {
          if (!names.has(hex)) await fs.unlink(join(folder, name)).catch(() => {})
          continue
        }
        const entry = await this.#readEntry(folder, hex, digest, names.has(`${hex}.json`))
        if (entry !== undefined) found.push(entry)
      }
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs)
    for (const { entry } of found) {
      this.#index.set(entry.digest, entry)
      this.#committed += entry.size
    }
    for (const entry of this.#index.values()) {
      if (this.size <= this.#options.maxSize) break
      this.#evict(entry)
    }
    this.#options.log.info({ cacheDir: dir, entries: this.entries, bytes: this.#committed, maxBytes: this.#options.maxSize }, 'cache opened')
  }

  /** An entry whose data file has the size its metadata says; anything else is removed. */
  async #readEntry (folder: string, hex: string, digest: string, hasMeta: boolean): Promise<{ entry: Entry, mtimeMs: number } | undefined> {
    const { fs } = this.#options
    const data = join(folder, hex)
    let problem: string | undefined
    try {
      if (!hasMeta || !isValidDigest(digest)) throw new Error('no metadata')
      const meta = JSON.parse((await fs.readFile(`${data}.json`)).toString('utf8')) as Partial<Entry>
      const stat = await fs.stat(data)
      if (meta.digest !== digest || typeof meta.size !== 'number') throw new Error('metadata does not name this file')
      if (!stat.isFile() || stat.size !== meta.size) {
        problem = `size ${stat.size}, expected ${meta.size}`
        throw new Error(problem)
      }
      return { entry: { digest, size: meta.size, headers: meta.headers ?? {} }, mtimeMs: stat.mtimeMs }
    } catch (err) {
      this.#options.log.warn({ digest, reason: (err as Error).message }, 'damaged cache file removed')
      if (problem !== undefined) this.#options.onCorrupt?.(digest)
      await fs.unlink(data).catch(() => {})
      await fs.unlink(`${data}.json`).catch(() => {})
      return undefined
    }
  }

  /**
   * One process per directory. The lock names its owner and is refreshed while it lives, so one
   * left by a killed process (even in another PID namespace: a DaemonSet's previous pod) goes
   * stale and is taken over; a live owner's is refused.
   */
  async #lock (): Promise<void> {
    const { fs, clock, dir } = this.#options
    const path = join(dir, 'lock')
    const refresh = this.#options.lockRefreshMs ?? LOCK_REFRESH_MS
    const me: LockOwner = { pid: process.pid, host: hostname(), token: this.#lockToken }
    const existing = await this.#readLock(path)
    if (existing !== undefined) {
      const age = clock.now() - (await fs.stat(path)).mtimeMs
      const earlierLife = existing.pid === me.pid && existing.host === me.host && !HELD_BY_THIS_PROCESS.has(path)
      if (age < 3 * refresh && existing.pid === UNREADABLE.pid) {
        throw new CacheLockedError(`cache directory ${dir} is locked: its lock file is being written or was left unreadable ${Math.round(age / 1000)} s ago`)
      }
      if (age < 3 * refresh && !earlierLife) {
        throw new CacheLockedError(`cache directory ${dir} is in use by process ${existing.pid} on ${existing.host} (its lock file was refreshed ${Math.round(age / 1000)} s ago); give each proxy its own --cache-dir`)
      }
      await fs.unlink(path).catch(() => {})
    }
    try {
      const file = await fs.open(path, 'wx')
      const text = Buffer.from(JSON.stringify(me))
      await file.write(text, 0, text.length, 0)
      await file.close()
    } catch (err) {
      if ((err as { code?: string }).code === 'EEXIST') throw new CacheLockedError(`cache directory ${dir} was locked by another process while this one started`)
      throw err
    }
    HELD_BY_THIS_PROCESS.add(path)
    const beat = (): void => {
      if (this.#closed) return
      fs.touch(path, clock.now()).catch(() => {})
      this.#lockTimer = clock.setTimeout(beat, refresh)
    }
    this.#lockTimer = clock.setTimeout(beat, refresh)
  }

  async #readLock (path: string): Promise<LockOwner | undefined> {
    try {
      return JSON.parse((await this.#options.fs.readFile(path)).toString('utf8')) as LockOwner
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return undefined
      // Unreadable or half-written: being written now, or whoever wrote it died while writing.
      return UNREADABLE
    }
  }
}
