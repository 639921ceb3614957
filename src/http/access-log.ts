import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { pathOf } from '../oci/target.js'
import type { ProxyMetrics } from '../ops/metrics.js'

/** Flat by type: the access logger does no redaction (see below), so nothing nested may enter it. */
type AccessLine = Record<string, string | number | boolean | null>

/**
 * One access-log line and the request metrics per request, when its response has finished. On
 * shutdown, a connection whose transfer finishes is closed rather than kept alive.
 */
export function accessLog (app: FastifyInstance, metrics: ProxyMetrics): void {
  // The access line holds strings, numbers, booleans and null only, so no redaction path can
  // match in it: the logger's wildcard paths (`*.token`, …) would still be tried on each of its
  // ~12 fields, on every request (4 % of the proxy's CPU under manifest load, issue 15). Its
  // reqId is logged as the request's own logger would bind it, first, so the line is unchanged.
  const lines = (app.log as Logger).child({}, { redact: [] })
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
    const line: AccessLine = {
      reqId: request.id,
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
    }
    lines.info(line, 'request')
  })
}
