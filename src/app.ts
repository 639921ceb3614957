import { createRequire } from 'node:module'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import { createAccessControl } from './access/index.js'
import type { CacheFileSystem } from './cache/file-system.js'
import type { LayerCache } from './cache/layer-cache.js'
import { ConfigError, settingOrigin, type Config, type RegistryConfig } from './config/index.js'
import { CredentialFileError } from './access/htpasswd.js'
import { EcrBasicAuthorizer } from './credentials/authorizer.js'
import { anonymousToken, createEcrPublicClient, EcrPublicBearerAuthorizer, ecrPublicTokenFetcher, loadEcrPublicSdk, type EcrPublicSdk } from './credentials/ecr-public.js'
import { systemClock, type Clock } from './credentials/clock.js'
import { createEcrClient, ecrTokenFetcher, type FetchToken } from './credentials/ecr-token.js'
import { CredentialPool, ecrCredentialKey, ecrPublicCredentialKey, type CredentialKey } from './credentials/pool.js'
import { TokenRefresher } from './credentials/refresher.js'
import { accessLog } from './http/access-log.js'
import { clientAuthenticationPlugin } from './http/client-auth.js'
import { handleError, sendRegistryError } from './http/errors.js'
import { healthRoutes } from './http/health.js'
import { dockerHubListener } from './http/docker-hub-listener.js'
import { createListener } from './http/listener.js'
import registryRoute from './http/registry-route.js'
import { decorateRequestState } from './http/request-state.js'
import { createLogger } from './logger.js'
import { pathOf } from './oci/target.js'
import { ProxyMetrics } from './ops/metrics.js'
import { toOrigin } from './routing/endpoint.js'
import { anyEcrRegistry, configuredMirrors, configuredRegistries } from './routing/registries.js'
import { Registry } from './routing/registry.js'
import { Router } from './routing/resolve.js'
import { Upstream } from './upstream/fetch.js'
import { RedirectFollower } from './upstream/redirects.js'
import { agentTransport, blobTransport, createUpstreamAgents, destroyUpstreamAgents, type UpstreamAgents } from './upstream/transport/agents.js'
import { dispatcherOptions, type ForwardingTimeouts } from './upstream/transport/timeouts.js'

/** The seams tests replace; production uses the defaults. */
export interface AppDeps {
  /** One token source for every credential (tests of a single registry). */
  fetchToken?: FetchToken
  /** The token source of each credential; default: GetAuthorizationToken in its region, as its identity. */
  tokenSource?: (key: CredentialKey) => FetchToken
  /** Region used to build a registry origin from --registry-id when the registry names none. */
  resolveRegion?: () => Promise<string | undefined>
  clock?: Clock
  random?: () => number
  /** Connection pools toward registries. */
  agents?: UpstreamAgents
  /** undici dispatcher for redirect targets (follow mode). */
  dispatcher?: Dispatcher
  logger?: Logger
  /** What the layer cache does to its directory. */
  cacheFileSystem?: CacheFileSystem
}

export interface App {
  app: FastifyInstance
  /** The configured registries. */
  registries: readonly Registry[]
  router: Router
  credentials: CredentialPool
  metrics: ProxyMetrics
  /**
   * Opens the listener that serves only the docker.io mirror (listener.dockerHubMirrorPort);
   * resolves to its URL. Undefined when that port is not configured.
   */
  listenDockerHubMirror: ((host: string, port: number) => Promise<string>) | undefined
}

/**
 * A setting whose file turned out unusable at start (missing, unreadable, empty, malformed) ends
 * like every other configuration error: one line naming the key and where it came from.
 */
function asConfigError<T> (config: Config, build: () => T, setting?: readonly string[]): T {
  try {
    return build()
  } catch (err) {
    const path = err instanceof CredentialFileError ? err.setting : setting
    if (path === undefined || !(err instanceof Error)) throw err
    throw new ConfigError(`invalid configuration: ${settingOrigin(config, path)}: ${err.message}`)
  }
}

/**
 * Toward redirect targets (follow mode): GET only, so undici's reset after HEAD does not matter.
 * (undici is loaded at every start anyway, for bodiless requests: upstream/transport/agents.ts.)
 */
export async function createDispatcher (timeouts: ForwardingTimeouts): Promise<Dispatcher> {
  const { Agent } = await import('undici')
  // Certificates are always verified; connect/header/body timeouts apply.
  return new Agent(dispatcherOptions(timeouts))
}

/**
 * Fastify's schema compilers (ajv, fast-json-stringify), loaded the first time a route declares a
 * schema — none of the proxy's do, and loading them at start costs ~2.5 MB of idle RSS
 * (docs/performance.md, finding 2). The same compilers Fastify would load itself.
 */
function lazySchemaCompilers (): NonNullable<FastifyServerOptions['schemaController']> {
  const fastifyRequire = createRequire(import.meta.resolve('fastify'))
  type Factory = (...args: unknown[]) => unknown
  const lazy = (name: string): Factory => {
    let factory: Factory | undefined
    return (...args) => {
      factory ??= (fastifyRequire(name) as () => Factory)()
      return factory(...args)
    }
  }
  return {
    compilersFactory: {
      buildValidator: lazy('@fastify/ajv-compiler') as never,
      buildSerializer: lazy('@fastify/fast-json-stringify-compiler') as never
    }
  }
}

async function openCache (config: Config, dir: string, logger: Logger, metrics: ProxyMetrics, deps: AppDeps): Promise<LayerCache> {
  // Loaded only when configured, like everything else of the cache.
  const [{ LayerCache }, { parseSize }] = await Promise.all([import('./cache/layer-cache.js'), import('./cache/size.js')])
  try {
    return await LayerCache.open({
      dir,
      maxSize: parseSize(config.cache.maxSize) as number,
      confirmMs: config.cache.confirmSeconds * 1000,
      serveStale: config.cache.serveStale,
      clock: deps.clock ?? systemClock,
      log: logger.child({ component: 'cache' }),
      fs: deps.cacheFileSystem,
      metrics: metrics.registry
    })
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${settingOrigin(config, ['cache', 'dir'])}: ${(err as Error).message}`)
  }
}

/**
 * Builds the proxy; never listens, so tests drive it with inject() or listen on port 0. This is
 * the composition root: it wires the parts and holds no request logic.
 */
export async function buildApp (config: Config, deps: AppDeps = {}): Promise<App> {
  const logger = deps.logger ?? createLogger(config.log.level)
  // Client credentials, policy and the listener (TLS, timeouts, limits): bad files stop the start.
  const access = asConfigError(config, () => createAccessControl(config.access, logger))
  const listener = asConfigError(config, () => createListener(config.listener, logger.child({ component: 'listener' })), ['listener', 'tlsCert'])
  const ecrClients = new Map<string, ReturnType<typeof createEcrClient>>()
  const ecrClient = (key: CredentialKey) => {
    let client = ecrClients.get(key.id)
    if (client === undefined) {
      client = createEcrClient(key.region, key.identity)
      ecrClients.set(key.id, client)
    }
    return client
  }
  // The ECR Public SDK is loaded at start only when a configured registry asks it for tokens (a
  // missing module still stops the start); 0.6 MB of idle RSS otherwise.
  let ecrPublicSdk: EcrPublicSdk | undefined
  const ecrPublicToken = (key: CredentialKey): FetchToken => {
    if (key.anonymous === true) return anonymousToken
    if (ecrPublicSdk === undefined) throw new Error(`the ECR Public SDK was not loaded for ${key.id}`)
    return ecrPublicTokenFetcher(createEcrPublicClient(ecrPublicSdk, key.identity), { anonymousFallback: !strictPublic.has(key.id), log: logger.child({ component: 'credentials', credential: key.id }) })
  }
  // ECR Public entries with anonymous: false need the credential: no anonymous fallback.
  const strictPublic = new Set(config.registries.filter((e) => e.registry === 'public.ecr.aws' && e.anonymous === false).map((e) => ecrPublicCredentialKey(false, { profile: e.profile, roleArn: e.roleArn, externalId: e.externalId, roleSessionName: e.roleSessionName }).id))
  const tokenSource = deps.tokenSource ?? (deps.fetchToken === undefined
    ? (key: CredentialKey) => key.kind === 'ecr-public' ? ecrPublicToken(key) : ecrTokenFetcher(ecrClient(key))
    : () => deps.fetchToken as FetchToken)
  const credentials = new CredentialPool((key) => new TokenRefresher({
    fetchToken: tokenSource(key),
    log: logger.child({ component: 'credentials', credential: key.id }),
    ...(deps.clock === undefined ? {} : { clock: deps.clock }),
    ...(deps.random === undefined ? {} : { random: deps.random }),
    refreshFraction: config.credentials.refresh.fraction,
    minRetryMs: config.credentials.refresh.minRetrySeconds * 1000,
    maxRetryMs: config.credentials.refresh.maxRetrySeconds * 1000,
    rejectedIntervalMs: config.credentials.refresh.rejectedIntervalSeconds * 1000
  }))
  const firstEntry = config.registries[0] as RegistryConfig
  const resolveRegion = deps.resolveRegion ?? (async () => await ecrClient(ecrCredentialKey(firstEntry.region)).config.region())
  const registries = await configuredRegistries(config.registries, resolveRegion, { mirrors: Object.keys(config.mirrors).length > 0 }).catch((err: unknown) => {
    throw err instanceof Error && err.message.startsWith('needs a region') ? new ConfigError(`invalid configuration: ${settingOrigin(config, ['registries', '0', 'registryId'])}: ${err.message}`) : err
  })
  if (deps.tokenSource === undefined && deps.fetchToken === undefined &&
    registries.some((r) => r.credential.kind === 'ecr-public' && r.credential.anonymous !== true)) {
    ecrPublicSdk = await loadEcrPublicSdk()
  }
  const router = new Router(registries, { mirrors: configuredMirrors(config.mirrors, registries), ...(config.anyEcrRegistry ? { anyEcrRegistry } : {}) })
  const metrics = new ProxyMetrics({ repositoryLabel: config.metrics.repositoryLabel })
  credentials.onCreated((id, refresher) => { metrics.watchCredential(id, refresher, deps.clock === undefined ? Date.now : () => (deps.clock as Clock).now()) })
  // One refresher per credential, however many registries share it.
  for (const registry of registries) {
    const refresher = credentials.get(registry.credential)
    if (registry.origin === undefined) {
      // Configured by region alone: the caller's own registry, as GetAuthorizationToken names it.
      refresher.onToken((token) => {
        if (token.proxyEndpoint !== undefined && registry.learnOrigin(toOrigin(token.proxyEndpoint))) {
          logger.info({ upstream: registry.origin }, 'forwarding to the registry GetAuthorizationToken named')
        }
      })
    }
  }

  const app: FastifyInstance = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // One access-log line per request, written by the onResponse hook.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    schemaController: lazySchemaCompilers(),
    ...listener.fastifyOptions
  })

  const agents = deps.agents ?? createUpstreamAgents(config.forwarding)
  // Redirect targets are fetched only in follow mode; nothing to open otherwise.
  // With the cache on, blob redirects are fetched by the proxy (follow rules apply) so they can be cached.
  const follow = config.forwarding.redirects === 'follow' || config.cache.dir !== undefined
  const ownDispatcher = follow && deps.dispatcher === undefined ? await createDispatcher(config.forwarding) : undefined
  const dispatcher = deps.dispatcher ?? ownDispatcher
  const blobs = blobTransport(agents.blobs)
  app.addHook('onClose', async () => { listener.close() })
  app.addHook('onReady', async () => { credentials.start() })
  app.addHook('onClose', async () => {
    credentials.stop()
    await ownDispatcher?.close()
    if (deps.agents === undefined) destroyUpstreamAgents(agents)
  })

  // Before any plugin: encapsulated contexts take the error handler set when they are registered.
  app.setErrorHandler(handleError)
  decorateRequestState(app)
  accessLog(app, metrics)
  await app.register(clientAuthenticationPlugin, { authenticator: access.authenticator })
  const cache = config.cache.dir === undefined ? undefined : await openCache(config, config.cache.dir, logger, metrics, deps)
  if (cache !== undefined) app.addHook('onClose', async () => { await cache.close() })
  healthRoutes(app, registries, router, credentials, metrics, cache)

  const hub = config.listener.dockerHubMirrorPort === undefined ? undefined : dockerHubListener(app, listener)
  const transport = agentTransport(agents)
  const upstream = new Upstream({
    transport,
    blobTransport: blobs,
    authorizers: {
      ecr: new EcrBasicAuthorizer(credentials),
      'ecr-public': new EcrPublicBearerAuthorizer({ pool: credentials, transport, log: logger.child({ component: 'credentials' }), ...(deps.clock === undefined ? {} : { clock: deps.clock }) })
    },
    redirects: follow && dispatcher !== undefined
      ? new RedirectFollower({ dispatcher, blobs, allowedHosts: config.forwarding.redirectAllowedHosts })
      : undefined,
    observe: (kind, target) => { metrics.upstreamError(kind, target.registry.name) }
  })
  await app.register(registryRoute, {
    router,
    upstream,
    policy: access.policy,
    cache,
    servesDockerHubOnly: hub?.servesDockerHubOnly,
    onUpstreamError: (kind, target) => { metrics.upstreamError(kind, target.registry.name) }
  })

  app.setNotFoundHandler(async (request, reply) => {
    const path = pathOf(request.url)
    if (path === '/v2' || path.startsWith('/v2/')) {
      sendRegistryError(reply, 405, 'UNSUPPORTED', `method ${request.method} is not part of the registry API`)
    } else {
      sendRegistryError(reply, 404, 'NOT_FOUND', 'only the registry API (/v2/) is served here')
    }
    return reply
  })
  return { app, registries, router, credentials, metrics, listenDockerHubMirror: hub?.listen }
}
