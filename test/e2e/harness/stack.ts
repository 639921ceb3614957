import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startEcrApi, type EcrApi } from '../../helpers/ecr-api.js'
import { TokenAuthority } from '../../helpers/token-authority.js'
import { startProxy, type Proxy } from './proxy.js'
import { RegistryHttp } from './registry-http.js'
import { registryRequests, startRegistry, type Registry } from './registry.js'
import { TokenLedger } from './tokens.js'
import { tempDir } from './util.js'
import type { Scope } from './scope.js'

/** What stands behind the proxy: the registry and the ECR API whose tokens it enforces. */
export interface Upstream {
  dir: string
  registry: Registry
  authority: TokenAuthority
  tokens: TokenLedger
  ecrApi: EcrApi
  /** The registry itself, as the verifier (what it really holds). */
  direct: RegistryHttp
}

export interface Stack extends Upstream {
  proxy: Proxy
  /** The proxy, without credentials. */
  viaProxy: RegistryHttp
  /** Logs of the registry and the proxy, for failure messages. */
  diagnostics (lines?: number): string
}

export interface StackOptions {
  /** Token lifetime handed out by the stand-in ECR API (default 12 h, as ECR). */
  lifetimeMs?: number
  proxyArgs?: string[]
}

/**
 * The server side of every end-to-end test: the real registry (htpasswd), the stand-in ECR API
 * whose tokens the registry enforces, and the proxy between clients and registry. Everything
 * listens on 127.0.0.1 and is torn down with `t`.
 */
export async function startUpstream (t: Scope, opts: StackOptions = {}): Promise<Upstream> {
  const dir = tempDir(t, 'stack')
  const { registry, authority, tokens, direct } = await startEnforcingRegistry(t, join(dir, 'registry'), opts)
  const ecrApi = await startEcrApi({ authority, proxyEndpoint: registry.url })
  t.teardown(() => ecrApi.close())
  return { dir, registry, authority, tokens, ecrApi, direct }
}

/** A registry that accepts exactly the live tokens of its own token authority. */
async function startEnforcingRegistry (t: Scope, registryDir: string, opts: StackOptions): Promise<Pick<Upstream, 'registry' | 'authority' | 'tokens' | 'direct'>> {
  mkdirSync(registryDir)
  const registry = await startRegistry(t, registryDir)
  const authority = new TokenAuthority(opts.lifetimeMs === undefined ? {} : { lifetimeMs: opts.lifetimeMs })
  const tokens = new TokenLedger(authority, registry.htpasswd)
  t.teardown(() => tokens.close())
  return { registry, authority, tokens, direct: new RegistryHttp(registry.url, registry.verifier) }
}

/** One ECR registry of a several-registry stack: its production hostname, and an alias maybe. */
export interface RegistrySpec {
  /** `<account>.dkr.ecr.<region>.amazonaws.com`: its region is the token's. */
  host: string
  alias?: string
  /** `default:` in the config (unset: a lone registry is the default). */
  default?: boolean
}

/** A registry standing in for one ECR registry: an Upstream whose ECR API is shared with the others. */
export interface RegionalUpstream extends Upstream {
  /** The ECR hostname clients name it by (never resolved: every byte goes to `registry`). */
  host: string
  region: string
  alias?: string
  default?: boolean
}

export interface SeveralStack {
  /** In the order given. */
  upstreams: RegionalUpstream[]
  /** The one ECR API stand-in, telling regions apart by the SigV4 credential scope. */
  ecrApi: EcrApi
  /** The proxy's config file (`registries:` with an explicit upstream per entry). */
  configFile: string
  proxy: Proxy
  /** The proxy, without credentials. */
  viaProxy: RegistryHttp
  diagnostics (lines?: number): string
}

/** The region of an ECR hostname, `<account>.dkr.ecr.<region>.amazonaws.com`. */
export function regionOf (host: string): string {
  const match = /^[0-9]{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com$/.exec(host)
  if (match === null) throw new Error(`not an ECR hostname: ${host}`)
  return match[1] as string
}

/**
 * Several ECR registries behind one proxy, each in its own region: a real registry per region
 * whose htpasswd holds only the live tokens of THAT region's authority (so a token of another
 * region gets a 401, as at ECR), one ECR API stand-in that issues each region's tokens to
 * requests signed for that region, and the proxy started with a config file naming every
 * registry by its ECR hostname (with its real registry as explicit upstream).
 */
export async function startSeveralStack (t: Scope, specs: readonly RegistrySpec[], opts: StackOptions & { proxyEnv?: Record<string, string>, configLines?: string[] } = {}): Promise<SeveralStack> {
  const dir = tempDir(t, 'stack')
  const regions = specs.map((spec) => regionOf(spec.host))
  // One authority per region; two registries of one region would need one ledger feeding both.
  if (new Set(regions).size !== regions.length) throw new Error('startSeveralStack: one registry per region')
  const started: Array<Omit<RegionalUpstream, 'ecrApi'>> = []
  for (const [i, spec] of specs.entries()) {
    const own = await startEnforcingRegistry(t, join(dir, `registry-${i}`), opts)
    started.push({ dir, ...own, host: spec.host, region: regions[i] as string, ...(spec.alias === undefined ? {} : { alias: spec.alias }), ...(spec.default === undefined ? {} : { default: spec.default }) })
  }
  const first = started[0]
  if (first === undefined) throw new Error('startSeveralStack: no registry')
  const ecrApi = await startEcrApi({
    authority: first.authority,
    proxyEndpoint: `https://${first.host}`,
    regions: Object.fromEntries(started.map((u) => [u.region, { authority: u.authority, proxyEndpoint: `https://${u.host}` }])),
  })
  t.teardown(() => ecrApi.close())
  const upstreams = started.map((u) => ({ ...u, ecrApi }))

  const proxyDir = join(dir, 'proxy')
  mkdirSync(proxyDir)
  const configFile = join(proxyDir, 'registries.yaml')
  writeFileSync(configFile, [
    'registries:',
    ...upstreams.map((u) => `  - { registry: ${u.host}, upstream: "${u.registry.url}"${u.alias === undefined ? '' : `, alias: ${u.alias}`}${u.default === undefined ? '' : `, default: ${String(u.default)}`} }`),
    // More top-level settings, e.g. `mirrors:`.
    ...(opts.configLines ?? []),
    '',
  ].join('\n'))
  const proxy = await startProxy(t, proxyDir, {
    configFile,
    ecrApiUrl: ecrApi.url,
    ...(opts.proxyArgs === undefined ? {} : { args: opts.proxyArgs }),
    ...(opts.proxyEnv === undefined ? {} : { env: opts.proxyEnv }),
  })
  const stack: SeveralStack = {
    upstreams,
    ecrApi,
    configFile,
    proxy,
    viaProxy: new RegistryHttp(proxy.url),
    diagnostics (lines = 30) {
      const registries = upstreams.map((u) => {
        const failures = registryRequests(u.registry).filter((line) => line.status >= 400).slice(-lines)
        return `--- registry ${u.host} (${u.registry.host}): last ${lines} error responses ---\n${failures.map((line) => `  ${line.time} ${line.method} ${line.uri} -> ${line.status}`).join('\n')}`
      })
      return `${registries.join('\n')}\n--- proxy log (last ${lines} lines) ---\n${proxy.service.logTail(lines)}`
    },
  }
  t.teardown(() => {
    if (t.passing?.() === false) process.stderr.write(`\n[e2e] ${t.name ?? 'stack'}: server-side diagnostics\n${stack.diagnostics()}\n`)
  })
  return stack
}

export async function startStack (t: Scope, opts: StackOptions = {}): Promise<Stack> {
  const upstream = await startUpstream(t, opts)
  const { dir, registry, ecrApi } = upstream
  const proxyDir = join(dir, 'proxy')
  mkdirSync(proxyDir)
  const proxyOptions = { upstream: registry.url, ecrApiUrl: ecrApi.url, ...(opts.proxyArgs === undefined ? {} : { args: opts.proxyArgs }) }
  const proxy = await startProxy(t, proxyDir, proxyOptions)

  const stack: Stack = {
    ...upstream,
    proxy,
    viaProxy: new RegistryHttp(proxy.url),
    diagnostics (lines = 30) {
      const failures = registryRequests(registry).filter((line) => line.status >= 400).slice(-lines)
      const registryLines = failures.map((line) => `  ${line.time} ${line.method} ${line.uri} -> ${line.status}`).join('\n')
      return `--- registry: last ${lines} error responses ---\n${registryLines}\n--- proxy log (last ${lines} lines) ---\n${proxy.service.logTail(lines)}`
    },
  }
  // When a test fails, show what the servers saw (the client's own stderr is in the assertion).
  t.teardown(() => {
    if (t.passing?.() === false) process.stderr.write(`\n[e2e] ${t.name ?? 'stack'}: server-side diagnostics\n${stack.diagnostics()}\n`)
  })
  return stack
}
