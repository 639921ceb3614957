import type { Agent } from 'undici'

export interface ForwardingTimeouts {
  connectTimeoutSeconds: number
  headersTimeoutSeconds: number
  /** 0: none. Between two body chunks, not for the whole body: multi-GB layers take long. */
  bodyTimeoutSeconds: number
}

/**
 * Options of the undici Agent toward redirect targets (follow mode): TLS always verified, a
 * connect timeout (TCP and TLS handshake), a timeout for the response headers and an idle
 * timeout between body chunks.
 */
export function dispatcherOptions (timeouts: ForwardingTimeouts): Agent.Options {
  return {
    connect: { rejectUnauthorized: true, timeout: Math.round(timeouts.connectTimeoutSeconds * 1000) },
    headersTimeout: Math.round(timeouts.headersTimeoutSeconds * 1000),
    bodyTimeout: Math.round(timeouts.bodyTimeoutSeconds * 1000),
    keepAliveTimeout: 30_000
  }
}
