// Minimal forwarding proxies, each with the proxy's one job (replace Authorization, stream both ways),
// to compare how the forwarding primitive alone performs. Used by bench/experiments/forward.sh.
// Usage: forward-variants.ts --mode MODE --port N --upstream http://127.0.0.1:PORT [--token T] [--log FILE]
//   undici-request       undici Agent.request, body piped to the response (what reply-from does)
//   undici-stream        undici Agent.stream, the response is the body's writable (no intermediate Readable)
//   node-http            node:http client with a keep-alive Agent, response piped
//   fastify-undici       Fastify 5 + @fastify/reply-from on an undici Agent (the proxy's stack, no hooks/logging)
//   fastify-undici-log   the same with one pino JSON line per request (to --log)
//   fastify-http         Fastify 5 + @fastify/reply-from on node:http agents (reply-from's `http` option)
//   tcp-pipe             no HTTP at all: each client connection piped to its own upstream connection (the
//                        client sends its own Authorization) — the floor of moving bytes through Node
//   tcp-pipe-pooled      the same, upstream reads into a small pool of reused 256 KiB buffers (net `onread`)
import http from 'node:http'
import net from 'node:net'
import https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import replyFrom from '@fastify/reply-from'
import { Agent } from 'undici'

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'authorization'])

function upstreamHeaders (h: http.IncomingHttpHeaders, auth: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP.has(k)) out[k] = v
  out.authorization = auth
  return out
}

function responseHeaders (h: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [k, v] of Object.entries(h)) if (v !== undefined && k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding') out[k] = v
  return out
}

function fail (res: ServerResponse, err: unknown): void {
  if (!res.headersSent) {
    res.writeHead(502, { 'content-type': 'text/plain' })
    res.end(String(err))
  } else res.destroy()
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: { mode: { type: 'string' }, port: { type: 'string' }, upstream: { type: 'string' }, token: { type: 'string' }, log: { type: 'string' } }
  })
  const mode = values.mode ?? 'undici-request'
  const upstream = values.upstream ?? ''
  const auth = `Basic ${values.token ?? 'QVdTOnBhc3N3b3Jk'}`
  const port = Number(values.port ?? 0)
  if (upstream === '') throw new Error('--upstream is required')
  const origin = new URL(upstream)

  if (mode.startsWith('tcp-pipe')) {
    const pooled = mode === 'tcp-pipe-pooled'
    const server = net.createServer((client) => {
      client.setNoDelay(true)
      if (!pooled) {
        const up = net.connect({ host: origin.hostname, port: Number(origin.port) })
        up.setNoDelay(true)
        pipeline(client, up, () => client.destroy())
        pipeline(up, client, () => up.destroy())
        return
      }
      // upstream → client through reused buffers: a buffer goes back to the pool once written
      const free: Buffer[] = []
      const take = (): Buffer => free.pop() ?? Buffer.allocUnsafe(256 * 1024)
      let current = take()
      const up = net.connect({
        host: origin.hostname,
        port: Number(origin.port),
        onread: {
          buffer: () => current,
          callback: (n: number, buf: Uint8Array) => {
            const chunk = Buffer.from(buf.buffer, buf.byteOffset, n)
            const owner = current
            current = take()
            const ok = client.write(chunk, () => { free.push(owner) })
            if (!ok) {
              up.pause()
              client.once('drain', () => up.resume())
            }
            return true
          }
        }
      })
      up.setNoDelay(true)
      up.on('end', () => client.end())
      up.on('error', () => client.destroy())
      client.on('error', () => up.destroy())
      client.on('close', () => up.destroy())
      pipeline(client, up, () => {})
    })
    server.listen(port, '127.0.0.1', () => {
      const a = server.address()
      console.log(`${mode} on ${a !== null && typeof a === 'object' ? a.port : port}`)
    })
    return
  }

  if (mode.startsWith('fastify-')) {
    const logging = mode === 'fastify-undici-log'
    const app = Fastify({
      logger: logging ? { level: 'info', file: values.log ?? '/dev/null' } : false,
      disableRequestLogging: true
    })
    await app.register(replyFrom, mode === 'fastify-http'
      ? { base: upstream, http: { agents: { 'http:': new http.Agent({ keepAlive: true, maxSockets: 128 }), 'https:': new https.Agent({ keepAlive: true }) } } }
      : { base: upstream, undici: new Agent({ keepAliveTimeout: 30_000 }) as never })
    app.removeAllContentTypeParsers()
    // like @fastify/http-proxy: the body stays a stream and reply-from forwards it as is
    app.addContentTypeParser('*', (_req, payload, done) => { done(null, payload) })
    if (logging) {
      app.addHook('onResponse', async (request, reply) => {
        request.log.info({ method: request.method, path: request.url, status: reply.statusCode, durationMs: reply.elapsedTime }, 'request')
      })
    }
    app.all('/v2/*', (request, reply) => {
      return reply.from(request.url, {
        rewriteRequestHeaders: (_req, headers) => ({ ...headers, authorization: auth })
      })
    })
    await app.listen({ host: '127.0.0.1', port })
    console.log(`${mode} on ${String(app.server.address() !== null && typeof app.server.address() === 'object' ? (app.server.address() as { port: number }).port : port)}`)
    return
  }

  const agent = new Agent({ keepAliveTimeout: 30_000 })
  const nodeAgent = new http.Agent({ keepAlive: true, maxSockets: 128 })
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const headers = upstreamHeaders(req.headers, auth)
    const method = req.method ?? 'GET'
    const hasBody = method !== 'GET' && method !== 'HEAD'
    if (mode === 'node-http') {
      const up = http.request({ host: origin.hostname, port: origin.port, path: req.url, method, headers, agent: nodeAgent }, (ures) => {
        res.writeHead(ures.statusCode ?? 502, responseHeaders(ures.headers))
        pipeline(ures, res, () => {})
      })
      up.on('error', (err) => fail(res, err))
      if (hasBody) pipeline(req, up, () => {})
      else up.end()
      return
    }
    const opts = { origin: origin.origin, path: req.url ?? '/', method: method as 'GET', headers, body: hasBody ? req : null }
    if (mode === 'undici-stream') {
      agent.stream(opts, ({ statusCode, headers: h }) => {
        res.writeHead(statusCode, responseHeaders(h))
        return res
      }).catch((err: unknown) => fail(res, err))
      return
    }
    agent.request(opts).then(({ statusCode, headers: h, body }) => {
      res.writeHead(statusCode, responseHeaders(h))
      pipeline(body, res, () => {})
    }, (err: unknown) => fail(res, err))
  }
  const server = http.createServer(handle)
  server.keepAliveTimeout = 30_000
  server.listen(port, '127.0.0.1', () => {
    const a = server.address()
    console.log(`${mode} on ${a !== null && typeof a === 'object' ? a.port : port}`)
  })
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
