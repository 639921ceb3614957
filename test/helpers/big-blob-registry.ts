import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { syntheticBytes } from './digest.js'
import { closeServer, listen } from './listen.js'
import type { TokenAuthority } from './token-authority.js'

export const GiB = 1024 ** 3

/**
 * A registry that serves a 1 GiB blob itself (as docker-registry does with filesystem storage)
 * and hashes uploads as they stream in, so nothing in this process holds a GiB either.
 */
export async function startBigBlobRegistry (authority: TokenAuthority) {
  const uploads: Array<{ bytes: number, digest: string }> = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (authority.check(req.headers.authorization) !== 'ok') {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end()
      return
    }
    if (req.method === 'GET' && req.url?.startsWith('/v2/big/blobs/')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': GiB })
      syntheticBytes(GiB, 'download').pipe(res)
      return
    }
    if (req.method === 'PATCH') {
      const hash = createHash('sha256')
      let bytes = 0
      req.on('data', (chunk: Buffer) => { bytes += chunk.length; hash.update(chunk) })
      req.on('end', () => {
        uploads.push({ bytes, digest: `sha256:${hash.digest('hex')}` })
        res.writeHead(201, { location: `${url}/v2/big/blobs/uploads/1`, range: `0-${bytes - 1}` }).end()
      })
      return
    }
    res.writeHead(404).end()
  })
  const url = await listen(server)
  return { url, uploads, close: async () => await closeServer(server) }
}
