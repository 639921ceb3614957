import type { OutgoingHttpHeaders } from 'node:http'
import type { BodyDestination, ResponseBody } from '../upstream/transport/types.js'

/** The parts of a Fastify reply that relaying a body needs. */
export interface RelayReply {
  getHeaders: () => Record<string, unknown>
  hijack: () => unknown
  raw: BodyDestination & {
    writeHead: (statusCode: number, headers: OutgoingHttpHeaders) => unknown
    destroy: () => unknown
  }
}

/**
 * Sends a body in pooled buffers straight to the client's socket. Fastify still runs onResponse
 * (access log, metrics) once the response finishes. When the sender fails mid-body, the client's
 * response is cut, never completed, and the failure is rethrown for the caller to report; a
 * client that went away rejects with ECLIENTGONE.
 */
export async function relayBody (reply: RelayReply, body: ResponseBody, statusCode: number, headers: OutgoingHttpHeaders): Promise<void> {
  reply.raw.writeHead(statusCode, { ...reply.getHeaders(), ...headers } as OutgoingHttpHeaders)
  reply.hijack()
  try {
    await body.pipeTo(reply.raw)
  } catch (err) {
    reply.raw.destroy()
    throw err
  }
}
