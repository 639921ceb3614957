import { randomBytes } from 'node:crypto'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { closeServer, listen } from './listen.js'

export interface BearerRegistryOptions {
  /** Time for token expiry (a fake clock's). */
  now: () => number
  /** Seconds a token lives (expires_in). */
  lifetimeSeconds?: number
  /** The Basic credential the token endpoint accepts for authenticated tokens. */
  basic?: string
  /** The realm named in challenges; default this server's own /token/. */
  realm?: (origin: string) => string
}

export interface BearerRegistry {
  url: string
  /** Every request, token endpoint included, as received. */
  requests: Array<{ method: string, url: string, headers: IncomingHttpHeaders }>
  tokenRequests: () => Array<{ url: string, headers: IncomingHttpHeaders }>
  /** Tokens issued: the scope and whether a Basic credential came with the request. */
  issued: Array<{ token: string, scope: string, authenticated: boolean }>
  putManifest: (repo: string, tag: string, body: Buffer, mediaType: string) => void
  close: () => Promise<void>
}

/**
 * A registry that behaves like public.ecr.aws: 401 with a Bearer challenge (realm, service,
 * scope="aws") without a token; a token endpoint at /token/ (anonymous or Basic) handing out
 * scoped tokens with expires_in; 400 — not 401 — for an expired or unknown bearer.
 */
export async function startBearerRegistry (options: BearerRegistryOptions): Promise<BearerRegistry> {
  const lifetime = options.lifetimeSeconds ?? 300
  const manifests = new Map<string, { body: Buffer, mediaType: string }>()
  const tokens = new Map<string, { scope: string, expiresAt: number }>()
  const requests: BearerRegistry['requests'] = []
  const issued: BearerRegistry['issued'] = []
  let origin = ''
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    const url = new URL(req.url ?? '/', 'http://x')
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers })
      res.end(JSON.stringify(body))
    }
    if (url.pathname === '/token/') {
      const auth = req.headers.authorization
      const authenticated = auth !== undefined
      if (authenticated && auth !== `Basic ${options.basic ?? ''}`) return json(401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] })
      const scope = url.searchParams.get('scope') ?? ''
      const token = randomBytes(12).toString('hex')
      tokens.set(token, { scope, expiresAt: options.now() + lifetime * 1000 })
      issued.push({ token, scope, authenticated })
      return json(200, { token, expires_in: lifetime })
    }
    const challenge = `Bearer realm="${options.realm?.(origin) ?? `${origin}/token/`}",service="public.ecr.aws",scope="aws"`
    const auth = req.headers.authorization
    if (auth === undefined || !auth.startsWith('Bearer ')) return json(401, { errors: [{ code: 'UNAUTHORIZED', message: 'Not Authorized' }] }, { 'www-authenticate': challenge })
    const held = tokens.get(auth.slice(7))
    // ECR Public's quirk: an expired or unknown bearer is a 400.
    if (held === undefined || held.expiresAt <= options.now()) return json(400, { errors: [{ code: 'DENIED', message: 'Your authorization token has expired. Reauthenticate and try again.' }] })
    const match = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname)
    if (url.pathname === '/v2/') return json(200, {})
    if (match === null) return json(404, { errors: [{ code: 'NOT_FOUND', message: 'not here' }] })
    const [, repo, tag] = match as unknown as [string, string, string]
    if (held.scope !== `repository:${repo}:pull`) return json(403, { errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] })
    const manifest = manifests.get(`${repo}:${tag}`)
    if (manifest === undefined) return json(404, { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] })
    res.writeHead(200, { 'content-type': manifest.mediaType, 'content-length': manifest.body.length })
    res.end(req.method === 'HEAD' ? undefined : manifest.body)
  })
  const url = await listen(server)
  origin = url
  return {
    url,
    requests,
    tokenRequests: () => requests.filter((r) => r.url.startsWith('/token/')),
    issued,
    putManifest: (repo, tag, body, mediaType) => { manifests.set(`${repo}:${tag}`, { body, mediaType }) },
    close: async () => await closeServer(server)
  }
}
