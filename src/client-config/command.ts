/**
 * `ecr-auth-proxy client-config <client> …`: prints or writes what a client needs to pull each
 * registry under its real name through the proxy. Exit codes: 0 done, 1 could not write, 2 bad
 * usage (one line on stderr, like the proxy's own flags).
 */
import { resolve } from 'node:path'
import { ClientConfigUsageError, parseRegistryHosts } from './names.js'
import { containerdHosts, dockerDaemonJson, k3sRegistries, kindClusterConfig, type RenderedFile } from './render.js'
import { writeFiles } from './write.js'

export interface Output {
  stdout: { write: (chunk: string) => unknown }
  stderr: { write: (chunk: string) => unknown }
}

export const DEFAULT_PROXY = 'http://127.0.0.1:5000'

const CLIENTS = {
  containerd: ['dir', 'proxy', 'server', 'ca'],
  k3s: ['proxy', 'ca'],
  kind: ['hosts-dir', 'proxy'],
  docker: ['proxy']
} as const
type Client = keyof typeof CLIENTS

export function clientConfigHelp (): string {
  return `Usage: ecr-auth-proxy client-config <client> [--registry HOST]... [options]

Prints (or writes) what a client needs to pull each registry under its real name through the
proxy, e.g. 600423610423.dkr.ecr.us-east-2.amazonaws.com/app:1.2 unchanged in a pod spec.

Clients:
  containerd [--dir DIR] [--proxy URL] [--server URL] [--ca FILE]
      one <host>/hosts.toml per registry (capabilities pull and resolve). Without --dir the
      files are printed, each after a "# <path>" line; with --dir (e.g. /etc/containerd/certs.d)
      they are written there, each replaced in one step.
  k3s [--proxy URL] [--ca FILE]
      registries.yaml for k3s (/etc/rancher/k3s/registries.yaml) and k3d (--registry-config).
  kind [--hosts-dir DIR] [--proxy URL]
      a kind cluster config whose containerd reads /etc/containerd/certs.d; with --hosts-dir,
      that directory (filled by "client-config containerd --dir DIR") is mounted on the node.
  docker [--proxy URL]
      /etc/docker/daemon.json making the proxy Docker Hub's mirror ("registry-mirrors"; Docker
      mirrors Docker Hub only). Needs docker.io mirrored (mirrors: in the config, or
      --registry docker.io); the proxy URL defaults to the --docker-hub-mirror-port listener
      when the config has one. A plain-HTTP proxy off loopback is also listed under
      "insecure-registries".

Options:
  --registry HOST  a registry hostname (no scheme, no path); repeat for each registry. The
                   registries and mirrored hosts of the proxy's config (--config FILE or
                   ECR_PROXY_CONFIG) are included without it
  --proxy URL      the proxy as the node's container runtime reaches it (default ${DEFAULT_PROXY})
  --server URL     containerd: the host tried last instead of each registry itself
  --ca FILE        a CA certificate file on the node, for an https:// proxy
  -h, --help       this text

Docs: docs/local-kubernetes.md
`
}

interface Parsed {
  client: Client
  registries: string[]
  options: Map<string, string>
}

function parse (argv: readonly string[]): Parsed | 'help' {
  if (argv.includes('--help') || argv.includes('-h')) return 'help'
  const [client, ...rest] = argv
  if (client === undefined) throw new ClientConfigUsageError('client-config: name a client: containerd, k3s, kind or docker (see client-config --help)')
  if (!Object.hasOwn(CLIENTS, client)) throw new ClientConfigUsageError(`client-config: unknown client ${JSON.stringify(client)}: containerd, k3s, kind or docker`)
  const allowed: readonly string[] = CLIENTS[client as Client]
  const where = `client-config ${client}`
  const registries: string[] = []
  const options = new Map<string, string>()
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg)
    if (m === null) throw new ClientConfigUsageError(`${where}: unexpected argument ${JSON.stringify(arg)}`)
    const name = m[1] as string
    if (name !== 'registry' && !allowed.includes(name)) throw new ClientConfigUsageError(`${where}: unknown option --${name}`)
    let value = m[2]
    if (value === undefined) {
      const next = rest[i + 1]
      if (next === undefined || next.startsWith('--')) throw new ClientConfigUsageError(`${where}: --${name} needs a value`)
      value = next
      i++
    }
    if (name === 'registry') registries.push(value)
    else if (options.has(name)) throw new ClientConfigUsageError(`${where}: --${name} given twice`)
    else options.set(name, value)
  }
  return { client: client as Client, registries, options }
}

/** What the proxy's own configuration says about how clients reach it. */
export interface ProxySettings {
  /** listener.dockerHubMirrorPort: Docker's registry-mirrors goes there. */
  dockerHubMirrorPort?: number | undefined
}

/**
 * Runs `client-config` with the arguments after it. `registries` are hostnames the caller
 * already knows (the proxy's configured registries and mirrored hosts); `--registry` flags add
 * to them.
 */
export async function runClientConfig (argv: readonly string[], registries: readonly string[], out: Output, settings: ProxySettings = {}): Promise<number> {
  let parsed: Parsed | 'help'
  let text: string
  let files: RenderedFile[] | undefined
  try {
    parsed = parse(argv)
    if (parsed === 'help') {
      out.stdout.write(clientConfigHelp())
      return 0
    }
    const { client, options } = parsed
    const hosts = parseRegistryHosts([...registries, ...parsed.registries])
    const proxy = options.get('proxy') ?? DEFAULT_PROXY
    const ca = options.get('ca')
    switch (client) {
      case 'containerd':
        files = containerdHosts({ registries: hosts, proxy, server: options.get('server'), ca })
        text = files.map((f) => `# ${f.path}\n${f.content}`).join('\n')
        break
      case 'k3s':
        text = k3sRegistries({ registries: hosts, proxy, ca })
        break
      case 'kind': {
        const dir = options.get('hosts-dir')
        const hostsDir = dir === undefined ? undefined : resolve(dir)
        const named = hosts.length === 0 ? ['--registry HOST'] : hosts.map((h) => `--registry ${h}`)
        const fillCommand = hostsDir === undefined ? undefined : ['ecr-auth-proxy client-config containerd', ...named, `--proxy ${proxy}`, `--dir ${hostsDir}`].join(' ')
        text = kindClusterConfig({ hostsDir, fillCommand })
        break
      }
      case 'docker': {
        if (!hosts.includes('docker.io')) throw new ClientConfigUsageError('client-config docker: Docker\'s registry-mirrors serves Docker Hub only, and docker.io is not mirrored here (mirrors: docker.io: { registry, prefix } in the config, or --registry docker.io when the proxy maps it)')
        const port = settings.dockerHubMirrorPort
        const daemon = dockerDaemonJson({ proxy: options.get('proxy') ?? (port === undefined || port === 0 ? DEFAULT_PROXY : `http://127.0.0.1:${port}`) })
        if (daemon.note !== undefined) out.stderr.write(`note: ${daemon.note}\n`)
        text = daemon.content
        break
      }
    }
    const dir = options.get('dir')
    if (dir === undefined || files === undefined) {
      out.stdout.write(text)
      return 0
    }
    return await write(resolve(dir), files, out)
  } catch (err) {
    if (!(err instanceof ClientConfigUsageError)) throw err
    out.stderr.write(`ecr-auth-proxy: ${err.message}\n`)
    return 2
  }
}

async function write (dir: string, files: RenderedFile[], out: Output): Promise<number> {
  try {
    await writeFiles(dir, files, ({ path, action }) => out.stdout.write(`${action} ${path}\n`))
    return 0
  } catch (err) {
    out.stderr.write(`ecr-auth-proxy: cannot write the hosts files under ${dir}: ${(err as Error).message}\n`)
    return 1
  }
}
