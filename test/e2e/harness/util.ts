import { mkdtempSync, rmSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { liveTempDirs } from './process.js'
import type { Scope } from './scope.js'

export { sleep }

/** Where every temporary directory goes: $E2E_RUN_DIR (set by scripts/e2e.sh) or the OS temp dir. */
export function runRoot (): string {
  const dir = process.env.E2E_RUN_DIR
  return dir !== undefined && dir !== '' ? dir : tmpdir()
}

/** A fresh directory removed by a teardown (kept when E2E_KEEP=1, for post-mortems). */
export function tempDir (t: Scope, prefix: string): string {
  const dir = mkdtempSync(join(runRoot(), `${prefix}-`))
  liveTempDirs.add(dir)
  t.teardown(() => {
    liveTempDirs.delete(dir)
    if (process.env.E2E_KEEP === '1') {
      process.stderr.write(`[e2e] kept ${dir}\n`)
      return
    }
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
    } catch (error) {
      process.stderr.write(`[e2e] could not remove ${dir}: ${String(error)}\n`)
    }
  })
  return dir
}

/** A loopback port that was free a moment ago (for peers that cannot be told to pick one). */
export async function freePort (): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/**
 * A port on 127.0.0.1 that nothing listens on (connections are refused), for where a client must
 * never get an answer: containerd's fallback `server`, dockerd's HTTP(S)_PROXY. Free a moment
 * ago, like freePort's; checked refused now.
 */
export async function closedPort (): Promise<number> {
  for (let attempt = 1; attempt <= 5; attempt++) {
    const port = await freePort()
    if (await refused(port)) return port
  }
  throw new Error('no closed port found on 127.0.0.1')
}

async function refused (port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve(false) })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
  })
}

/** Polls `probe` until it returns a value other than undefined; bounded by `timeoutMs`. */
export async function waitFor<T> (what: string, probe: () => Promise<T | undefined>, opts: { timeoutMs?: number, intervalMs?: number, detail?: () => string } = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30_000
  const intervalMs = opts.intervalMs ?? 100
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline) {
    try {
      const value = await probe()
      if (value !== undefined) return value
    } catch (error) {
      lastError = error
    }
    await sleep(intervalMs)
  }
  const cause = lastError instanceof Error ? `: ${lastError.message}` : ''
  const detail = opts.detail?.() ?? ''
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}${detail === '' ? '' : `\n${detail}`}`)
}

/** GET with a timeout; resolves with the status (or undefined when nothing answers). */
export async function httpStatus (url: string, init: RequestInit = {}): Promise<number | undefined> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5_000) })
    await res.arrayBuffer()
    return res.status
  } catch {
    return undefined
  }
}
