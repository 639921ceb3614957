import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { renameSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startService, type Service } from './process.js'
import { freePort, httpStatus, waitFor } from './util.js'
import type { Scope } from './scope.js'

/** bcrypt reads at most 72 bytes of a password (both Apache's htpasswd and Go's x/crypto). */
export const BCRYPT_KEY_BYTES = 72

/**
 * One `user:bcrypt` line. `htpasswd` refuses passwords over 256 bytes and ECR-sized ones are
 * ~3.5 KB, but bcrypt only ever reads the first 72 bytes — so hashing those gives a hash the
 * registry accepts for the whole password. Cost 4: the registry checks bcrypt on every request.
 */
export function htpasswdLine (user: string, password: string): string {
  const key = Buffer.from(password, 'utf8').subarray(0, BCRYPT_KEY_BYTES)
  const out = execFileSync('htpasswd', ['-niB', '-C', '4', user], { input: key, encoding: 'utf8' })
  const line = out.split('\n')[0]?.trim() ?? ''
  if (!line.startsWith(`${user}:$2`)) throw new Error(`htpasswd gave no bcrypt line for ${user}: ${JSON.stringify(out)}`)
  return line
}

interface HtpasswdEntry { user: string, line: string, order: number }

/**
 * The registry's htpasswd file. distribution re-reads it when its modification time changes,
 * so every write goes to a new file that is renamed into place with an mtime strictly later
 * (by a whole second, whatever the file system's granularity) than the previous one.
 *
 * distribution keeps ONE hash per user name (the last line wins), so of several live `AWS`
 * entries only the last is accepted: entries are written in `order` (issue time), which makes
 * the registry accept the newest live token — stricter than ECR, which honours every unexpired
 * token. Removing the newest entry makes the previous one valid again.
 */
export class Htpasswd {
  readonly path: string
  readonly #entries = new Map<string, HtpasswdEntry>()
  #lastMtimeMs = 0

  constructor (path: string) {
    this.path = path
    this.write()
  }

  set (key: string, user: string, password: string, order: number): void {
    this.#entries.set(key, { user, line: htpasswdLine(user, password), order })
    this.write()
  }

  delete (key: string): boolean {
    const had = this.#entries.delete(key)
    if (had) this.write()
    return had
  }

  has (key: string): boolean {
    return this.#entries.has(key)
  }

  write (): void {
    const lines = [...this.#entries.values()].sort((a, b) => a.order - b.order).map((entry) => `${entry.line}\n`)
    const next = `${this.path}.next`
    writeFileSync(next, lines.join(''), { mode: 0o600 })
    let current = 0
    try {
      current = statSync(this.path).mtimeMs
    } catch {}
    const mtimeMs = Math.max(Date.now(), current + 1000, this.#lastMtimeMs + 1000)
    utimesSync(next, mtimeMs / 1000, mtimeMs / 1000)
    renameSync(next, this.path)
    this.#lastMtimeMs = mtimeMs
  }
}

export interface Registry {
  /** http://127.0.0.1:PORT */
  url: string
  /** 127.0.0.1:PORT */
  host: string
  htpasswd: Htpasswd
  /** A user of its own for the tests' direct look-ups, never given to the proxy. */
  verifier: { user: string, password: string }
  service: Service
  dataDir: string
}

/** The real CNCF distribution registry (Debian's docker-registry) with htpasswd Basic auth. */
export async function startRegistry (t: Scope, dir: string): Promise<Registry> {
  const dataDir = join(dir, 'data')
  const htpasswdPath = join(dir, 'htpasswd')
  const configPath = join(dir, 'config.yml')
  const htpasswd = new Htpasswd(htpasswdPath)
  const verifier = { user: 'e2e-verifier', password: randomBytes(18).toString('base64url') }
  htpasswd.set('verifier', verifier.user, verifier.password, 0)
  // A port free a moment ago may be taken by a peer of another test file meanwhile: then the
  // registry exits (address in use) and starts again on another one.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    writeFileSync(configPath, [
      'version: 0.1',
      'log:',
      '  level: info',
      '  formatter: json',
      '  accesslog: { disabled: true }',
      'storage:',
      `  filesystem: { rootdirectory: ${JSON.stringify(dataDir)} }`,
      '  delete: { enabled: true }',
      '  maintenance: { uploadpurging: { enabled: false } }',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
      '  headers: { X-Content-Type-Options: [nosniff] }',
      'auth:',
      `  htpasswd: { realm: e2e-registry, path: ${JSON.stringify(htpasswdPath)} }`,
      '',
    ].join('\n'))
    const service = startService(t, 'docker-registry', 'docker-registry', ['serve', configPath], {
      cwd: dir,
      logFile: join(dir, 'registry.log'),
      env: { PATH: process.env.PATH, HOME: dir },
    })
    const url = `http://127.0.0.1:${port}`
    const state = await waitFor('docker-registry to listen', async () => {
      if (!service.running) return 'exited'
      // 401 = up and checking credentials; the log line proves it is this registry.
      const up = (await httpStatus(`${url}/v2/`)) === 401 && service.logTail(100).includes(`listening on 127.0.0.1:${port}"`)
      return up ? 'up' : undefined
    }, { timeoutMs: 20_000, detail: () => service.logTail() })
    if (state === 'up') return { url, host: `127.0.0.1:${port}`, htpasswd, verifier, service, dataDir }
    if (attempt === 3) throw new Error(`docker-registry exited at start, three times:\n${service.logTail()}`)
  }
}

/** What the registry itself answered, from its JSON log (responses completed, credentials refused). */
export interface RegistryLogLine { method: string, uri: string, status: number, user?: string, time: string }

export function registryRequests (registry: Registry): RegistryLogLine[] {
  const lines: RegistryLogLine[] = []
  for (const text of registry.service.logTail(1_000_000).split('\n')) {
    if (!text.startsWith('{')) continue
    let entry: Record<string, unknown>
    try {
      entry = JSON.parse(text) as Record<string, unknown>
    } catch {
      continue
    }
    // A refused credential is logged as a warning, without a response-completed line.
    const refused = typeof entry.msg === 'string' && entry.msg.startsWith('error authorizing context')
    const status = refused ? 401 : entry['http.response.status']
    if (typeof status !== 'number') continue
    const line: RegistryLogLine = {
      method: String(entry['http.request.method']),
      uri: String(entry['http.request.uri']),
      status,
      time: String(entry.time),
    }
    if (typeof entry['auth.user.name'] === 'string') line.user = entry['auth.user.name']
    lines.push(line)
  }
  return lines
}
