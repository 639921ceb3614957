import http from 'node:http'
import https from 'node:https'
import type { Duplex } from 'node:stream'
import type { UpstreamTimeouts } from './timeouts.js'
import { BlobClient } from './blob-client.js'

/**
 * Connection pools toward the upstream registry. Node's agents rather than undici's: undici
 * closes the connection after every HEAD (undici #258), and docker checks manifests and blobs
 * with HEAD, so each check would cost a new TCP and TLS handshake with ECR.
 */
export interface UpstreamAgents {
  http: http.Agent
  https: https.Agent
  /** Blob downloads: read into pooled buffers instead of a fresh one per socket read. */
  blobs: BlobClient
  /** Time for the response headers once the request is written. */
  headersTimeoutMs: number
  /** Longest pause inside a response body; 0: none. */
  bodyTimeoutMs: number
}

export function createUpstreamAgents (timeouts: UpstreamTimeouts, tls: { ca?: string | Buffer } = {}): UpstreamAgents {
  const pool = { keepAlive: true, keepAliveMsecs: 30_000, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' as const }
  const connectTimeoutMs = Math.round(timeouts.upstreamConnectTimeoutSeconds * 1000)
  const headersTimeoutMs = Math.round(timeouts.upstreamHeadersTimeoutSeconds * 1000)
  const bodyTimeoutMs = Math.round(timeouts.upstreamBodyTimeoutSeconds * 1000)
  return {
    http: withConnectTimeout(new http.Agent(pool), connectTimeoutMs, 'connect'),
    // Certificates toward the registry are always verified; extra CAs come from
    // NODE_EXTRA_CA_CERTS (or `ca`, for tests).
    https: withConnectTimeout(new https.Agent({ ...pool, rejectUnauthorized: true, ...(tls.ca === undefined ? {} : { ca: tls.ca }) }), connectTimeoutMs, 'secureConnect'),
    blobs: new BlobClient({ connectTimeoutMs, headersTimeoutMs, bodyTimeoutMs, ca: tls.ca }),
    headersTimeoutMs,
    bodyTimeoutMs
  }
}

export function destroyUpstreamAgents (agents: UpstreamAgents): void {
  agents.http.destroy()
  agents.https.destroy()
  agents.blobs.destroy()
}

type CreateConnection = (options: object, callback: (err: Error | null, socket: Duplex) => void) => Duplex

/** Node's agents have no connect timeout: a socket not connected (TLS included) in time is destroyed. */
function withConnectTimeout<A extends http.Agent> (agent: A, timeoutMs: number, connectedEvent: 'connect' | 'secureConnect'): A {
  const target = agent as unknown as { createConnection: CreateConnection }
  const create = target.createConnection.bind(agent)
  target.createConnection = (options, callback) => {
    const socket = create(options, callback)
    const timer = setTimeout(() => {
      socket.destroy(Object.assign(new Error(`no connection within ${timeoutMs} ms`), { code: 'ECONNECT_TIMEOUT' }))
    }, timeoutMs)
    const clear = () => clearTimeout(timer)
    socket.once(connectedEvent, clear)
    socket.once('close', clear)
    return socket
  }
  return agent
}
