/**
 * What a client needs to send each registry's real name through the proxy, as text. Pure: no
 * file system, no clock. Each function checks its input (names.ts) because the result becomes
 * directory names and keys a node's container runtime reads.
 *
 * The mechanism is containerd's registry hosts (docs/hosts.md in containerd): for an image
 * `<host>/app:1.2` containerd reads `<config_path>/<host>/hosts.toml`, tries each `[host."…"]`
 * in order and the root `server` last, and tells a mirror which registry it wants with
 * `?ns=<host>` (containerd ≥ 1.4). k3s and k3d write those files themselves from
 * registries.yaml; kind runs a plain containerd whose config_path a patch sets.
 */
import { ClientConfigUsageError, parseOriginUrl, parseRegistryHosts, registryServer } from './names.js'

export interface ClientConfigInput {
  /** Registry hostnames, e.g. 600423610423.dkr.ecr.us-east-2.amazonaws.com, public.ecr.aws, docker.io. */
  registries: readonly string[]
  /** The proxy as the node's container runtime reaches it, e.g. http://127.0.0.1:5000. */
  proxy: string
}

export interface ContainerdHostsInput extends ClientConfigInput {
  /**
   * The host containerd tries last, for every registry, instead of the registry itself (e.g. a
   * closed 127.0.0.1 port in tests, so that nothing leaves the machine).
   */
  server?: string
  /** A CA certificate file for an https:// proxy (absolute, or relative to the host's directory). */
  ca?: string
}

export interface RenderedFile {
  /** Relative to the hosts directory: `<host>/hosts.toml`. */
  path: string
  content: string
}

/** The directory containerd reads hosts.toml from, wherever the node's containerd is configured. */
export const CONTAINERD_CERTS_DIR = '/etc/containerd/certs.d'

/** A TOML basic string or YAML double-quoted scalar: JSON's escapes are valid in both. */
const quoted = (s: string): string => JSON.stringify(s)

function checked (input: ClientConfigInput): { registries: string[], proxy: string } {
  const registries = parseRegistryHosts(input.registries)
  if (registries.length === 0) throw new ClientConfigUsageError('no registries: give --registry HOST, once per registry')
  return { registries, proxy: parseOriginUrl(input.proxy, '--proxy') }
}

function checkedCa (ca: string | undefined, proxy: string): string | undefined {
  if (ca === undefined) return undefined
  if (ca === '') throw new ClientConfigUsageError('--ca: empty path')
  // On an http:// host any TLS setting makes containerd ≥ 1.6.25 / 1.7.7 try HTTPS first
  // (FACTS §6): refuse rather than write a file that slows every pull.
  if (proxy.startsWith('http:')) throw new ClientConfigUsageError('--ca is for an https:// proxy; this one is plain HTTP')
  return ca
}

/** containerd: one `<host>/hosts.toml` per registry, the proxy first, the registry itself last. */
export function containerdHosts (input: ContainerdHostsInput): RenderedFile[] {
  const { registries, proxy } = checked(input)
  const server = input.server === undefined ? undefined : parseOriginUrl(input.server, '--server')
  const ca = checkedCa(input.ca, proxy)
  const plain = proxy.startsWith('http:')
  return registries.map((host) => ({
    path: `${host}/hosts.toml`,
    content: [
      `# ${host}: pulls go through ecr-auth-proxy (${proxy}), which adds the registry's credentials.`,
      '# Written by `ecr-auth-proxy client-config containerd`; containerd reads it on every pull.',
      '',
      '# Tried last, only when the proxy fails.',
      `server = ${quoted(server ?? registryServer(host))}`,
      '',
      `[host.${quoted(proxy)}]`,
      // Without "resolve" the tag lookup (HEAD …/manifests/<tag>) skips the mirror; pushes
      // carry no ?ns= before containerd 2.3, so they are left to the registry itself.
      '  capabilities = ["pull", "resolve"]',
      ...(plain
        ? ['  # Plain HTTP, and no ca or skip_verify: either would make containerd try HTTPS first.']
        : ca === undefined ? [] : [`  ca = ${quoted(ca)}`]),
      ''
    ].join('\n')
  }))
}

export interface K3sRegistriesInput extends ClientConfigInput {
  /** A CA certificate file (on the node) for an https:// proxy. */
  ca?: string
}

/** k3s and k3d: registries.yaml, from which k3s writes containerd's hosts.toml itself. */
export function k3sRegistries (input: K3sRegistriesInput): string {
  const { registries, proxy } = checked(input)
  const ca = checkedCa(input.ca, proxy)
  const lines = [
    '# k3s: /etc/rancher/k3s/registries.yaml on every node (restart k3s after a change);',
    '# k3d: k3d cluster create --registry-config <this file>.',
    '# Written by `ecr-auth-proxy client-config k3s`. k3s still tries each registry itself last.',
    'mirrors:'
  ]
  for (const host of registries) lines.push(`  ${quoted(host)}:`, '    endpoint:', `      - ${quoted(proxy)}`)
  if (ca !== undefined) {
    // k3s keys TLS settings by the endpoint's host[:port].
    lines.push('configs:', `  ${quoted(new URL(proxy).host)}:`, '    tls:', `      ca_file: ${quoted(ca)}`)
  }
  return `${lines.join('\n')}\n`
}

/**
 * kind: the containerdConfigPatches entry that makes the node's containerd (CRI plugin) read
 * hosts.toml files from /etc/containerd/certs.d. The same patch kind's local-registry guide uses.
 */
export function kindContainerdPatch (): string {
  return `[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ${quoted(CONTAINERD_CERTS_DIR)}\n`
}

export interface KindClusterInput {
  /**
   * An absolute directory on the machine running kind, holding `<host>/hosts.toml` files
   * (written by `client-config containerd --dir`), mounted read-only as the nodes' certs.d.
   * Without it the nodes' certs.d stays theirs, for the DaemonSet's init container to fill.
   */
  hostsDir?: string
  /** The command that fills hostsDir, shown in a comment. */
  fillCommand?: string
}

/** A whole kind cluster config: the patch, and (with hostsDir) the mount of the hosts directory. */
export function kindClusterConfig (input: KindClusterInput = {}): string {
  const patch = kindContainerdPatch().trimEnd().split('\n').map((l) => `    ${l}`)
  const lines = [
    '# kind create cluster --config <this file>',
    '# Written by `ecr-auth-proxy client-config kind`.',
    'kind: Cluster',
    'apiVersion: kind.x-k8s.io/v1alpha4',
    'containerdConfigPatches:',
    '  - |-',
    ...patch
  ]
  const dir = input.hostsDir
  if (dir === undefined) {
    lines.push(
      '# /etc/containerd/certs.d stays inside each node: the DaemonSet (deploy/daemonset) writes',
      '# a hosts.toml there per registry on every node it runs on.'
    )
  } else {
    if (!dir.startsWith('/')) throw new ClientConfigUsageError(`--hosts-dir ${quoted(dir)}: give an absolute path`)
    lines.push(
      `# Every node reads the hosts.toml files in ${dir}${input.fillCommand === undefined ? '' : `, written by:\n#   ${input.fillCommand}`}`,
      '# The mount is read-only: run the proxy where the nodes reach it (e.g. a container on the',
      '# kind network), not the DaemonSet, whose init container writes certs.d itself.',
      '# Add the same extraMounts to each further node (role: worker).',
      'nodes:',
      '  - role: control-plane',
      '    extraMounts:',
      `      - hostPath: ${quoted(dir)}`,
      `        containerPath: ${quoted(CONTAINERD_CERTS_DIR)}`,
      '        readOnly: true'
    )
  }
  return `${lines.join('\n')}\n`
}

export interface DockerDaemonJson {
  /** The daemon.json text. */
  content: string
  /** What the user must know that JSON cannot say; undefined when nothing. */
  note?: string
}

/**
 * Docker Engine: daemon.json with the proxy as Docker Hub's mirror (`registry-mirrors` applies to
 * Docker Hub only; FACTS §6). dockerd speaks plain HTTP without asking only to 127.0.0.0/8 and
 * ::1, so a plain-HTTP proxy elsewhere is also listed under `insecure-registries`.
 */
export function dockerDaemonJson (input: { proxy: string }): DockerDaemonJson {
  const proxy = parseOriginUrl(input.proxy, '--proxy')
  const url = new URL(proxy)
  const loopback = /^127\.\d+\.\d+\.\d+$/.test(url.hostname) || url.hostname === '[::1]' || url.hostname === 'localhost'
  const insecure = url.protocol === 'http:' && !loopback
  const json: Record<string, string[]> = { 'registry-mirrors': [proxy] }
  if (insecure) json['insecure-registries'] = [url.host]
  return {
    content: `${JSON.stringify(json, null, 2)}\n`,
    ...(insecure
      ? { note: `${url.host} is plain HTTP off loopback: dockerd uses plain HTTP there only when it is listed in "insecure-registries" (included above); merge both keys into /etc/docker/daemon.json and restart dockerd` }
      : {})
  }
}
