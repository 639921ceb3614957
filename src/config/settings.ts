import { LOG_LEVELS } from './schema.js'

/** `list`: comma-separated in flags and the environment, a list in the config file. */
export type Kind = 'string' | 'integer' | 'number' | 'boolean' | 'list'

export interface Setting {
  /** The flat name of earlier releases, e.g. ['refresh', 'fraction']: flag, variable and legacy file key derive from it. */
  name: readonly string[]
  /** Where the value lives in the sectioned configuration, e.g. ['credentials', 'refresh', 'fraction']. */
  path: readonly string[]
  /** The config-file key to document: the path, with `registries[0]` for the first registry. */
  key: string
  flag: string
  env: string
  kind: Kind
  help: string
  /** A secret: no flag (argv is visible to every local user), never echoed in an error. */
  secret?: boolean
  /** The flag may be given several times; its values add up. */
  repeatable?: boolean
  /** Turns the items of a list from a flag or variable into the config value. */
  fromList?: (items: string[]) => unknown
  /** What --help shows as the flag's argument. */
  metavar?: string
}

function setting (section: readonly string[], name: readonly string[], kind: Kind, help: string, secret = false): Setting {
  const words = name.flatMap((part) => part.replace(/([A-Z])/g, ' $1').toLowerCase().split(' '))
  // The forwarding section drops the `upstream` prefix its flat names carried.
  const last = name[name.length - 1] as string
  const leaf = section[0] === 'forwarding' ? last.replace(/^upstream([A-Z])/, (_, c: string) => c.toLowerCase()) : last
  const path = [...section, ...name.slice(0, -1), leaf]
  return {
    name,
    path,
    key: path.join('.').replace(/^registries\.0\./, 'registries[0].'),
    kind,
    help,
    flag: secret ? '' : words.join('-'),
    env: `ECR_PROXY_${words.join('_').toUpperCase()}`,
    ...(secret ? { secret } : {})
  }
}

/** `HOST[=ALIAS]` items of --registry / ECR_PROXY_REGISTRIES → registries entries. */
function registryEntries (items: string[]): Array<{ registry: string, alias?: string }> {
  return items.map((item) => {
    const at = item.indexOf('=')
    return at === -1 ? { registry: item } : { registry: item.slice(0, at), alias: item.slice(at + 1) }
  })
}

/** `HOST=REGISTRY/PREFIX` items of --mirror / ECR_PROXY_MIRRORS → the mirrors mapping. */
function mirrorEntries (items: string[]): Record<string, { registry: string, prefix: string }> {
  const mirrors: Record<string, { registry: string, prefix: string }> = {}
  for (const item of items) {
    const match = /^([^=]+)=([^/]+)\/(.+)$/.exec(item)
    if (match === null) throw new Error(`must be HOST=REGISTRY/PREFIX (e.g. docker.io=prod/docker-hub), got ${JSON.stringify(item)}`)
    const [, host, registry, prefix] = match as unknown as [string, string, string, string]
    mirrors[host.toLowerCase()] = { registry, prefix }
  }
  return mirrors
}

/** `cache.<leaf>`: flag `--cache-<leaf>`, variable `ECR_PROXY_CACHE_<LEAF>`. */
function cacheSetting (leaf: string, kind: Kind, help: string, metavar?: string): Setting {
  const name = `cache${leaf[0]?.toUpperCase() ?? ''}${leaf.slice(1)}`
  return { ...setting([], [name], kind, help), path: ['cache', leaf], key: `cache.${leaf}`, ...(metavar === undefined ? {} : { metavar }) }
}

const LISTENER = ['listener']
const ACCESS = ['access']
const REGISTRY = ['registries', '0']
const CREDENTIALS = ['credentials']
const FORWARDING = ['forwarding']

/** Every setting has a flag, an environment variable and a config key of the same meaning. */
export const SETTINGS: readonly Setting[] = [
  {
    ...setting([], ['registries'], 'list', 'registries to serve, by hostname, each with an optional alias: HOST[=ALIAS]; repeatable, or comma-separated (e.g. 600423610423.dkr.ecr.us-east-2.amazonaws.com=prod); replaces the file\'s list'),
    flag: 'registry',
    key: 'registries[].registry, registries[].alias',
    repeatable: true,
    fromList: registryEntries,
    metavar: 'HOST[=ALIAS]'
  },
  {
    ...setting([], ['mirrors'], 'list', 'serve a public registry (docker.io, registry.k8s.io, quay.io, ghcr.io, public.ecr.aws, …) from an ECR pull-through cache: HOST=REGISTRY/PREFIX, REGISTRY a configured registry\'s hostname or alias, PREFIX the cache rule\'s repository prefix (e.g. docker.io=prod/docker-hub); repeatable, or comma-separated; pull only; replaces the file\'s mapping'),
    flag: 'mirror',
    key: 'mirrors.<host>.registry, mirrors.<host>.prefix',
    repeatable: true,
    fromList: mirrorEntries,
    metavar: 'HOST=REGISTRY/PREFIX'
  },
  setting([], ['anyEcrRegistry'], 'boolean', 'also serve every other hostname of ECR\'s private-registry grammar (<account>.dkr.ecr.<region>.amazonaws.com, …), with that region\'s token fetched on first use'),
  setting(LISTENER, ['host'], 'string', 'address to listen on (default 127.0.0.1)'),
  setting(LISTENER, ['port'], 'integer', 'port to listen on (default 5000; 0 picks a free port)'),
  setting(LISTENER, ['dockerHubMirrorPort'], 'integer', 'also listen on this port, on the same host, serving only the docker.io mirror: Docker\'s registry-mirrors for set-ups that also have a default registry (needs a docker.io mirror; 0 picks a free port)'),
  setting(REGISTRY, ['region'], 'string', 'AWS region of the registry (default: the SDK\'s AWS_REGION / profile setting)'),
  setting(REGISTRY, ['registryId'], 'string', 'AWS account id of the registry; default: the proxyEndpoint GetAuthorizationToken returns'),
  setting(REGISTRY, ['upstream'], 'string', 'registry origin to forward to, e.g. https://host:port (overrides --registry-id; http:// allowed for local registries)'),
  setting(REGISTRY, ['fips'], 'boolean', 'use the FIPS registry endpoint (<id>.dkr.ecr-fips.<region>.amazonaws.com)'),
  setting(REGISTRY, ['dualStack'], 'boolean', 'use the dual-stack (IPv4 + IPv6) registry endpoint (<id>.dkr-ecr.<region>.on.aws)'),
  { ...setting(['log'], ['logLevel'], 'string', `log level: ${LOG_LEVELS.join(', ')} (default info)`), path: ['log', 'level'], key: 'log.level' },
  setting(CREDENTIALS, ['refresh', 'fraction'], 'number', 'refresh the token when this fraction of its remaining life has passed (default 0.5)'),
  setting(CREDENTIALS, ['refresh', 'minRetrySeconds'], 'number', 'first retry delay after a failed token fetch (default 1)'),
  setting(CREDENTIALS, ['refresh', 'maxRetrySeconds'], 'number', 'longest retry delay after failed token fetches (default 60)'),
  setting(CREDENTIALS, ['refresh', 'rejectedIntervalSeconds'], 'number', 'least time between refreshes forced by the registry rejecting the token (default 10)'),
  setting(LISTENER, ['shutdownGraceSeconds'], 'number', 'on SIGTERM/SIGINT, let in-flight transfers finish for up to this long (default 30)'),
  setting([], ['metrics', 'repositoryLabel'], 'boolean', 'label request metrics with the repository name (only for a known, small set of repositories)'),
  setting(ACCESS, ['allowUnauthenticated'], 'boolean', 'listen on a non-loopback address without client authentication (anyone who reaches the proxy acts as its AWS identity)'),
  setting(ACCESS, ['htpasswd'], 'string', 'htpasswd file of clients allowed in (bcrypt entries: htpasswd -B); reloaded when it changes'),
  setting(ACCESS, ['bearerTokensFile'], 'string', 'file of static client tokens, one per line (Authorization: Bearer, or the password of docker login); reloaded when it changes'),
  setting(ACCESS, ['bearerTokens'], 'list', 'static client tokens, comma-separated (environment or config file only: no flag takes a secret)', true),
  setting(ACCESS, ['readOnly'], 'boolean', 'refuse pushes, deletes and uploads (403 DENIED, nothing sent upstream)'),
  setting(ACCESS, ['allowRepositories'], 'list', 'only these repositories, comma-separated globs (team/*, team/**); default all'),
  setting(ACCESS, ['denyRepositories'], 'list', 'never these repositories, comma-separated globs; wins over --allow-repositories'),
  setting(FORWARDING, ['redirects'], 'string', 'blob redirects to storage: pass (to the client, default) or follow (the proxy fetches and streams them)'),
  setting(FORWARDING, ['redirectAllowedHosts'], 'list', 'hosts follow mode may fetch from, comma-separated globs, host or host:port (default: the S3 endpoints of the registry\'s region)'),
  setting(LISTENER, ['tlsCert'], 'string', 'serve HTTPS with this certificate chain (PEM; with --tls-key); reloaded when it changes'),
  setting(LISTENER, ['tlsKey'], 'string', 'private key of --tls-cert (PEM)'),
  setting(LISTENER, ['maxConnections'], 'integer', 'most client connections at once; more are dropped (default 1024; 0: no cap)'),
  setting(LISTENER, ['headerTimeoutSeconds'], 'number', 'time a client has to send the request headers (default 20)'),
  setting(LISTENER, ['idleTimeoutSeconds'], 'number', 'close a client connection idle this long (default 300; 0: never)'),
  setting(LISTENER, ['keepAliveTimeoutSeconds'], 'number', 'close a kept-alive client connection after this long without a request (default 72)'),
  setting(FORWARDING, ['upstreamConnectTimeoutSeconds'], 'number', 'time to connect to the registry, TLS included (default 10)'),
  setting(FORWARDING, ['upstreamHeadersTimeoutSeconds'], 'number', 'time for the registry\'s response headers after the request is sent (default 300)'),
  setting(FORWARDING, ['upstreamBodyTimeoutSeconds'], 'number', 'longest pause inside a response body from the registry (default 300; 0: none)'),
  cacheSetting('dir', 'string', 'keep pulled blobs and manifests, verified by digest, in this directory and serve them from it (default: no cache); one proxy per directory', 'DIR'),
  cacheSetting('maxSize', 'string', 'bound of the cache directory, e.g. 20GiB, 500MB; least recently used entries are evicted (default 20GiB)', 'SIZE'),
  cacheSetting('confirmSeconds', 'number', 'how long the registry\'s answer that a repository has a digest lets the cache serve it through that repository without asking again (default 300)'),
  cacheSetting('serveStale', 'boolean', 'when the registry or the ECR API cannot be reached, answer a tag from the cache with its last known digest (marked by the Ecr-Proxy-Cache: stale header)')
]

/** The sections of the config file; any other top-level key is a flat key of earlier releases. */
export const SECTIONS = new Set(['listener', 'access', 'registries', 'anyEcrRegistry', 'mirrors', 'credentials', 'forwarding', 'cache', 'log', 'metrics'])

/**
 * Flat top-level keys of earlier config files and where they now live: `port` → `listener.port`,
 * `refresh` (a mapping) → `credentials.refresh`.
 */
export const LEGACY_KEYS: ReadonlyMap<string, readonly string[]> = new Map(
  SETTINGS.filter((s) => s.fromList === undefined).map((s) => [s.name[0] as string, s.path.slice(0, s.path.length - s.name.length + 1)])
)
