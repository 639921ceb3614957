import { spawn, type ChildProcess } from 'node:child_process'
import { appendFileSync, closeSync, openSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Scope } from './scope.js'

/**
 * Long-running peers (registry, proxy, dockerd, containerd) run in their own process group so
 * that one signal stops a daemon and everything it started (dockerd's shims, for instance).
 * Every group is also written to $E2E_RUN_DIR/pgids so scripts/e2e.sh can stop leftovers
 * by id should this process die before its teardown runs.
 */
const liveGroups = new Set<number>()
/** Temporary directories not yet removed by their teardown. */
export const liveTempDirs = new Set<string>()

// Last resort when a test file dies before its teardowns (an uncaught error at top level).
process.once('exit', () => {
  for (const pgid of liveGroups) signalGroup(pgid, 'SIGKILL')
  if (process.env.E2E_KEEP === '1') return
  for (const dir of liveTempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch {}
  }
})

function signalGroup (pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal)
    return true
  } catch {
    return false
  }
}

function recordGroup (pgid: number): void {
  const runDir = process.env.E2E_RUN_DIR
  if (runDir !== undefined && runDir !== '') appendFileSync(join(runDir, 'pgids'), `${pgid}\n`)
}

export interface ExitStatus { code: number | null, signal: NodeJS.Signals | null }

export interface Service {
  name: string
  pid: number
  logFile: string
  /** Resolves when the process exits (for whatever reason). */
  exited: Promise<ExitStatus>
  /** True until the process has exited. */
  readonly running: boolean
  /** The last `lines` lines of its combined stdout and stderr. */
  logTail (lines?: number): string
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the leader has exited. */
  stop (graceMs?: number): Promise<void>
}

export interface ServiceOptions {
  cwd: string
  env?: NodeJS.ProcessEnv
  /** Where stdout and stderr go. */
  logFile: string
}

/** Starts a daemon in its own process group; stopped by a teardown registered on `t` right away. */
export function startService (t: Scope, name: string, command: string, args: string[], opts: ServiceOptions): Service {
  const fd = openSync(opts.logFile, 'a')
  let child: ChildProcess
  try {
    child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true,
      stdio: ['ignore', fd, fd],
    })
  } finally {
    closeSync(fd)
  }
  const pid = child.pid
  if (pid === undefined) throw new Error(`${name}: could not start ${command}`)
  liveGroups.add(pid)
  recordGroup(pid)
  let running = true
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false
      resolve({ code, signal })
    })
    child.once('error', () => {
      running = false
      resolve({ code: null, signal: null })
    })
  })

  const service: Service = {
    name,
    pid,
    logFile: opts.logFile,
    exited,
    get running () { return running },
    logTail (lines = 40) {
      let text = ''
      try {
        text = readFileSync(opts.logFile, 'utf8')
      } catch {
        return ''
      }
      return text.split('\n').slice(-lines - 1).join('\n')
    },
    async stop (graceMs = 10_000) {
      if (running) {
        signalGroup(pid, 'SIGTERM')
        const timer = setTimeout(() => signalGroup(pid, 'SIGKILL'), graceMs)
        await exited
        clearTimeout(timer)
      }
      // Whatever the leader left behind in its group (shims, helpers).
      signalGroup(pid, 'SIGKILL')
      liveGroups.delete(pid)
    },
  }
  t.teardown(() => service.stop())
  return service
}

export interface RunResult { command: string, code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string, durationMs: number }

export interface RunOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  input?: string
  /** Killed (whole process group) after this long; default 120 s. */
  timeoutMs?: number
}

/** The command line as one could paste it into a shell (for messages). */
export function shellLine (command: string, args: string[]): string {
  return [command, ...args].map((word) => /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`).join(' ')
}

/** Runs a client command to completion; never throws (see `check`). */
export async function run (command: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = Date.now()
  const line = shellLine(command, args)
  return await new Promise<RunResult>((resolve) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    })
    const pid = child.pid
    if (pid !== undefined) liveGroups.add(pid)
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk))
    if (opts.input !== undefined) child.stdin?.end(opts.input)
    const timeoutMs = opts.timeoutMs ?? 120_000
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      if (pid !== undefined) signalGroup(pid, 'SIGKILL')
    }, timeoutMs)
    const finish = (code: number | null, signal: NodeJS.Signals | null, extra = ''): void => {
      clearTimeout(timer)
      if (pid !== undefined) liveGroups.delete(pid)
      const stderr = Buffer.concat(err).toString('utf8') + extra + (timedOut ? `\n[e2e] killed after ${timeoutMs} ms` : '')
      resolve({ command: line, code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr, durationMs: Date.now() - started })
    }
    child.once('error', (error) => finish(null, null, `\n[e2e] could not run: ${error.message}`))
    child.once('close', (code, signal) => finish(code, signal))
  })
}

/** A client invocation that failed: the message carries the command, exit status and stderr. */
export class ClientError extends Error {
  override name = 'ClientError'
  readonly result: RunResult
  constructor (client: string, result: RunResult) {
    const status = result.signal !== null ? `signal ${result.signal}` : `exit code ${String(result.code)}`
    // The last line a client prints on stderr is usually its verdict (skopeo: level=fatal msg=…).
    const verdict = result.stderr.trim().split('\n').filter((line) => line.trim() !== '').pop() ?? '(nothing on stderr)'
    super(`${client} failed (${status}): ${verdict}\n  $ ${result.command}\n  (${result.durationMs} ms)\n` +
      `--- ${client} stderr ---\n${result.stderr.trimEnd()}\n--- ${client} stdout ---\n${result.stdout.trimEnd()}`)
    this.result = result
  }
}

/** Runs and throws a ClientError unless the command exited 0. */
export async function check (client: string, command: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const result = await run(command, args, opts)
  if (result.code !== 0) throw new ClientError(client, result)
  return result
}
