/**
 * What `client-config` accepts as a registry hostname and as a proxy or server URL. Kept apart
 * from the proxy's own config schema on purpose: these strings end up as directory names and
 * as keys in files that a node's container runtime reads, so they are checked here whatever
 * fed them (flags today, the configured registries later).
 */

/** Bad input to `client-config`: the CLI prints the message and exits 2. */
export class ClientConfigUsageError extends Error {
  override name = 'ClientConfigUsageError'
}

// One DNS label as the image-reference grammar has it (distribution/reference: domainComponent),
// lower case only: containerd looks the host up in its hosts directory byte for byte.
const LABEL = '(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])'
const HOST = new RegExp(`^${LABEL}(?:\\.${LABEL})*(?::([0-9]{1,5}))?$`)

/**
 * A registry hostname as it begins an image reference: `600423610423.dkr.ecr.us-east-2.amazonaws.com`,
 * `public.ecr.aws`, `docker.io`, `localhost:5000`. No scheme, no path.
 */
export function parseRegistryHost (value: string, flag = '--registry'): string {
  const shown = JSON.stringify(value)
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value)
  if (scheme !== null) {
    throw new ClientConfigUsageError(`${flag} ${shown}: a hostname, not a URL (drop ${scheme[0]})`)
  }
  if (value.includes('/')) throw new ClientConfigUsageError(`${flag} ${shown}: a hostname, without a path`)
  if (value !== value.toLowerCase()) throw new ClientConfigUsageError(`${flag} ${shown}: write the hostname in lower case (image references do)`)
  const match = HOST.exec(value)
  if (match === null) throw new ClientConfigUsageError(`${flag} ${shown}: not a registry hostname`)
  const port = match[1]
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) throw new ClientConfigUsageError(`${flag} ${shown}: port out of range`)
  // An image reference's first component names a registry only when it has a dot or a port or
  // is localhost (distribution/reference); `foo/app` is docker.io/foo/app, so `foo` never matches.
  if (!value.includes('.') && port === undefined && value !== 'localhost') {
    throw new ClientConfigUsageError(`${flag} ${shown}: a registry hostname has a dot, a port or is localhost (image references read "${value}/app" as docker.io/${value}/app)`)
  }
  return value
}

/** An http:// or https:// origin (scheme, host, optional port), returned normalised. */
export function parseOriginUrl (value: string, flag: string): string {
  const shown = JSON.stringify(value)
  if (!/^https?:\/\//i.test(value)) throw new ClientConfigUsageError(`${flag} ${shown}: must be an http:// or https:// URL, e.g. http://127.0.0.1:5000`)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new ClientConfigUsageError(`${flag} ${shown}: not a URL`)
  }
  if (url.username !== '' || url.password !== '') throw new ClientConfigUsageError(`${flag} ${shown}: no credentials in the URL`)
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new ClientConfigUsageError(`${flag} ${shown}: scheme, host and port only (containerd adds /v2 itself)`)
  }
  return url.origin
}

/** The registry's own endpoint: what containerd uses for a host when nothing is configured. */
export function registryServer (host: string): string {
  // containerd (remotes/docker/config/hosts.go): docker.io's default host is registry-1.docker.io.
  return host === 'docker.io' ? 'https://registry-1.docker.io' : `https://${host}`
}

/** Registry hostnames, checked, without repeats, in the order given. */
export function parseRegistryHosts (values: readonly string[], flag = '--registry'): string[] {
  return [...new Set(values.map((v) => parseRegistryHost(v, flag)))]
}
