/**
 * Every way talking to a registry or its blob storage can fail, in one vocabulary. Transports
 * raise their own codes (node:http, the blob client, undici); `toUpstreamError` sorts them here
 * and nowhere else.
 */
export type UpstreamErrorKind = 'connect' | 'timeout' | 'tls' | 'reset' | 'other'

export interface UpstreamErrorOptions {
  cause?: unknown
  status?: number
  errorCode?: 'UNAVAILABLE' | 'UNSUPPORTED'
  headers?: Record<string, string>
}

export class UpstreamError extends Error {
  override name = 'UpstreamError'
  /** The status the client gets: 504 for timeouts, 502 otherwise; 416 for an unsatisfiable range. */
  readonly status: number
  /** Extra response headers (Content-Range of a 416). */
  readonly headers: Readonly<Record<string, string>>
  /** The registry error code the client reads. */
  readonly errorCode: 'UNAVAILABLE' | 'UNSUPPORTED'

  constructor (message: string, readonly kind: UpstreamErrorKind, readonly code: string | undefined, options: UpstreamErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.status = options.status ?? (kind === 'timeout' ? 504 : 502)
    this.headers = options.headers ?? {}
    this.errorCode = options.errorCode ?? 'UNAVAILABLE'
  }
}

const TIMEOUT_CODES = new Set(['ECONNECT_TIMEOUT', 'EQUEUE_TIMEOUT', 'EHEADERS_TIMEOUT', 'EBODY_TIMEOUT', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'])
const RESET_CODES = new Set(['ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE'])

export function kindOf (code: string | undefined, message = ''): UpstreamErrorKind {
  const c = code ?? ''
  if (TIMEOUT_CODES.has(c)) return 'timeout'
  if (CONNECT_CODES.has(c)) return 'connect'
  if (RESET_CODES.has(c)) return 'reset'
  if (c.startsWith('ERR_TLS') || c.includes('CERT') || /certificate/i.test(message)) return 'tls'
  return 'other'
}

/**
 * A transport failure toward `origin`, as the client will read it: "<origin> did not answer in
 * time" (504) or "<origin> could not be reached: <why> (<code>)" (502).
 */
export function toUpstreamError (err: unknown, origin: string): UpstreamError {
  if (err instanceof UpstreamError) return err
  const failure = err as { code?: string, message?: string }
  const kind = kindOf(failure.code, failure.message)
  const message = kind === 'timeout'
    ? `${origin} did not answer in time`
    : `${origin} could not be reached: ${failure.message ?? 'unknown error'}${failure.code === undefined ? '' : ` (${failure.code})`}`
  return new UpstreamError(message, kind, failure.code, { cause: err })
}

/** A failure of the client's side of a transfer (it went away): nothing to report upstream. */
export function isClientGone (err: unknown): boolean {
  return (err as { code?: string }).code === 'ECLIENTGONE'
}
