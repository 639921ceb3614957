import type { FastifyInstance } from 'fastify'
import type { CredentialPool } from '../credentials/pool.js'
import type { ProxyMetrics } from '../ops/metrics.js'
import type { Registry } from '../routing/registry.js'
import type { Router } from '../routing/resolve.js'
import { printable } from '../oci/grammar.js'
import { sendRegistryError } from './errors.js'

/**
 * `/healthz`: the process answers. `/readyz`: every configured registry has a known address and
 * its credential a valid token (never the token itself); `?registry=<host or alias>` asks about
 * one. `/metrics`: Prometheus text.
 */
export function healthRoutes (app: FastifyInstance, configured: readonly Registry[], router: Router, credentials: CredentialPool, metrics: ProxyMetrics, cache?: { state: () => Record<string, unknown> }): void {
  const state = (registry: Registry) => ({
    registry: registry.name,
    ...(registry.alias === undefined ? {} : { alias: registry.alias }),
    ...(registry.isDefault ? { default: true } : {}),
    origin: registry.origin ?? null,
    credential: registry.credential.id,
    ...credentials.get(registry.credential).status()
  })
  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get<{ Querystring: { registry?: string } }>('/readyz', async (request, reply) => {
    const asked = request.query.registry
    let registries = configured
    if (asked !== undefined) {
      const one = router.find(asked)
      if (one === undefined) {
        sendRegistryError(reply, 404, 'NAME_UNKNOWN', `no registry "${printable(asked)}" is configured`)
        return reply
      }
      registries = [one]
    }
    const upstreams = registries.map(state)
    const ready = upstreams.every((upstream) => upstream.ready && upstream.origin !== null)
    reply.code(ready ? 200 : 503)
    // The cache's state is shown, never a reason to be unready: without it the proxy still serves.
    return cache === undefined ? { ready, upstreams } : { ready, upstreams, cache: cache.state() }
  })
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType)
    return await metrics.registry.metrics()
  })
}
