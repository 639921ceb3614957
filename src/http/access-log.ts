import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { pathOf } from '../oci/target.js'
import type { ProxyMetrics } from '../ops/metrics.js'

/**
 * One access-log line and the request metrics per request, when its response has finished. On
 * shutdown, a connection whose transfer finishes is closed rather than kept alive.
 */
export function accessLog (app: FastifyInstance, metrics: ProxyMetrics): void {
  // Socket byte counters already reported, so each request on a kept-alive connection gets the
  // bytes since the previous one: its headers and body, on the wire.
  const reported = new WeakMap<Socket, [read: number, written: number]>()
  // On shutdown Fastify closes idle connections; a connection that finishes its transfer later
  // is closed right after, rather than held open by the client's keep-alive until timeout.
  let closing = false
  app.addHook('preClose', async () => { closing = true })

  app.addHook('onResponse', async (request, reply) => {
    const state = request.proxy
    const socket = state.socket ?? request.raw.socket
    if (closing) socket?.end()
    const [readBefore, writtenBefore] = reported.get(socket) ?? [0, 0]
    reported.set(socket, [socket.bytesRead, socket.bytesWritten])
    const call = state.call
    const registry = state.target?.registry.name ?? ''
    const observation = {
      method: request.method,
      kind: call?.kind ?? 'other',
      status: reply.statusCode,
      registry,
      repository: state.target?.clientName ?? null,
      durationSeconds: reply.elapsedTime / 1000,
      // Bytes on the wire, headers included.
      bytesIn: socket.bytesRead - readBefore,
      bytesOut: socket.bytesWritten - writtenBefore
    }
    metrics.observeRequest(observation)
    request.log.info({
      method: observation.method,
      path: pathOf(request.raw.url ?? ''),
      kind: call?.kind ?? null,
      ...(registry === '' ? {} : { registry }),
      // A public registry's name served from a pull-through cache.
      ...(state.target?.mirror === undefined ? {} : { mirror: state.target.mirror.host, upstreamRepository: state.target.upstreamName }),
      repository: observation.repository,
      status: observation.status,
      bytesIn: observation.bytesIn,
      bytesOut: observation.bytesOut,
      durationMs: Math.round(reply.elapsedTime * 1000) / 1000,
      ...(state.replayed ? { replayed: true } : {}),
      // Who, when client authentication is on: an htpasswd user or a token's source, never a secret.
      ...(state.client === null ? {} : { client: state.client.name })
    }, 'request')
  })
}
