import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { Test } from 'tap'

export const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js')

export interface CliProcess {
  child: ChildProcess
  url: string
  stdout: () => string
  stderr: () => string
  /** Peak and current resident set size in bytes, from /proc. */
  memory: () => { peak: number, current: number }
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<void>
  waitForStderr: (pattern: RegExp, timeoutMs?: number) => Promise<void>
  exited: Promise<number | null>
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
    server.on('error', reject)
  })
}

/** Starts the built proxy the way a user does, with a clean environment plus `env`. */
export async function startCli (t: Test, args: string[], env: Record<string, string>): Promise<CliProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`)
  const port = await freePort()
  const child = spawn(process.execPath, [CLI, '--port', String(port), ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  const waiters: Array<() => void> = []
  const wake = () => { for (const w of waiters) w() }
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString(); wake() })
  child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString(); wake() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  const waitIn = async (read: () => string, pattern: RegExp, timeoutMs = 10_000): Promise<void> => {
    if (pattern.test(read())) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${String(pattern)}; stdout:\n${out}\nstderr:\n${err}`)), timeoutMs)
      waiters.push(() => {
        if (pattern.test(read())) {
          clearTimeout(timer)
          resolve()
        }
      })
      exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`the proxy exited (${String(code)}) before ${String(pattern)}; stdout:\n${out}\nstderr:\n${err}`))
      })
    })
  }
  const waitFor = async (pattern: RegExp, timeoutMs?: number) => await waitIn(() => out, pattern, timeoutMs)
  const waitForStderr = async (pattern: RegExp, timeoutMs?: number) => await waitIn(() => err, pattern, timeoutMs)
  const memory = () => {
    const status = readFileSync(`/proc/${child.pid ?? 0}/status`, 'utf8')
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024
    return { peak: kb('VmHWM'), current: kb('VmRSS') }
  }
  return { child, url: `http://127.0.0.1:${port}`, stdout: () => out, stderr: () => err, memory, waitFor, waitForStderr, exited }
}

/**
 * For tests that judge the proxy's memory by its RSS: Node 20's young generation (16 MiB
 * semi-spaces). Node 24 lets it grow to 128 MiB on a large machine (32 MiB on Node 20): garbage not
 * yet collected, which an RSS sample cannot tell from a leak or a buffered stream.
 */
export const STEADY_HEAP_ENV = { NODE_OPTIONS: '--max-semi-space-size=16' }

/** The environment that points the real SDK at the ECR API stand-in. */
export function awsTestEnv (apiUrl: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_ECR: apiUrl,
    AWS_REGION: 'us-east-2',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'secret'
  }
}

/** Resolves once /readyz answers 200 (the first token is held). */
export async function waitReady (proxy: CliProcess): Promise<void> {
  await proxy.waitFor(/ECR token refreshed/)
}
