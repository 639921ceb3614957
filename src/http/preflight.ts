import type { IncomingMessage } from 'node:http'
import type { RegistryErrorCode } from '../oci/errors.js'
import { printable } from '../oci/grammar.js'
import { pathOf } from '../oci/target.js'

/** A request refused before routing: nothing of it reaches Fastify's routes or the upstream. */
export interface Rejection {
  status: number
  code: RegistryErrorCode
  message: string
  /** For 405: the methods the proxy serves. */
  allow?: string
}

/** The registry API uses these methods and no other (CONNECT never gets here: see listener.ts). */
export const SERVED_METHODS: readonly string[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']
const SERVED = new Set(SERVED_METHODS)
/** Characters of registry names, tags, digests and upload ids; other paths are made of these too. */
const PATH_CHARS = /^[A-Za-z0-9._~:/=+-]*$/
const DOT_SEGMENT = /(^|\/)\.\.?(\/|$)/
/** Headers a request carries once at most: two copies could be read one way here and another upstream. */
const SINGLE_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'authorization', 'content-type', 'content-range', 'range', 'expect'])

function reject (status: number, code: RegistryErrorCode, message: string): Rejection {
  return { status, code, message }
}

/**
 * Framing and request-target checks on the raw request, before Fastify routes it: methods outside
 * the API, absolute- and asterisk-form targets, fragments, percent-encoding, dot segments and
 * empty segments in the path, characters outside the registry grammar, a missing or repeated
 * Host, repeated or conflicting Content-Length / Transfer-Encoding, transfer codings other than
 * chunked. (Node's parser already refuses control characters, malformed lengths and oversized
 * headers; listener.ts answers those.)
 */
export function preflight (req: IncomingMessage): Rejection | undefined {
  const method = req.method ?? ''
  if (!SERVED.has(method)) {
    return { status: 405, code: 'UNSUPPORTED', message: `method ${printable(method)} is not part of the registry API`, allow: SERVED_METHODS.join(', ') }
  }
  if (req.httpVersionMajor !== 1) return reject(400, 'UNSUPPORTED', `HTTP/${printable(req.httpVersion)} is not spoken here; use HTTP/1.1`)
  const target = req.url ?? ''
  if (!target.startsWith('/')) {
    return reject(400, 'UNSUPPORTED', target === '*'
      ? 'asterisk-form request targets are not accepted'
      : 'absolute-form request targets are not accepted; this is not a forward proxy')
  }
  if (target.includes('#')) return reject(400, 'UNSUPPORTED', 'a request target carries no fragment')
  const path = pathOf(target)
  const code: RegistryErrorCode = path === '/v2' || path.startsWith('/v2/') ? 'NAME_INVALID' : 'UNSUPPORTED'
  if (path.includes('%')) return reject(400, code, 'percent-encoded characters are not accepted in the path; registry paths never need them')
  if (!PATH_CHARS.test(path)) return reject(400, code, 'the path holds characters outside the registry grammar')
  if (DOT_SEGMENT.test(path)) return reject(400, code, 'dot segments (. and ..) are not accepted in the path')
  if (path.includes('//')) return reject(400, code, 'empty path segments (//) are not accepted')

  const seen = new Set<string>()
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    if (SINGLE_HEADERS.has(name)) {
      if (seen.has(name)) return reject(400, 'UNSUPPORTED', `the ${name} header appears more than once`)
      seen.add(name)
    }
  }
  if (!seen.has('host') && req.httpVersion !== '1.0') return reject(400, 'UNSUPPORTED', 'an HTTP/1.1 request needs a Host header')
  const transferEncoding = req.headers['transfer-encoding']
  const contentLength = req.headers['content-length']
  if (transferEncoding !== undefined && contentLength !== undefined) {
    return reject(400, 'UNSUPPORTED', 'a request carries Content-Length or Transfer-Encoding, not both')
  }
  if (transferEncoding !== undefined && transferEncoding.trim().toLowerCase() !== 'chunked') {
    return reject(400, 'UNSUPPORTED', 'only the chunked transfer coding is accepted')
  }
  if (contentLength !== undefined && !/^[0-9]{1,16}$/.test(contentLength)) return reject(400, 'SIZE_INVALID', 'Content-Length must be a decimal number')
  return undefined
}
