import type { FastifyInstance } from 'fastify'
import type { CredentialPool } from '../credentials/pool.js'
import type { ProxyMetrics } from '../ops/metrics.js'
import type { Registry } from '../routing/registry.js'

/**
 * `/healthz`: the process answers. `/readyz`: every registry has a known address and its
 * credential a valid token (never the token itself). `/metrics`: Prometheus text.
 */
export function healthRoutes (app: FastifyInstance, registries: readonly Registry[], credentials: CredentialPool, metrics: ProxyMetrics): void {
  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async (_request, reply) => {
    const upstreams = registries.map((registry) => ({
      registry: registry.name,
      origin: registry.origin ?? null,
      credential: registry.credential.id,
      ...credentials.get(registry.credential).status()
    }))
    const ready = upstreams.every((upstream) => upstream.ready && upstream.origin !== null)
    reply.code(ready ? 200 : 503)
    return { ready, upstreams }
  })
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType)
    return await metrics.registry.metrics()
  })
}
