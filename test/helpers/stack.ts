import { ECRClient } from '@aws-sdk/client-ecr'
import type { Test } from 'tap'
import { Agent, type Dispatcher } from 'undici'
import { buildApp, type App } from '../../src/app.js'
import { loadConfig, parseCommandLine, type Config } from '../../src/config/index.js'
import type { Clock } from '../../src/credentials/clock.js'
import { ecrTokenFetcher } from '../../src/credentials/ecr-token.js'
import { startEcrApi, type EcrApi } from './ecr-api.js'
import { startEcrRegistry, type EcrRegistry, type EcrRegistryOptions } from './ecr-registry.js'
import { logSink, type LogSink } from './log-sink.js'
import { TokenAuthority } from './token-authority.js'

export interface Stack {
  authority: TokenAuthority
  api: EcrApi
  registry: EcrRegistry
  proxy: App
  /** http://127.0.0.1:PORT of the proxy */
  url: string
  logs: LogSink
  /** What the ECR registry stand-in received, with the proxy's own credential. */
  upstreamRequests: EcrRegistry['requests']
  client: Dispatcher
}

export interface StackOptions {
  lifetimeMs?: number
  clock?: Clock
  /** Extra flags, as a user would pass them. */
  argv?: string[]
  registry?: Partial<EcrRegistryOptions>
  /** Forward to the proxyEndpoint from GetAuthorizationToken instead of --upstream. */
  useProxyEndpoint?: boolean
}

/**
 * The whole path over real sockets: the real AWS SDK against the ECR API stand-in, the proxy,
 * and an ECR-like registry that checks the tokens the API issued.
 */
export async function startStack (t: Test, options: StackOptions = {}): Promise<Stack> {
  const clock = options.clock
  const authority = new TokenAuthority({ lifetimeMs: options.lifetimeMs ?? 12 * 3_600_000, ...(clock === undefined ? {} : { now: () => clock.now() }) })
  const registry = await startEcrRegistry({ authority, ...options.registry })
  t.teardown(() => registry.close())
  const api = await startEcrApi({ authority, proxyEndpoint: () => registry.publicOrigin })
  t.teardown(() => api.close())

  const argv = [...(options.useProxyEndpoint === true ? [] : ['--upstream', registry.url]), '--region', 'us-east-2', ...(options.argv ?? [])]
  const config: Config = loadConfig(parseCommandLine(argv), {})
  const sdk = new ECRClient({
    region: 'us-east-2',
    endpoint: api.url,
    maxAttempts: 1,
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' }
  })
  t.teardown(() => sdk.destroy())
  const logs = logSink('info')
  const proxy = await buildApp(config, {
    fetchToken: ecrTokenFetcher(sdk),
    resolveRegion: async () => 'us-east-2',
    logger: logs.logger,
    random: () => 0.5,
    ...(clock === undefined ? {} : { clock })
  })
  t.teardown(() => proxy.app.close())
  const url = await proxy.app.listen({ host: '127.0.0.1', port: 0 })
  // Tests start from a proxy that holds its first token (unless that fetch is meant to fail).
  await proxy.credentials.get(proxy.registries[0]!.credential).get().catch(() => {})
  const client = new Agent({ keepAliveTimeout: 1000 })
  t.teardown(() => client.close())
  return { authority, api, registry, proxy, url, logs, upstreamRequests: registry.requests, client }
}
