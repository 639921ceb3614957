import type { OutgoingHttpHeaders } from 'node:http'
import type { BlobResponse, BodyDestination } from '../upstream/transport/blob-client.js'

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
 * Sends a 2xx blob body from the blob client straight to the client's socket, in its pooled
 * buffers. Fastify still runs onResponse (access log, metrics) once the response finishes. When
 * the registry or storage fails mid-body, the client's response is cut, never completed, and the
 * failure is rethrown for the caller to report; a client that went away rejects with ECLIENTGONE.
 */
export async function relayBody (reply: RelayReply, res: BlobResponse, statusCode: number, headers: OutgoingHttpHeaders): Promise<void> {
  reply.raw.writeHead(statusCode, { ...reply.getHeaders(), ...headers } as OutgoingHttpHeaders)
  reply.hijack()
  try {
    await res.pipeTo(reply.raw)
  } catch (err) {
    reply.raw.destroy()
    throw err
  }
}

/** A failure worth reporting: not the client hanging up. */
export function upstreamFault (err: unknown): { code?: string, message?: string } | undefined {
  const failure = err as { code?: string, message?: string }
  return failure.code === 'ECLIENTGONE' ? undefined : failure
}
