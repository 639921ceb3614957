import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { Agent, type Dispatcher } from 'undici'
import { clientAuthenticationPlugin, createAccessControl } from './access/index.js'
import type { Config } from './config/index.js'
import type { Clock } from './credentials/clock.js'
import { createEcrClient, ecrTokenFetcher, type FetchToken } from './credentials/ecr-token.js'
import { TokenRefresher } from './credentials/refresher.js'
import { createLogger } from './logger.js'
import { ProxyMetrics } from './ops/metrics.js'
import { sendRegistryError } from './oci/errors.js'
import { createListener } from './http/listener.js'
import { upstreamAgentOptions, type UpstreamTimeouts } from './upstream/transport/timeouts.js'
import { registryOrigin, toOrigin } from './routing/endpoint.js'
import { createUpstreamAgents, destroyUpstreamAgents, type UpstreamAgents } from './upstream/transport/agents.js'
import forward from './upstream/forward.js'
import { RedirectFollower } from './upstream/redirects.js'
import { singleUpstreamRouter, type Upstream } from './upstream/routing.js'

/** The seams tests replace; production uses the defaults. */
export interface AppDeps {
  fetchToken?: FetchToken
  /** Region used to build a registry origin from --registry-id when config.region is unset. */
  resolveRegion?: () => Promise<string | undefined>
  clock?: Clock
  random?: () => number
  /** Connection pools toward the registry. */
  agents?: UpstreamAgents
  /** undici dispatcher for redirect targets (follow mode). */
  dispatcher?: Dispatcher
  logger?: Logger
}

export interface App {
  app: FastifyInstance
  upstream: Upstream
  metrics: ProxyMetrics
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Kept because a closed connection is detached from its request before onResponse. */
    clientSocket: Socket | null
  }
}

/** Toward redirect targets (follow mode): GET only, so undici's reset after HEAD does not matter. */
export function createDispatcher (timeouts?: UpstreamTimeouts): Dispatcher {
  // Certificates are always verified; connect/header/body timeouts apply.
  return new Agent(upstreamAgentOptions(timeouts ?? { upstreamConnectTimeoutSeconds: 10, upstreamHeadersTimeoutSeconds: 300, upstreamBodyTimeoutSeconds: 300 }))
}

/** Builds the proxy; never listens, so tests drive it with inject() or listen on port 0. */
export async function buildApp (config: Config, deps: AppDeps = {}): Promise<App> {
  const logger = deps.logger ?? createLogger(config.logLevel)
  // Client credentials, policy and the listener (TLS, timeouts, limits): bad files stop the start.
  const access = createAccessControl(config, logger)
  const listener = createListener(config, logger.child({ component: 'listener' }))
  let fetchToken = deps.fetchToken
  let resolveRegion = deps.resolveRegion
  if (fetchToken === undefined || resolveRegion === undefined) {
    const client = createEcrClient(config.region)
    fetchToken ??= ecrTokenFetcher(client)
    resolveRegion ??= async () => await client.config.region()
  }

  const credentials = new TokenRefresher({
    fetchToken,
    log: logger.child({ component: 'credentials' }),
    ...(deps.clock === undefined ? {} : { clock: deps.clock }),
    ...(deps.random === undefined ? {} : { random: deps.random }),
    refreshFraction: config.refresh.fraction,
    minRetryMs: config.refresh.minRetrySeconds * 1000,
    maxRetryMs: config.refresh.maxRetrySeconds * 1000,
    rejectedIntervalMs: config.refresh.rejectedIntervalSeconds * 1000
  })
  const upstream: Upstream = { origin: await configuredOrigin(config, resolveRegion), credentials }
  const metrics = new ProxyMetrics({ repositoryLabel: config.metrics.repositoryLabel })
  metrics.watchCredentials(credentials, deps.clock === undefined ? Date.now : () => (deps.clock as Clock).now())
  if (upstream.origin === undefined) {
    credentials.onToken((token) => {
      if (token.proxyEndpoint !== undefined && upstream.origin === undefined) {
        upstream.origin = toOrigin(token.proxyEndpoint)
        logger.info({ upstream: upstream.origin }, 'forwarding to the registry GetAuthorizationToken named')
      }
    })
  }

  const app: FastifyInstance = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // One access-log line per request, written by the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    ...listener.fastifyOptions
  })

  const agents = deps.agents ?? createUpstreamAgents(config)
  // Redirect targets are fetched only in follow mode; nothing to open otherwise.
  const follow = config.redirects === 'follow'
  const ownDispatcher = follow && deps.dispatcher === undefined ? createDispatcher(config) : undefined
  const dispatcher = deps.dispatcher ?? ownDispatcher
  app.addHook('onClose', async () => { listener.close() })
  app.addHook('onReady', async () => { credentials.start() })
  app.addHook('onClose', async () => {
    credentials.stop()
    await ownDispatcher?.close()
    if (deps.agents === undefined) destroyUpstreamAgents(agents)
  })

  app.decorateRequest('clientSocket', null)
  // Socket byte counters already reported, so each request on a kept-alive connection gets the
  // bytes since the previous one: its headers and body, on the wire.
  const reported = new WeakMap<Socket, [read: number, written: number]>()
  // Request targets, methods and framing were checked before routing (src/server/preflight.ts).
  app.addHook('onRequest', async (request) => {
    request.clientSocket = request.raw.socket
  })

  // On shutdown Fastify closes idle connections; a connection that finishes its transfer later
  // is closed right after, rather than held open by the client's keep-alive until timeout.
  let closing = false
  app.addHook('preClose', async () => { closing = true })

  app.addHook('onResponse', async (request, reply) => {
    if (closing) (request.clientSocket ?? request.raw.socket)?.end()
    const proxied = request.proxied
    const url = request.raw.url ?? ''
    const queryAt = url.indexOf('?')
    const socket = request.clientSocket ?? request.raw.socket
    const [readBefore, writtenBefore] = reported.get(socket) ?? [0, 0]
    reported.set(socket, [socket.bytesRead, socket.bytesWritten])
    const kind = proxied?.registry.kind ?? 'other'
    const observation = {
      method: request.method,
      kind,
      status: reply.statusCode,
      repository: proxied?.registry.name ?? null,
      durationSeconds: reply.elapsedTime / 1000,
      // Bytes on the wire, headers included.
      bytesIn: socket.bytesRead - readBefore,
      bytesOut: socket.bytesWritten - writtenBefore
    }
    metrics.observeRequest(observation)
    request.log.info({
      method: observation.method,
      path: queryAt === -1 ? url : url.slice(0, queryAt),
      kind: proxied?.registry.kind ?? null,
      repository: observation.repository,
      status: observation.status,
      bytesIn: observation.bytesIn,
      bytesOut: observation.bytesOut,
      durationMs: Math.round(reply.elapsedTime * 1000) / 1000,
      ...(proxied?.replayed === true ? { replayed: true } : {}),
      // Who, when client authentication is on: an htpasswd user or a token's source, never a secret.
      ...(request.client === null ? {} : { client: request.client.name })
    }, 'request')
  })

  await app.register(clientAuthenticationPlugin, { authenticator: access.authenticator })

  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async (_request, reply) => {
    const status = credentials.status()
    const ready = status.ready && upstream.origin !== undefined
    reply.code(ready ? 200 : 503)
    return { ready, upstreams: [{ origin: upstream.origin ?? null, ...status }] }
  })
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType)
    return await metrics.registry.metrics()
  })

  await app.register(forward, {
    router: singleUpstreamRouter(upstream),
    agents,
    metrics,
    policy: access.policy,
    ...(follow && dispatcher !== undefined ? { redirects: new RedirectFollower({ dispatcher, blobs: agents.blobs, allowedHosts: config.redirectAllowedHosts, region: config.region }) } : {})
  })

  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?', 1)[0] ?? ''
    if (path === '/v2' || path.startsWith('/v2/')) {
      sendRegistryError(reply, 405, 'UNSUPPORTED', `method ${request.method} is not part of the registry API`)
    } else {
      sendRegistryError(reply, 404, 'NOT_FOUND', 'only the registry API (/v2/) is served here')
    }
    return reply
  })

  app.setErrorHandler(async (error: Error & { statusCode?: number }, request, reply) => {
    const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
    if (status >= 500) request.log.error({ err: error }, 'request failed')
    sendRegistryError(reply, status, status >= 500 ? 'UNAVAILABLE' : 'UNSUPPORTED', status >= 500 ? 'internal proxy error' : error.message)
    return reply
  })

  return { app, upstream, metrics }
}

async function configuredOrigin (config: Config, resolveRegion: () => Promise<string | undefined>): Promise<string | undefined> {
  if (config.upstream !== undefined) return toOrigin(config.upstream)
  if (config.registryId === undefined) return undefined
  const region = config.region ?? await resolveRegion().catch(() => undefined)
  if (region === undefined) {
    throw new Error('--registry-id needs a region: set --region, ECR_PROXY_REGION or AWS_REGION')
  }
  return registryOrigin({ registryId: config.registryId, region, fips: config.fips, dualStack: config.dualStack })
}
