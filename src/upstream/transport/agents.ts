import http from 'node:http'
import https from 'node:https'
import type { Duplex, Readable } from 'node:stream'
import { BlobClient } from './blob-client.js'
import type { ForwardingTimeouts } from './timeouts.js'
import { sendBody, writeChunks } from './body-io.js'
import type { ResponseBody, Transport, TransportRequest, TransportResponse } from './types.js'

/**
 * Connection pools toward registries. Node's agents rather than undici's: undici closes the
 * connection after every HEAD (undici #258), and docker checks manifests and blobs with HEAD, so
 * each check would cost a new TCP and TLS handshake with ECR.
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

export function createUpstreamAgents (timeouts: ForwardingTimeouts, tls: { ca?: string | Buffer } = {}): UpstreamAgents {
  const pool = { keepAlive: true, keepAliveMsecs: 30_000, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' as const }
  const connectTimeoutMs = Math.round(timeouts.connectTimeoutSeconds * 1000)
  const headersTimeoutMs = Math.round(timeouts.headersTimeoutSeconds * 1000)
  const bodyTimeoutMs = Math.round(timeouts.bodyTimeoutSeconds * 1000)
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

function headersTimeout (timeoutMs: number): Error {
  return Object.assign(new Error(`no response within ${timeoutMs} ms`), { code: 'EHEADERS_TIMEOUT' })
}

function bodyTimeout (timeoutMs: number): Error {
  return Object.assign(new Error(`the body paused for ${timeoutMs} ms`), { code: 'EBODY_TIMEOUT' })
}

/**
 * Every request through Node's agents: bodies stream both ways; the headers timeout counts from
 * the last byte written, the body timeout is the longest pause inside the response. A kept-alive
 * connection the registry closed while idle fails at once; a GET or HEAD without a body is then
 * sent once more.
 */
export function agentTransport (agents: UpstreamAgents): Transport {
  // Parsed once per origin, not per request.
  const origins = new Map<string, { protocol: string, hostname: string, port: string }>()
  const parsed = (origin: string) => {
    let found = origins.get(origin)
    if (found === undefined) {
      const url = new URL(origin)
      found = { protocol: url.protocol, hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname, port: url.port }
      origins.set(origin, found)
    }
    return found
  }
  const once = (request: TransportRequest): Promise<TransportResponse> => new Promise((resolve, reject) => {
    const url = parsed(request.origin)
    const secure = url.protocol === 'https:'
    const req = (secure ? https : http).request({
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port,
      method: request.method,
      path: request.path,
      headers: request.headers,
      agent: secure ? agents.https : agents.http,
      timeout: agents.headersTimeoutMs
    })
    let answered = false
    req.on('timeout', () => { req.destroy(answered ? bodyTimeout(agents.bodyTimeoutMs) : headersTimeout(agents.headersTimeoutMs)) })
    req.once('error', (err) => { if (!answered) reject(err) })
    req.once('response', (res) => {
      answered = true
      // From here on the pause allowed is the body timeout (0: none), not the headers timeout.
      res.socket.setTimeout(agents.bodyTimeoutMs)
      // The request's errors now surface on the body.
      req.on('error', (err) => { res.destroy(err) })
      resolve({ statusCode: res.statusCode ?? 502, headers: res.headers, body: streamBody(res), pooled: false })
    })
    if (request.body === undefined) req.end()
    else sendBody(request.body, req)
  })
  return {
    async request (request) {
      try {
        return await once(request)
      } catch (err) {
        const replayable = request.body === undefined && (request.method === 'GET' || request.method === 'HEAD')
        if (!replayable || (err as { code?: string }).code !== 'ECONNRESET') throw err
        return await once(request)
      }
    }
  }
}

/** The blob client as a transport: bodiless GETs only, read into pooled buffers. */
export function blobTransport (blobs: BlobClient): Transport {
  return {
    async request (request) {
      if (request.method !== 'GET' || request.body !== undefined) throw new TypeError('the blob client sends bodiless GETs only')
      const res = await blobs.get(request.origin, request.path, request.headers as Record<string, string | string[]>)
      return { statusCode: res.statusCode, headers: res.headers, body: res, pooled: true }
    }
  }
}

/** A Node stream as a ResponseBody. */
export function streamBody (stream: Readable): ResponseBody {
  return {
    stream: () => stream,
    discard: () => { stream.resume() },
    pipeTo: async (destination) => { await writeChunks(stream, destination) }
  }
}
