import type { Agent } from 'undici'

export interface UpstreamTimeouts {
  upstreamConnectTimeoutSeconds: number
  upstreamHeadersTimeoutSeconds: number
  /** 0: none. Between two body chunks, not for the whole body: multi-GB layers take long. */
  upstreamBodyTimeoutSeconds: number
}

/**
 * Options of the undici Agent toward the registry (and, in follow mode, the redirect targets):
 * TLS always verified, a connect timeout (TCP and TLS handshake), a timeout for the response
 * headers (undici restarts it on every request-body chunk it writes, so it counts from the end
 * of an upload) and an idle timeout between body chunks.
 */
export function upstreamAgentOptions (timeouts: UpstreamTimeouts): Agent.Options {
  return {
    connect: { rejectUnauthorized: true, timeout: Math.round(timeouts.upstreamConnectTimeoutSeconds * 1000) },
    headersTimeout: Math.round(timeouts.upstreamHeadersTimeoutSeconds * 1000),
    bodyTimeout: Math.round(timeouts.upstreamBodyTimeoutSeconds * 1000),
    keepAliveTimeout: 30_000
  }
}
