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
  takeOver(reply, statusCode, headers)
  try {
    await body.pipeTo(reply.raw)
  } catch (err) {
    reply.raw.destroy()
    throw err
  }
}

/** A body already in memory, written with the head in one call; onResponse still runs. */
export function relayWhole (reply: RelayReply & { raw: { end: (body: Buffer) => unknown } }, statusCode: number, headers: OutgoingHttpHeaders, body: Buffer): void {
  takeOver(reply, statusCode, headers)
  reply.raw.end(body)
}

/** The head, with what hooks set on the reply, written past Fastify's send; the reply is the caller's from here. */
function takeOver (reply: RelayReply, statusCode: number, headers: OutgoingHttpHeaders): void {
  reply.raw.writeHead(statusCode, { ...reply.getHeaders(), ...headers } as OutgoingHttpHeaders)
  reply.hijack()
}
