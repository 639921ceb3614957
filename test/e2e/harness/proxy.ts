import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startService, type Service } from './process.js'
import { freePort, httpStatus, waitFor } from './util.js'
import type { Scope } from './scope.js'

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url))
export const PROXY_CLI = join(REPO_ROOT, 'dist', 'src', 'cli.js')

export interface Proxy {
  /** http://127.0.0.1:PORT */
  url: string
  /** 127.0.0.1:PORT — what clients put in front of an image name. */
  host: string
  service: Service
}

export interface ProxyOptions {
  /** One registry: `--upstream URL`. */
  upstream?: string
  /** Or a config file (`--config FILE`), e.g. naming several registries; exactly one of the two. */
  configFile?: string
  ecrApiUrl: string
  /** Extra command-line flags. */
  args?: string[]
  env?: Record<string, string>
}

/** The proxy, started the way a user starts it: the built CLI, flags, and the SDK's env vars. */
export async function startProxy (t: Scope, dir: string, opts: ProxyOptions): Promise<Proxy> {
  if (!existsSync(PROXY_CLI)) throw new Error(`${PROXY_CLI} is missing: run \`npm run build\` first`)
  if ((opts.upstream === undefined) === (opts.configFile === undefined)) throw new Error('startProxy: give either upstream or configFile')
  const source = opts.upstream !== undefined ? ['--upstream', opts.upstream] : ['--config', opts.configFile as string]
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: dir,
    // The real AWS SDK, pointed at the stand-in API; nothing read from this machine's AWS setup,
    // and never the instance metadata service (not a loopback address).
    AWS_ENDPOINT_URL_ECR: opts.ecrApiUrl,
    AWS_REGION: 'us-east-2',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
    AWS_CONFIG_FILE: join(dir, 'aws-config-absent'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'aws-credentials-absent'),
    AWS_EC2_METADATA_DISABLED: 'true',
    NO_PROXY: '*',
    ...opts.env,
  }
  // As for the registry: should the port have been taken meanwhile, the proxy exits, and is
  // started again on another one.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const args = [PROXY_CLI, '--host', '127.0.0.1', '--port', String(port), ...source, '--log-level', 'info', ...(opts.args ?? [])]
    const service = startService(t, 'ecr-auth-proxy', process.execPath, args, { cwd: dir, env, logFile: join(dir, 'proxy.log') })
    const url = `http://127.0.0.1:${port}`
    const state = await waitFor('the proxy to answer /healthz', async () => {
      if (!service.running) return 'exited'
      // /healthz answers, and the log says this process listens on that port.
      const listening = new RegExp(`listening[^\\n]*127\\.0\\.0\\.1:${port}(?!\\d)`, 'i')
      const up = (await httpStatus(`${url}/healthz`)) === 200 && listening.test(service.logTail(100))
      return up ? 'up' : undefined
    }, { timeoutMs: 20_000, detail: () => `--- proxy log ---\n${service.logTail()}` })
    if (state === 'up') return { url, host: `127.0.0.1:${port}`, service }
    if (attempt === 3 || !/EADDRINUSE|address already in use/i.test(service.logTail())) {
      throw new Error(`the proxy exited at start:\n${service.logTail()}`)
    }
  }
}
