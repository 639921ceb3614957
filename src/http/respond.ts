import type { FastifyReply, FastifyRequest } from 'fastify'
import type { OutgoingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'
import { nameMapping, renameTagList } from '../routing/names.js'
import type { Target } from '../routing/resolve.js'
import { isClientGone, kindOf, toUpstreamError, type UpstreamErrorKind } from '../upstream/errors.js'
import type { UpstreamResponse } from '../upstream/fetch.js'
import { clientResponseHeaders } from '../upstream/headers.js'
import { concatenated, readLimited } from '../upstream/transport/body-io.js'
import { relayBody, relayWhole } from './relay.js'

/** Largest tags/list body renamed in memory; a larger one passes as it is. */
const LISTING_LIMIT = 4 * 1024 * 1024

/**
 * Bodies of a known length up to this size (manifests, tags/list pages, error answers) are read
 * whole and written with the head in one call, instead of being piped: a pipe per small answer
 * cost more than the answer (issue 15). Larger or unknown-length bodies stream.
 */
export const SMALL_BODY_LIMIT = 64 * 1024

/**
 * Turns what the registry answered into the reply: its status, its headers with Location and
 * Link mapped back to the client's names, and its bytes, streamed. Bodies read into pooled
 * buffers are written to the client's socket directly.
 */
export async function respond (request: FastifyRequest, reply: FastifyReply, target: Target, origin: string, response: UpstreamResponse, onUpstreamError?: (kind: UpstreamErrorKind) => void): Promise<FastifyReply> {
  const { statusCode, body } = response
  const headers = response.storage !== undefined ? response.headers : clientResponseHeaders(response.headers, nameMapping(target, origin))
  if (request.method === 'HEAD') {
    body.discard()
    return reply.code(statusCode).headers(headers).send()
  }
  if (response.pooled && statusCode >= 200 && statusCode < 300 && request.raw.httpVersionMajor === 1) {
    try {
      await relayBody(reply, body, statusCode, headers)
    } catch (err) {
      if (isClientGone(err)) return reply
      const failure = err as { code?: string, message?: string }
      if (response.storage === undefined) {
        request.log.warn({ code: failure.code, reason: failure.message }, 'the registry failed in the middle of a blob')
        onUpstreamError?.(kindOf(failure.code, failure.message))
      } else {
        request.log.warn({ redirectHost: response.storage.host, redirectPath: response.storage.path, code: failure.code }, 'blob storage failed in the middle of a blob')
      }
    }
    return reply
  }
  if (statusCode === 200 && target.upstreamName !== target.clientName && request.proxy.call?.kind === 'tags') {
    return await sendRenamedListing(reply, target, response, headers)
  }
  if (response.storage === undefined && request.raw.httpVersionMajor === 1 && isSmallBody(statusCode, response.headers)) {
    let read
    try {
      read = await readLimited(body.stream(), SMALL_BODY_LIMIT)
    } catch (err) {
      // Nothing has been sent yet: the client gets a 502 rather than a cut body.
      const failure = toUpstreamError(err, origin)
      onUpstreamError?.(failure.kind)
      throw failure
    }
    const { head, rest } = read
    if (rest === undefined) {
      relayWhole(reply, statusCode, headers, head)
      return reply
    }
    return reply.code(statusCode).headers(headers).send(Readable.from(concatenated(head, rest)))
  }
  return reply.code(statusCode).headers(headers).send(body.stream())
}

/** A body with a Content-Length of at most SMALL_BODY_LIMIT, on a status that has one. */
function isSmallBody (statusCode: number, headers: UpstreamResponse['headers']): boolean {
  if (statusCode === 204 || statusCode === 304) return false
  const length = headers['content-length']
  return length !== undefined && Number(length) <= SMALL_BODY_LIMIT
}

async function sendRenamedListing (reply: FastifyReply, target: Target, response: UpstreamResponse, headers: OutgoingHttpHeaders): Promise<FastifyReply> {
  // readLimited keeps the unread rest readable; leaving a for-await loop early destroyed it.
  const { head: original, rest } = await readLimited(response.body.stream(), LISTING_LIMIT)
  if (rest !== undefined) return reply.code(response.statusCode).headers(headers).send(Readable.from(concatenated(original, rest)))
  const renamed = renameTagList(original, target) ?? original
  return reply.code(response.statusCode).headers({ ...headers, 'content-length': String(renamed.length) }).send(renamed)
}
