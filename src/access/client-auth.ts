import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import bcrypt from 'bcryptjs'
import type { Logger } from 'pino'
import { FileWatcher, type WatchOptions } from './file-watcher.js'
import { CredentialFileError, parseHtpasswd, type Htpasswd } from './htpasswd.js'
import { parseTokenFile, tokenProblem } from './tokens.js'

/** Who a request authenticated as; safe to log (never a secret). */
export interface ClientIdentity {
  kind: 'htpasswd' | 'token'
  /** The htpasswd user, or where the token came from (`bearer-tokens-file:3`, `env:1`). */
  name: string
}

export interface ClientAuthOptions {
  htpasswdFile?: string | undefined
  tokensFile?: string | undefined
  /** From ECR_PROXY_BEARER_TOKENS (or the config file's bearerTokens). */
  tokens?: readonly string[] | undefined
  log: Logger
  watch?: WatchOptions
  /** How long a verified (or refused) credential is remembered, ms. */
  cacheTtlMs?: number
  now?: () => number
  /** bcrypt verifications running at once; more wait in a queue of maxQueuedVerifications. */
  maxConcurrentVerifications?: number
  maxQueuedVerifications?: number
}

/** Too many bcrypt verifications are waiting: answer 429 instead of queueing without bound. */
export class AuthenticatorBusyError extends Error {
  override name = 'AuthenticatorBusyError'
}

interface TokenEntry { digest: Buffer, label: string }
interface Remembered { identity: ClientIdentity | undefined, expires: number }

const CACHE_LIMIT = 10_000
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/

function sha256 (value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

function tokenEntries (tokens: readonly string[], source: string): TokenEntry[] {
  return tokens.map((token, i) => ({ digest: sha256(token), label: `${source}:${i + 1}` }))
}

/**
 * Verifies clients of the proxy: `Authorization: Basic` against an htpasswd file (bcrypt) or a
 * static token given as the password, and `Authorization: Bearer <token>`. Token comparisons are
 * constant-time over SHA-256 digests; bcrypt results are remembered for a short while under a
 * SHA-256 of the credential, so bcrypt does not run on every request of a pull. The files are
 * re-read when they change; a bad new version keeps the previous credentials and logs an error.
 */
export class ClientAuthenticator {
  private users: Htpasswd = new Map()
  private fileTokens: TokenEntry[] = []
  private readonly envTokens: TokenEntry[]
  private readonly cache = new Map<string, Remembered>()
  private generation = 0
  private dummyHash: Promise<string> | undefined
  private running = 0
  private readonly waiting: Array<() => void> = []
  private readonly watchers: FileWatcher[] = []
  private readonly now: () => number
  private readonly ttlMs: number
  private readonly log: Logger

  constructor (private readonly options: ClientAuthOptions) {
    this.log = options.log
    this.now = options.now ?? Date.now
    this.ttlMs = options.cacheTtlMs ?? 60_000
    const tokens = options.tokens ?? []
    tokens.forEach((token, i) => {
      const problem = tokenProblem(token)
      if (problem !== undefined) throw withSetting(new CredentialFileError(`bearer token ${i + 1} of ECR_PROXY_BEARER_TOKENS ${problem}`), ['access', 'bearerTokens'])
    })
    this.envTokens = tokenEntries(tokens, 'env')
    // The first load happens now: a missing or bad file stops the proxy at start.
    if (options.htpasswdFile !== undefined) this.users = readUsers(options.htpasswdFile)
    if (options.tokensFile !== undefined) this.fileTokens = readTokens(options.tokensFile)
  }

  /** True when any client credential is configured; false means every request passes. */
  get enabled (): boolean {
    return this.options.htpasswdFile !== undefined || this.options.tokensFile !== undefined || this.envTokens.length > 0
  }

  get counts (): { users: number, tokens: number } {
    return { users: this.users.size, tokens: this.fileTokens.length + this.envTokens.length }
  }

  /** Starts watching the credential files; call close() to stop. */
  watch (): void {
    if (this.watchers.length > 0) return
    const { htpasswdFile, tokensFile } = this.options
    if (htpasswdFile !== undefined) this.watchers.push(new FileWatcher([htpasswdFile], () => this.reload('htpasswd'), this.log, this.options.watch))
    if (tokensFile !== undefined) this.watchers.push(new FileWatcher([tokensFile], () => this.reload('tokens'), this.log, this.options.watch))
    for (const watcher of this.watchers) watcher.start()
  }

  close (): void {
    for (const watcher of this.watchers.splice(0)) watcher.close()
  }

  /** Re-reads one file; on any problem its previous credentials stay in force. */
  reload (which: 'htpasswd' | 'tokens'): boolean {
    const file = which === 'htpasswd' ? this.options.htpasswdFile : this.options.tokensFile
    if (file === undefined) return false
    try {
      if (which === 'htpasswd') this.users = readUsers(file)
      else this.fileTokens = readTokens(file)
    } catch (err) {
      this.log.error(`reloading client credentials failed, keeping the previous ones: ${(err as Error).message}`)
      return false
    }
    this.generation++
    this.cache.clear()
    this.dummyHash = undefined
    this.log.info({ file, ...this.counts }, 'client credentials reloaded')
    return true
  }

  /**
   * The identity an Authorization header proves, or undefined. Throws AuthenticatorBusyError when
   * too many bcrypt verifications are already waiting.
   */
  async authenticate (authorization: string | undefined): Promise<ClientIdentity | undefined> {
    if (authorization === undefined) return undefined
    const space = authorization.indexOf(' ')
    if (space <= 0) return undefined
    const scheme = authorization.slice(0, space).toLowerCase()
    const value = authorization.slice(space + 1).trim()
    if (scheme === 'bearer') return this.matchToken(value)
    if (scheme !== 'basic' || !BASE64.test(value)) return undefined
    const decoded = Buffer.from(value, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) return undefined
    const user = decoded.slice(0, colon)
    const password = decoded.slice(colon + 1)

    const key = sha256(`${user}\u0000${password}`).toString('hex')
    const remembered = this.cache.get(key)
    if (remembered !== undefined && remembered.expires > this.now()) return remembered.identity

    const generation = this.generation
    const hash = this.users.get(user)
    let identity: ClientIdentity | undefined
    if (hash !== undefined) {
      identity = await this.verify(password, hash) ? { kind: 'htpasswd', name: user } : undefined
    } else {
      // docker login / podman login / skopeo --creds send a token as a Basic password.
      identity = this.matchToken(password)
      // An unknown user costs as much as a wrong password, so timing does not tell users apart.
      if (identity === undefined && this.users.size > 0) await this.verify(password, await this.dummy())
    }
    if (generation === this.generation) this.remember(key, identity)
    return identity
  }

  private matchToken (value: string): ClientIdentity | undefined {
    if (value === '') return undefined
    const digest = sha256(value)
    let match: string | undefined
    // Every entry is compared, in constant time, whatever matched before.
    for (const entries of [this.fileTokens, this.envTokens]) {
      for (const entry of entries) {
        if (timingSafeEqual(digest, entry.digest) && match === undefined) match = entry.label
      }
    }
    return match === undefined ? undefined : { kind: 'token', name: match }
  }

  private remember (key: string, identity: ClientIdentity | undefined): void {
    if (this.cache.size >= CACHE_LIMIT) {
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    this.cache.set(key, { identity, expires: this.now() + this.ttlMs })
  }

  private async dummy (): Promise<string> {
    if (this.dummyHash === undefined) {
      const first = this.users.values().next().value
      const cost = first === undefined ? 10 : bcrypt.getRounds(first)
      this.dummyHash = bcrypt.hash('ecr-auth-proxy timing equaliser', cost)
    }
    return await this.dummyHash
  }

  private async verify (password: string, hash: string): Promise<boolean> {
    // bcrypt reads only the first 72 bytes: a longer password would match on its prefix alone.
    if (bcrypt.truncates(password)) return false
    await this.acquire()
    try {
      return await bcrypt.compare(password, hash)
    } finally {
      this.release()
    }
  }

  private async acquire (): Promise<void> {
    if (this.running < (this.options.maxConcurrentVerifications ?? 4)) {
      this.running++
      return
    }
    if (this.waiting.length >= (this.options.maxQueuedVerifications ?? 256)) {
      throw new AuthenticatorBusyError('too many client authentications in progress')
    }
    // The slot is handed over by release(), so `running` never exceeds the limit.
    await new Promise<void>((resolve) => this.waiting.push(resolve))
  }

  private release (): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.running--
  }
}

function readUsers (file: string): Htpasswd {
  try {
    const users = parseHtpasswd(readCredentialFile(file), file)
    // An empty file would lock every client out, and still count as authentication.
    if (users.size === 0) throw new CredentialFileError(`${file} has no entries: every client would be locked out (add one with htpasswd -B)`)
    return users
  } catch (err) {
    throw withSetting(err, ['access', 'htpasswd'])
  }
}

function readTokens (file: string): TokenEntry[] {
  try {
    return tokenEntries(parseTokenFile(readCredentialFile(file), file), 'bearer-tokens-file')
  } catch (err) {
    throw withSetting(err, ['access', 'bearerTokensFile'])
  }
}

function withSetting (err: unknown, setting: readonly string[]): unknown {
  if (err instanceof CredentialFileError) err.setting ??= setting
  return err
}

const FILE_ERRORS: Record<string, string> = { ENOENT: 'no such file', EACCES: 'permission denied', EISDIR: 'a directory, not a file', ELOOP: 'too many symbolic links' }

function readCredentialFile (file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === undefined ? undefined : FILE_ERRORS[code]
    throw new CredentialFileError(`cannot read ${file}: ${code ?? (err as Error).message}${why === undefined ? '' : ` (${why})`}`)
  }
}
