import http from 'node:http'
import https from 'node:https'
import type { Duplex, Readable } from 'node:stream'
import { Agent as UndiciAgent } from 'undici'
import { kindOf } from '../errors.js'
import { BlobClient } from './blob-client.js'
import type { ForwardingTimeouts } from './timeouts.js'
import { sendBody, writeChunks } from './body-io.js'
import type { ResponseBody, Transport, TransportRequest, TransportResponse } from './types.js'

/**
 * Connection pools toward registries, keep-alive in each. Requests without a body (manifests,
 * tags, HEAD checks, redirects to blob storage) take undici: it spends ~20 % less CPU per request
 * than node:http's client (docs/performance.md, finding 8). Uploads take Node's agents, whose
 * request is a Writable the client's body is piped into as it arrives.
 */
export interface UpstreamAgents {
  /** Bodiless requests. Sent with `reset: false`: undici would otherwise close the connection
   * after every HEAD (undici #258), a new TCP and TLS handshake with ECR per docker check. */
  bodiless: UndiciAgent
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
  // As many free connections kept as may be busy: with fewer, every burst that frees more than
  // maxFreeSockets at once (a batch of answers read before the clients' next requests) closed the
  // rest and opened new ones a moment later — 600 upstream connections closed in 8 s under 512
  // clients (docs/performance.md, finding 9). Idle ones still go when the registry closes them.
  const pool = { keepAlive: true, keepAliveMsecs: 30_000, maxSockets: 256, maxFreeSockets: 256, scheduling: 'lifo' as const }
  const connectTimeoutMs = Math.round(timeouts.connectTimeoutSeconds * 1000)
  const headersTimeoutMs = Math.round(timeouts.headersTimeoutSeconds * 1000)
  const bodyTimeoutMs = Math.round(timeouts.bodyTimeoutSeconds * 1000)
  return {
    bodiless: new UndiciAgent({
      connections: pool.maxSockets,
      keepAliveTimeout: pool.keepAliveMsecs,
      headersTimeout: headersTimeoutMs,
      bodyTimeout: bodyTimeoutMs,
      // Verified like the agents: default CAs plus NODE_EXTRA_CA_CERTS (or `ca`, for tests).
      connect: { timeout: connectTimeoutMs, rejectUnauthorized: true, ...(tls.ca === undefined ? {} : { ca: tls.ca }) }
    }),
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
  agents.bodiless.destroy().catch(() => {})
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
 * Every request but the blob client's: bodiless ones through undici, uploads through Node's
 * agents, bodies streamed both ways. The headers timeout counts from the last byte written, the
 * body timeout is the longest pause inside the response. A kept-alive connection the registry
 * closed while idle fails at once; a GET or HEAD without a body is then sent once more.
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
  const bodiless = async (request: TransportRequest): Promise<TransportResponse> => {
    const res = await agents.bodiless.request({
      origin: request.origin,
      path: request.path,
      method: request.method as 'GET',
      headers: request.headers as Record<string, string | string[]>,
      reset: false
    })
    return { statusCode: res.statusCode, headers: res.headers as http.IncomingHttpHeaders, body: streamBody(res.body), pooled: false }
  }
  const withBody = (request: TransportRequest): Promise<TransportResponse> => new Promise((resolve, reject) => {
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
  const once = async (request: TransportRequest): Promise<TransportResponse> => request.body === undefined ? await bodiless(request) : await withBody(request)
  return {
    async request (request) {
      try {
        return await once(request)
      } catch (err) {
        const replayable = request.body === undefined && (request.method === 'GET' || request.method === 'HEAD')
        // A kept-alive connection the registry closed while idle: a reset, however the client names it.
        if (!replayable || kindOf((err as { code?: string }).code) !== 'reset') throw err
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
