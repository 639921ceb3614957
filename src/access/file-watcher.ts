import { createHash } from 'node:crypto'
import { readFileSync, unwatchFile, watch, watchFile, type FSWatcher, type StatsListener } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { Logger } from 'pino'

export interface WatchOptions {
  /** Poll interval of the stat() backstop, ms. */
  intervalMs?: number
  /** Quiet time after a change event before the file is read again, ms. */
  debounceMs?: number
}

/**
 * Watches files and calls `reload` when their content changes. Two mechanisms: a directory watch
 * (instant; catches a new file renamed into place) and a stat() poll (catches what the first
 * misses, e.g. Kubernetes secret volumes swapping a symlink). `reload` decides what a bad new
 * content means; a read error leaves everything as it was and is logged.
 */
export class FileWatcher {
  private readonly watchers: FSWatcher[] = []
  private readonly polled: Array<[string, StatsListener]> = []
  private readonly digests = new Map<string, string>()
  private timer: NodeJS.Timeout | undefined
  private closed = false

  constructor (
    private readonly files: string[],
    private readonly reload: () => void,
    private readonly log: Logger,
    private readonly options: WatchOptions = {}
  ) {
    for (const file of files) this.digests.set(file, digestOf(file))
  }

  start (): void {
    const interval = this.options.intervalMs ?? 2000
    const dirs = new Map<string, Set<string>>()
    for (const file of this.files) {
      const names = dirs.get(dirname(file)) ?? new Set<string>()
      names.add(basename(file))
      dirs.set(dirname(file), names)
      const listener: StatsListener = () => this.schedule()
      watchFile(file, { interval, persistent: false }, listener)
      this.polled.push([file, listener])
    }
    for (const [dir, names] of dirs) {
      try {
        const watcher = watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || names.has(String(name)) || String(name).startsWith('..')) this.schedule()
        })
        watcher.on('error', (err) => this.log.debug({ err, dir }, 'directory watch failed; polling only'))
        this.watchers.push(watcher)
      } catch (err) {
        this.log.debug({ err, dir }, 'directory watch unavailable; polling only')
      }
    }
  }

  private schedule (): void {
    if (this.closed) return
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.check()
    }, this.options.debounceMs ?? 50)
    this.timer.unref()
  }

  private check (): void {
    if (this.closed) return
    let changed = false
    for (const file of this.files) {
      const digest = digestOf(file)
      if (digest !== this.digests.get(file)) changed = true
      this.digests.set(file, digest)
    }
    if (changed) this.reload()
  }

  close (): void {
    this.closed = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    for (const watcher of this.watchers) watcher.close()
    for (const [file, listener] of this.polled) unwatchFile(file, listener)
  }
}

function digestOf (file: string): string {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex')
  } catch (err) {
    return `unreadable: ${(err as NodeJS.ErrnoException).code ?? 'error'}`
  }
}
