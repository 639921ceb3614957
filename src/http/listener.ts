import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { Socket } from 'node:net'
import { createSecureContext } from 'node:tls'
import type { Logger } from 'pino'
import { FileWatcher, type WatchOptions } from '../access/file-watcher.js'
import { registryErrorBody, type RegistryErrorCode } from '../oci/errors.js'
import { printable } from '../oci/grammar.js'
import { pathOf } from '../oci/target.js'
import { preflight, type Rejection } from './preflight.js'

export interface ListenerSettings {
  tlsCert?: string | undefined
  tlsKey?: string | undefined
  /** 0: no cap. */
  maxConnections: number
  headerTimeoutSeconds: number
  /** 0: no idle timeout. */
  idleTimeoutSeconds: number
  keepAliveTimeoutSeconds: number
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void

export interface Listener {
  /** Spread into Fastify's options: the server it listens with and its client-error answer. */
  fastifyOptions: {
    serverFactory: (handler: Handler) => Server
    clientErrorHandler: (error: Error & { code?: string }, socket: Socket) => void
  }
  /** Every server created so far (Fastify makes two when listening on "localhost"). */
  servers: ReadonlySet<Server>
  tls: boolean
  /** Re-reads the certificate and key now; false (and the previous pair kept) if they are unusable. */
  reloadCertificate: () => boolean
  /** Stops watching the certificate files. */
  close: () => void
}

const JSON_UTF8 = 'application/json; charset=utf-8'

function errorBody (code: RegistryErrorCode, message: string): string {
  return JSON.stringify(registryErrorBody(code, message))
}

/** A whole HTTP/1.1 error response, for sockets that no ServerResponse owns any more. */
export function rawErrorResponse (status: number, code: RegistryErrorCode, message: string, extra: Record<string, string> = {}): string {
  const body = errorBody(code, message)
  const headers = {
    'Content-Type': JSON_UTF8,
    'Docker-Distribution-API-Version': 'registry/2.0',
    'Content-Length': String(Buffer.byteLength(body)),
    Connection: 'close',
    ...extra
  }
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`
}

function sendRejection (req: IncomingMessage, res: ServerResponse, rejection: Rejection): void {
  const body = errorBody(rejection.code, rejection.message)
  res.writeHead(rejection.status, {
    'content-type': JSON_UTF8,
    'docker-distribution-api-version': 'registry/2.0',
    'content-length': Buffer.byteLength(body),
    // A refused request may carry a body nobody will read: the connection ends with the answer.
    connection: 'close',
    ...(rejection.allow === undefined ? {} : { allow: rejection.allow })
  })
  res.end(req.method === 'HEAD' ? undefined : body)
}

function endSocket (socket: Socket, response: string): void {
  if (socket.writable) socket.end(response, () => socket.destroy())
  else socket.destroy()
  // A peer that never reads does not keep the socket.
  setTimeout(() => socket.destroy(), 5000).unref()
}

function printablePath (url: string | undefined): string {
  return printable(pathOf(url ?? ''))
}

/**
 * The server the proxy listens with: HTTP, or HTTPS with a certificate reloaded when its files
 * change. Slow clients are cut off (header and idle timeouts), connections are capped, and
 * requests that are malformed at the HTTP level get a registry-format 4xx before routing — also
 * those Node's parser refuses itself (clientError), CONNECT and unmet Expect.
 */
export function createListener (settings: ListenerSettings, log: Logger, watch?: WatchOptions): Listener {
  const servers = new Set<Server>()
  const headersTimeout = Math.round(settings.headerTimeoutSeconds * 1000)
  const httpOptions: ServerOptions = {
    // Answered by preflight in the registry's format instead of an empty 400.
    requireHostHeader: false,
    joinDuplicateHeaders: false,
    headersTimeout,
    // Multi-GB uploads take as long as they take; idle connections are cut by the idle timeout.
    requestTimeout: 0,
    keepAliveTimeout: Math.round(settings.keepAliveTimeoutSeconds * 1000),
    // headersTimeout is enforced on this tick; keep it fine enough for short timeouts.
    connectionsCheckingInterval: Math.max(20, Math.min(30_000, Math.floor(headersTimeout / 4)))
  }

  let tlsPair: { key: Buffer, cert: Buffer } | undefined
  const tlsFiles = settings.tlsCert !== undefined && settings.tlsKey !== undefined ? { cert: settings.tlsCert, key: settings.tlsKey } : undefined
  if (tlsFiles !== undefined) {
    tlsPair = readTlsPair(tlsFiles.cert, tlsFiles.key)
    log.info({ cert: tlsFiles.cert }, 'serving HTTPS: clients connect with https://')
  }

  let lastDropLog = 0

  function serverFactory (handler: Handler): Server {
    const wrapped: Handler = (req, res) => {
      const rejection = preflight(req)
      if (rejection === undefined) {
        handler(req, res)
        return
      }
      log.info({ method: printable(req.method ?? ''), path: printablePath(req.url), status: rejection.status, code: rejection.code, reason: rejection.message }, 'request refused')
      sendRejection(req, res, rejection)
    }
    const server: Server = tlsPair === undefined
      ? createHttpServer(httpOptions, wrapped)
      : createHttpsServer({ ...httpOptions, ...tlsPair, minVersion: 'TLSv1.2' }, wrapped) as unknown as Server
    if (settings.idleTimeoutSeconds > 0) server.setTimeout(Math.round(settings.idleTimeoutSeconds * 1000))
    if (settings.maxConnections > 0) server.maxConnections = settings.maxConnections
    server.on('drop', () => {
      const now = Date.now()
      if (now - lastDropLog > 10_000) {
        lastDropLog = now
        log.warn({ maxConnections: settings.maxConnections }, 'connection limit reached; new connections are dropped')
      }
    })
    // CONNECT would otherwise drop the socket without an answer.
    server.on('connect', (req: IncomingMessage, socket: Socket) => {
      log.info({ method: 'CONNECT', status: 405 }, 'request refused')
      endSocket(socket, rawErrorResponse(405, 'UNSUPPORTED', 'CONNECT is not accepted; this is not a forward proxy', { Allow: 'GET, HEAD, POST, PUT, PATCH, DELETE' }))
    })
    server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      sendRejection(req, res, { status: 417, code: 'UNSUPPORTED', message: 'only Expect: 100-continue is understood' })
    })
    servers.add(server)
    server.once('close', () => servers.delete(server))
    // The certificate files are watched while something listens with them.
    server.once('listening', () => {
      if (watcher !== undefined && !watching) {
        watching = true
        watcher.start()
      }
    })
    return server
  }

  function clientErrorHandler (error: Error & { code?: string }, socket: Socket): void {
    if (error.code === 'ECONNRESET' || socket.destroyed) return
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage
    if (inFlight?.headersSent === true) {
      // A response is already on the wire; nothing well-formed can follow it.
      socket.destroy()
      return
    }
    let response: string
    if (error.code === 'HPE_HEADER_OVERFLOW') {
      response = rawErrorResponse(431, 'UNSUPPORTED', 'the request line and headers are too large')
    } else if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      response = rawErrorResponse(408, 'UNSUPPORTED', 'the request headers did not arrive in time')
    } else {
      response = rawErrorResponse(400, 'UNSUPPORTED', `malformed HTTP request${error.code === undefined ? '' : ` (${error.code})`}`)
    }
    log.info({ code: error.code }, 'malformed request refused')
    endSocket(socket, response)
  }

  function reloadCertificate (): boolean {
    if (tlsFiles === undefined) return false
    let pair
    try {
      pair = readTlsPair(tlsFiles.cert, tlsFiles.key)
    } catch (err) {
      log.error(`reloading the TLS certificate failed, keeping the previous one: ${(err as Error).message}`)
      return false
    }
    tlsPair = pair
    for (const server of servers) (server as unknown as HttpsServer).setSecureContext({ ...pair, minVersion: 'TLSv1.2' })
    log.info({ cert: tlsFiles.cert }, 'TLS certificate reloaded')
    return true
  }

  const watcher = tlsFiles === undefined ? undefined : new FileWatcher([tlsFiles.cert, tlsFiles.key], reloadCertificate, log, watch)
  let watching = false

  return {
    fastifyOptions: { serverFactory, clientErrorHandler },
    servers,
    tls: tlsFiles !== undefined,
    reloadCertificate,
    close: () => watcher?.close()
  }
}

/** Reads a certificate chain and its key; throws unless they form a usable pair. */
function readTlsPair (certFile: string, keyFile: string): { key: Buffer, cert: Buffer } {
  let cert: Buffer
  let key: Buffer
  try {
    cert = readFileSync(certFile)
    key = readFileSync(keyFile)
  } catch (err) {
    throw new Error(`cannot read the TLS certificate or key: ${(err as Error).message}`)
  }
  try {
    createSecureContext({ key, cert })
  } catch (err) {
    // OpenSSL's message names the problem (e.g. "key values mismatch"), never key material.
    throw new Error(`${certFile} and ${keyFile} are not a usable certificate and key: ${(err as Error).message}`)
  }
  return { key, cert }
}
