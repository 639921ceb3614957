import type { NameMapping } from '../routing/names.js'
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

// RFC 9110 §7.6.1: connection-specific header fields are never forwarded.
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'http2-settings'
])

/** Request headers a client may send that never reach the upstream. */
const NOT_FORWARDED = new Set([
  ...HOP_BY_HOP,
  // The proxy's own credential replaces whatever the client sent.
  'authorization', 'proxy-authorization', 'cookie',
  // Node answers `Expect: 100-continue` itself; undici refuses to send it.
  'expect',
  // Set by the transport for the upstream's own origin.
  'host'
])

/** The lower-cased tokens of a Connection header. */
export function connectionListed (value: string | string[] | number | undefined): string[] {
  if (typeof value !== 'string') return []
  return value.split(',').map((name) => name.trim().toLowerCase()).filter((name) => name !== '')
}

export function upstreamRequestHeaders (client: IncomingHttpHeaders, authorization: string): Record<string, string | string[]> {
  const listed = connectionListed(client.connection)
  const headers: Record<string, string | string[]> = {}
  for (const name in client) {
    const value = client[name]
    if (value === undefined || NOT_FORWARDED.has(name) || (listed.length > 0 && listed.includes(name))) continue
    headers[name] = value
  }
  // Empty: sent without a credential (a token flow learning its realm, or anonymous).
  if (authorization !== '') headers.authorization = authorization
  return headers
}

/**
 * Response headers as the registry sent them, minus hop-by-hop fields, with `Location` and `Link`
 * mapped back to what the client asked for (routing/names.ts).
 */
export function clientResponseHeaders (upstream: IncomingHttpHeaders | OutgoingHttpHeaders, names: NameMapping): OutgoingHttpHeaders {
  const listed = connectionListed(upstream.connection as string | undefined)
  const headers: OutgoingHttpHeaders = {}
  for (const name in upstream) {
    const value = upstream[name]
    if (value === undefined || HOP_BY_HOP.has(name) || (listed.length > 0 && listed.includes(name))) continue
    headers[name] = value
  }
  const location = headers.location
  if (typeof location === 'string') headers.location = names.location(location)
  const link = headers.link
  if (link !== undefined) headers.link = Array.isArray(link) ? link.map((l) => names.link(l)) : names.link(String(link))
  // The registry's challenge names the registry's realm; clients of the proxy hold no credential
  // for it, so passing it on would only make them try to log in to the wrong place. (The
  // authorizer reads it before this point.)
  delete headers['www-authenticate']
  return headers
}
