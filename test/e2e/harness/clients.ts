import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { check, run, startService, type RunOptions, type RunResult, type Service } from './process.js'
import { waitFor } from './util.js'
import type { Scope } from './scope.js'

/**
 * The real clients, each with its own state under a temporary directory and an empty
 * credentials store: whatever they send to the proxy, they send without credentials.
 */

const CLIENT_TIMEOUT_MS = 180_000

function baseEnv (home: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: home, NO_PROXY: '*', LANG: 'C.UTF-8' }
}

function firstLine (text: string): string {
  return text.trim().split('\n')[0] ?? ''
}

/** skopeo with an empty auth file (so no credentials from this machine). */
export class Skopeo {
  readonly env: NodeJS.ProcessEnv

  constructor (dir: string) {
    mkdirSync(join(dir, 'run'), { recursive: true })
    writeFileSync(join(dir, 'auth.json'), '{}\n')
    this.env = { ...baseEnv(dir), REGISTRY_AUTH_FILE: join(dir, 'auth.json'), XDG_RUNTIME_DIR: join(dir, 'run') }
  }

  async run (args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return await check('skopeo', 'skopeo', args, { timeoutMs: CLIENT_TIMEOUT_MS, env: this.env, ...opts })
  }

  /** Runs without throwing (for commands expected to fail). */
  async attempt (args: string[]): Promise<RunResult> {
    return await run('skopeo', args, { timeoutMs: CLIENT_TIMEOUT_MS, env: this.env })
  }

  async version (): Promise<string> {
    return firstLine((await this.run(['--version'])).stdout).replace(/^skopeo version /, '')
  }
}

/** podman as root with vfs storage, all state under a temporary directory. */
export class Podman {
  readonly env: NodeJS.ProcessEnv
  readonly globalArgs: string[]

  constructor (dir: string) {
    for (const sub of ['root', 'run', 'tmp', 'net', 'xdg']) mkdirSync(join(dir, sub), { recursive: true })
    writeFileSync(join(dir, 'auth.json'), '{}\n')
    writeFileSync(join(dir, 'containers.conf'), [
      '[network]',
      `network_config_dir = ${JSON.stringify(join(dir, 'net'))}`,
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = ${JSON.stringify(join(dir, 'events.log'))}`,
      `static_dir = ${JSON.stringify(join(dir, 'root', 'libpod'))}`,
      `volume_path = ${JSON.stringify(join(dir, 'root', 'volumes'))}`,
      '',
    ].join('\n'))
    this.env = {
      ...baseEnv(dir),
      CONTAINERS_CONF: join(dir, 'containers.conf'),
      REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
      XDG_RUNTIME_DIR: join(dir, 'xdg'),
    }
    this.globalArgs = [
      '--root', join(dir, 'root'),
      '--runroot', join(dir, 'run'),
      '--tmpdir', join(dir, 'tmp'),
      '--storage-driver', 'vfs',
      '--cgroup-manager', 'cgroupfs',
      '--events-backend', 'file',
      '--network-config-dir', join(dir, 'net'),
    ]
  }

  async run (args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return await check('podman', 'podman', [...this.globalArgs, ...args], { timeoutMs: CLIENT_TIMEOUT_MS, env: this.env, ...opts })
  }

  async version (): Promise<string> {
    return (await this.run(['version', '--format', '{{.Client.Version}}'])).stdout.trim()
  }
}

/** containerd of our own (own root, state and socket), driven with ctr. */
export class Containerd {
  readonly address: string
  readonly service: Service
  readonly namespace = 'e2e'

  private constructor (address: string, service: Service) {
    this.address = address
    this.service = service
  }

  static async start (t: Scope, dir: string): Promise<Containerd> {
    mkdirSync(dir, { recursive: true })
    const address = join(dir, 'containerd.sock')
    const config = join(dir, 'config.toml')
    writeFileSync(config, [
      'version = 2',
      `root = ${JSON.stringify(join(dir, 'root'))}`,
      `state = ${JSON.stringify(join(dir, 'state'))}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = ${JSON.stringify(address)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(`${address}.ttrpc`)}`,
      '[debug]',
      '  address = ""',
      '[metrics]',
      '  address = ""',
      '',
    ].join('\n'))
    const service = startService(t, 'containerd', 'containerd', ['--config', config], {
      cwd: dir,
      logFile: join(dir, 'containerd.log'),
      env: baseEnv(dir),
    })
    const containerd = new Containerd(address, service)
    await waitFor('containerd to answer', async () => {
      if (!service.running) throw new Error('containerd exited')
      return (await run('ctr', ['--address', address, 'version'], { timeoutMs: 5_000 })).code === 0 ? true : undefined
    }, { timeoutMs: 30_000, intervalMs: 250, detail: () => service.logTail() })
    return containerd
  }

  async ctr (args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return await check('ctr', 'ctr', ['--address', this.address, '--namespace', this.namespace, ...args], { timeoutMs: CLIENT_TIMEOUT_MS, ...opts })
  }

  /** The digest ctr records for an image reference (`ctr images ls`). */
  async imageDigest (reference: string): Promise<string> {
    const { stdout } = await this.ctr(['images', 'ls'])
    for (const line of stdout.split('\n').slice(1)) {
      const [ref, , digest] = line.trim().split(/\s+/)
      if (ref === reference && digest !== undefined) return digest
    }
    throw new Error(`ctr images ls lists no ${reference}:\n${stdout}`)
  }

  async versions (): Promise<{ ctr: string, containerd: string }> {
    const { stdout } = await this.ctr(['version'])
    const versions = [...stdout.matchAll(/Version:\s+(\S+)/g)].map((match) => match[1] ?? '')
    return { ctr: versions[0] ?? '?', containerd: versions[1] ?? '?' }
  }
}

/** dockerd (vfs, no iptables, no bridge) on its own socket, over our containerd. */
export class DockerEngine {
  readonly env: NodeJS.ProcessEnv
  readonly service: Service
  /** The docker CLI binary (E2E_DOCKER_CLI picks another, e.g. /usr/bin/docker). */
  readonly cli = process.env.E2E_DOCKER_CLI ?? 'docker'

  private constructor (env: NodeJS.ProcessEnv, service: Service) {
    this.env = env
    this.service = service
  }

  /**
   * @param opts.outboundProxy a port on 127.0.0.1 given to dockerd as HTTP_PROXY and HTTPS_PROXY:
   * Go never proxies loopback addresses, so the proxy under test is reached directly, while
   * anything else dockerd might try (Docker Hub, a real ECR hostname) goes to that port — a
   * closed one refuses it, and nothing leaves the machine.
   * @param opts.daemonConfig the content of dockerd's `--config-file` (daemon.json; default `{}`),
   * e.g. `{ "registry-mirrors": ["http://127.0.0.1:P"] }`.
   */
  static async start (t: Scope, dir: string, containerd: Containerd, opts: { outboundProxy?: number, daemonConfig?: Record<string, unknown> } = {}): Promise<DockerEngine> {
    for (const sub of ['data', 'exec', 'config']) mkdirSync(join(dir, sub), { recursive: true })
    const socket = join(dir, 'docker.sock')
    writeFileSync(join(dir, 'daemon.json'), `${JSON.stringify(opts.daemonConfig ?? {})}\n`)
    // No credentials, no credential helpers.
    writeFileSync(join(dir, 'config', 'config.json'), '{}\n')
    const service = startService(t, 'dockerd', 'dockerd', [
      '--config-file', join(dir, 'daemon.json'),
      '--data-root', join(dir, 'data'),
      '--exec-root', join(dir, 'exec'),
      '--pidfile', join(dir, 'dockerd.pid'),
      '--host', `unix://${socket}`,
      '--containerd', containerd.address,
      '--storage-driver', 'vfs',
      '--iptables=false',
      '--ip6tables=false',
      '--ip-masq=false',
      '--bridge=none',
    ], { cwd: dir, logFile: join(dir, 'dockerd.log'), env: { ...baseEnv(dir), ...outboundProxyEnv(opts.outboundProxy) } })
    const env = { ...baseEnv(dir), DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: join(dir, 'config') }
    const engine = new DockerEngine(env, service)
    await waitFor('dockerd to answer', async () => {
      if (!service.running) throw new Error('dockerd exited')
      return (await run(engine.cli, ['version'], { env, timeoutMs: 5_000 })).code === 0 ? true : undefined
    }, { timeoutMs: 60_000, intervalMs: 250, detail: () => service.logTail() })
    return engine
  }

  async docker (args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return await check('docker', this.cli, args, { timeoutMs: CLIENT_TIMEOUT_MS, env: this.env, ...opts })
  }

  async versions (): Promise<{ client: string, server: string }> {
    const { stdout } = await this.docker(['version', '--format', '{{.Client.Version}} {{.Server.Version}}'])
    const [client = '?', server = '?'] = stdout.trim().split(' ')
    return { client, server }
  }
}

function outboundProxyEnv (port: number | undefined): NodeJS.ProcessEnv {
  if (port === undefined) return {}
  const url = `http://127.0.0.1:${port}`
  return { HTTP_PROXY: url, HTTPS_PROXY: url, http_proxy: url, https_proxy: url, NO_PROXY: '', no_proxy: '' }
}

/**
 * A `--hosts-dir` for ctr (containerd's hosts.toml layout): for each registry hostname,
 * `<dir>/<host>/hosts.toml` sends pull and resolve to `mirror` (plain HTTP; containerd adds
 * `?ns=<host>`), and sets the root `server` — which containerd tries last, after any mirror
 * failure — to `fallback`, a closed port on 127.0.0.1, so that no request can leave the machine
 * for the real registry.
 */
export function mirrorHostsDir (dir: string, hosts: readonly string[], mirror: string, fallback: string): string {
  for (const host of hosts) {
    mkdirSync(join(dir, host), { recursive: true })
    writeFileSync(join(dir, host, 'hosts.toml'), [
      `server = ${JSON.stringify(fallback)}`,
      '',
      `[host.${JSON.stringify(mirror)}]`,
      '  capabilities = ["pull", "resolve"]',
      '',
    ].join('\n'))
  }
  return dir
}

export interface CurlResponse { status: number, headers: Record<string, string>, body: string }

/** curl as a client: status, headers (lower-case names; the last of repeated ones) and body. */
export async function curl (args: string[]): Promise<CurlResponse> {
  const { stdout } = await check('curl', 'curl', ['-sS', '--max-time', '30', '-D', '-', ...args], { env: baseEnv(process.cwd()) })
  // Headers, a blank line, then the body (no 1xx: curl sends no Expect for small bodies).
  const split = stdout.indexOf('\r\n\r\n')
  const head = stdout.slice(0, split).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(head[0]?.split(' ')[1]), headers, body: stdout.slice(split + 4) }
}

export async function curlVersion (): Promise<string> {
  return firstLine((await check('curl', 'curl', ['--version'])).stdout).split(' ')[1] ?? '?'
}
