import type { FastifyReply, FastifyRequest } from 'fastify'
import { BearerTokenError } from '../credentials/ecr-public.js'
import { TokenUnavailableError } from '../credentials/refresher.js'
import { registryErrorBody, type RegistryErrorCode } from '../oci/errors.js'
import { NoRegistryError } from '../routing/resolve.js'
import { OriginUnknownError } from '../upstream/fetch.js'
import { UpstreamError } from '../upstream/errors.js'

/**
 * A refusal the proxy decides itself (bad grammar, a method the API lacks, policy): its status,
 * registry error code and message, and the headers that go with it.
 */
export class RegistryError extends Error {
  override name = 'RegistryError'
  constructor (readonly status: number, readonly code: RegistryErrorCode, message: string, readonly headers: Readonly<Record<string, string>> = {}) {
    super(message)
  }
}

interface ErrorAnswer {
  status: number
  code: RegistryErrorCode
  message: string
  headers?: Readonly<Record<string, string>>
  /** Not an answer the proxy meant to give: logged as an error. */
  unexpected?: boolean
}

/**
 * Every error a request can end in, and the answer the client gets for it: the one table. Anything
 * not listed is the proxy's own fault: 500, logged, and no detail to the client.
 */
export function answerFor (error: Error & { statusCode?: number }): ErrorAnswer {
  if (error instanceof RegistryError) return { status: error.status, code: error.code, message: error.message, headers: error.headers }
  if (error instanceof UpstreamError) return { status: error.status, code: error.errorCode, message: error.message, headers: error.headers }
  if (error instanceof TokenUnavailableError) return { status: 503, code: 'UNAVAILABLE', message: error.message }
  if (error instanceof BearerTokenError) return { status: 502, code: 'UNAVAILABLE', message: error.message }
  if (error instanceof OriginUnknownError) return { status: 503, code: 'UNAVAILABLE', message: error.message }
  if (error instanceof NoRegistryError) return { status: 404, code: 'NAME_UNKNOWN', message: error.message }
  // Fastify's own 4xx (e.g. a body it refused): what it says.
  const status = error.statusCode
  if (status !== undefined && status >= 400 && status < 500) return { status, code: 'UNSUPPORTED', message: error.message }
  return { status: status !== undefined && status >= 500 && status < 600 ? status : 500, code: 'UNAVAILABLE', message: 'internal proxy error', unexpected: true }
}

/** The part of a Fastify reply an error needs; HTTP/1 and HTTP/2 replies both have it. */
export interface ErrorReply {
  code (status: number): ErrorReply
  header (name: string, value: string): ErrorReply
  send (payload: string): unknown
}

/** Answers in the registry's `{"errors":[…]}` envelope, as every registry client expects. */
export function sendRegistryError (reply: ErrorReply, status: number, code: RegistryErrorCode, message: string, detail?: unknown): void {
  reply
    .code(status)
    .header('content-type', 'application/json; charset=utf-8')
    .header('docker-distribution-api-version', 'registry/2.0')
    .send(JSON.stringify(registryErrorBody(code, message, detail)))
}

/** Fastify's error handler: the table above, in the envelope; a response under way is cut instead. */
export async function handleError (error: Error & { statusCode?: number }, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const answer = answerFor(error)
  if (answer.unexpected === true) request.log.error({ err: error }, 'request failed')
  if (reply.raw.headersSent) {
    // The response is under way: the client must see a cut transfer, never a complete-looking one.
    reply.raw.destroy()
    return reply
  }
  for (const [name, value] of Object.entries(answer.headers ?? {})) reply.header(name, value)
  sendRegistryError(reply, answer.status, answer.code, answer.message)
  return reply
}
