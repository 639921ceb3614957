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
  headers.authorization = authorization
  return headers
}

/**
 * Response headers as the upstream sent them, minus hop-by-hop fields, with `Location` and `Link`
 * that point at the upstream turned into paths on the proxy.
 */
export function clientResponseHeaders (upstream: IncomingHttpHeaders | OutgoingHttpHeaders, upstreamOrigin: string): OutgoingHttpHeaders {
  const listed = connectionListed(upstream.connection as string | undefined)
  const headers: OutgoingHttpHeaders = {}
  for (const name in upstream) {
    const value = upstream[name]
    if (value === undefined || HOP_BY_HOP.has(name) || (listed.length > 0 && listed.includes(name))) continue
    headers[name] = value
  }
  const location = headers.location
  if (typeof location === 'string') headers.location = rewriteLocation(location, upstreamOrigin)
  const link = headers.link
  if (link !== undefined) headers.link = Array.isArray(link) ? link.map((l) => rewriteLink(l, upstreamOrigin)) : rewriteLink(String(link), upstreamOrigin)
  // The upstream's challenge names the upstream's realm; clients of the proxy hold no credential
  // for it, so passing it on would only make them try to log in to the wrong place.
  delete headers['www-authenticate']
  return headers
}

/**
 * An absolute URL on the upstream becomes the same path and query, relative to the proxy.
 * The path and query are kept byte for byte: ECR's upload Location ends in the upload UUID that
 * docker reads back, and its tags/list `last=` is an opaque, encrypted cursor. Other hosts (S3
 * presigned URLs) are left alone.
 */
export function rewriteLocation (location: string, upstreamOrigin: string): string {
  if (location.startsWith(upstreamOrigin)) {
    const rest = location.slice(upstreamOrigin.length)
    if (rest === '') return '/'
    if (rest.startsWith('/') || rest.startsWith('?')) return rest
  }
  // The same origin written differently (explicit default port, upper-case host); anything
  // else (S3, or a look-alike such as https://host.evil.example) is not ours.
  return sameOrigin(location, upstreamOrigin) ? location.slice(originLength(location)) || '/' : location
}

/** `Link: <https://upstream/v2/…?last=…&n=…>; rel="next"` → `</v2/…?last=…&n=…>; rel="next"`. */
export function rewriteLink (link: string, upstreamOrigin: string): string {
  return link.replace(/<([^>]*)>/g, (whole, target: string) => `<${rewriteLocation(target, upstreamOrigin)}>`)
}

function sameOrigin (url: string, origin: string): boolean {
  if (!/^https?:\/\//i.test(url)) return false
  try {
    return new URL(url).origin === origin
  } catch {
    return false
  }
}

function originLength (url: string): number {
  const afterScheme = url.indexOf('//') + 2
  const end = url.slice(afterScheme).search(/[/?#]/)
  return end === -1 ? url.length : afterScheme + end
}
