import type { Target } from './resolve.js'

/**
 * The reverse of routing: what the registry says about itself (Location, Link) turned into what
 * the client asked for — a path on the proxy, under the repository name the client used.
 */
export interface NameMapping {
  /** A Location header value. */
  location: (value: string) => string
  /** A Link header value: every `<…>` target mapped like a Location. */
  link: (value: string) => string
}

export function nameMapping (target: Target, origin: string): NameMapping {
  const { upstreamName, clientName } = target
  const renamed = upstreamName !== undefined && clientName !== undefined && upstreamName !== clientName
  const location = renamed
    ? (value: string) => renameInPath(rewriteLocation(value, origin), upstreamName, clientName)
    : (value: string) => rewriteLocation(value, origin)
  return { location, link: (value) => value.replace(/<([^>]*)>/g, (_whole, inner: string) => `<${location(inner)}>`) }
}

/** `/v2/<from>/…` → `/v2/<to>/…`; any other value is left alone. */
function renameInPath (value: string, from: string, to: string): string {
  const prefix = `/v2/${from}/`
  return value.startsWith(prefix) ? `/v2/${to}/${value.slice(prefix.length)}` : value
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
  return link.replace(/<([^>]*)>/g, (_whole, target: string) => `<${rewriteLocation(target, upstreamOrigin)}>`)
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

/**
 * A tags/list body names the repository as the registry knows it; the client must read back the
 * name it asked for. Undefined when the body is not a tags/list answer or needs no change.
 */
export function renameTagList (body: Buffer, target: Target): Buffer | undefined {
  const { upstreamName, clientName } = target
  if (upstreamName === undefined || clientName === undefined || upstreamName === clientName) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof parsed !== 'object' || parsed === null || (parsed as { name?: unknown }).name !== upstreamName) return undefined
  return Buffer.from(JSON.stringify({ ...parsed, name: clientName }))
}
