import { mkdirSync } from 'node:fs'
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
  const registryDir = join(dir, 'registry')
  mkdirSync(registryDir)
  const registry = await startRegistry(t, registryDir)
  const authority = new TokenAuthority(opts.lifetimeMs === undefined ? {} : { lifetimeMs: opts.lifetimeMs })
  const tokens = new TokenLedger(authority, registry.htpasswd)
  t.teardown(() => tokens.close())
  const ecrApi = await startEcrApi({ authority, proxyEndpoint: registry.url })
  t.teardown(() => ecrApi.close())
  return { dir, registry, authority, tokens, ecrApi, direct: new RegistryHttp(registry.url, registry.verifier) }
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
