import { createServer, type Server, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { Readable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { startCli, STEADY_HEAP_ENV } from '../helpers/cli-process.js'
import { startEcrApi } from '../helpers/ecr-api.js'
import { closeServer, listen } from '../helpers/listen.js'
import { TokenAuthority } from '../helpers/token-authority.js'
import { eventually } from './support.js'

const BLOB_BYTES = 256 * 1024 * 1024
const READ_BEFORE_ABORT = 256 * 1024
const ABORTS = 1000
const CONCURRENCY = 20
const DIRECT = `sha256:${'d'.repeat(64)}`
const REDIRECTED = `sha256:${'e'.repeat(64)}`

/** Zeros, produced on demand: an endless-looking download that costs nothing to serve. */
function zeros (size: number): Readable {
  const chunk = Buffer.alloc(64 * 1024)
  let left = size
  return new Readable({
    read () {
      if (left <= 0) {
        this.push(null)
        return
      }
      const next = left >= chunk.length ? chunk : chunk.subarray(0, left)
      left -= next.length
      this.push(next)
    }
  })
}

/** An HTTP server that counts its open sockets and its responses still in progress. */
async function countingServer (handle: (path: string, res: ServerResponse) => void): Promise<{ url: string, server: Server, inProgress: () => number, sockets: () => Promise<number>, served: () => number }> {
  let inProgress = 0
  let served = 0
  const server = createServer((req, res) => {
    inProgress++
    served++
    res.on('close', () => { inProgress-- })
    handle(req.url ?? '', res)
  })
  const url = await listen(server)
  return {
    url,
    server,
    inProgress: () => inProgress,
    served: () => served,
    sockets: async () => await new Promise((resolve) => server.getConnections((_err, count) => resolve(count)))
  }
}

/** Starts a download through the proxy, reads a little of it, and drops the connection. */
async function abortedDownload (origin: string, digest: string): Promise<number> {
  const url = new URL(origin)
  return await new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname)
    let received = 0
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no data for ${digest}`)) }, 10_000)
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (received >= READ_BEFORE_ABORT) {
        clearTimeout(timer)
        socket.destroy()
        resolve(received)
      }
    })
    socket.on('error', reject)
    socket.write(`GET /v2/big/blobs/${digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  })
}

t.test(`${ABORTS} client aborts mid-download: no upstream socket or response left open, memory flat`, async (t) => {
  const storage = await countingServer((_path, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BLOB_BYTES })
    zeros(BLOB_BYTES).pipe(res)
  })
  t.teardown(() => closeServer(storage.server))
  const registry = await countingServer((path, res) => {
    if (path === `/v2/big/blobs/${DIRECT}`) {
      // Served by the registry itself (docker-registry with filesystem storage): pass-through path.
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BLOB_BYTES, 'docker-content-digest': DIRECT })
      zeros(BLOB_BYTES).pipe(res)
    } else if (path === `/v2/big/blobs/${REDIRECTED}`) {
      // ECR's way: a redirect to storage, which follow mode fetches itself.
      res.writeHead(307, { location: `${storage.url}/layer?X-Amz-Signature=abc`, 'content-length': 0 }).end()
    } else {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 }).end('{}')
    }
  })
  t.teardown(() => closeServer(registry.server))
  const authority = new TokenAuthority()
  const api = await startEcrApi({ authority, proxyEndpoint: registry.url })
  t.teardown(() => api.close())
  const proxy = await startCli(t, ['--upstream', registry.url, '--log-level', 'warn', '--redirects', 'follow', '--redirect-allowed-hosts', '127.0.0.1:*'], {
    AWS_ENDPOINT_URL_ECR: api.url,
    AWS_REGION: 'us-east-2',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'secret',
    ...STEADY_HEAP_ENV
  })
  t.ok(await eventually(async () => {
    const ready = await request(`${proxy.url}/readyz`).catch(() => undefined)
    await ready?.body.dump()
    return ready?.statusCode === 200
  }, 10_000), 'proxy ready')

  const deadline = Date.now() + 120_000
  let done = 0
  let baseline = 0
  const started = Date.now()
  while (done < ABORTS && Date.now() < deadline) {
    const batch = Array.from({ length: Math.min(CONCURRENCY, ABORTS - done) }, (_, i) => abortedDownload(proxy.url, (done + i) % 2 === 0 ? DIRECT : REDIRECTED))
    await Promise.all(batch)
    done += batch.length
    if (done === 100) {
      await eventually(() => registry.inProgress() === 0 && storage.inProgress() === 0)
      baseline = proxy.memory().current
    }
  }
  const elapsed = Date.now() - started
  t.equal(done, ABORTS, `${done} aborted downloads in ${elapsed} ms`)

  const settled = await eventually(async () => registry.inProgress() === 0 && storage.inProgress() === 0 && await storage.sockets() === 0, 10_000)
  t.ok(settled, `upstream responses in progress: registry ${registry.inProgress()}, storage ${storage.inProgress()}; storage sockets ${await storage.sockets()}`)
  t.equal(await storage.sockets(), 0, 'no socket to storage left open')
  const registrySockets = await registry.sockets()
  // Only the redirect answers completed, so only their kept-alive connections may remain.
  t.ok(registrySockets <= CONCURRENCY, `registry sockets left: ${registrySockets} (idle kept-alive at most ${CONCURRENCY})`)
  t.equal(registry.served(), ABORTS, 'one registry request per download: nothing retried or leaked')
  t.equal(storage.served(), ABORTS / 2, 'one storage request per redirected download')

  const after = proxy.memory().current
  const growth = after - baseline
  t.ok(growth < 48 * 1024 * 1024, `RSS after 100 aborts ${Math.round(baseline / 1048576)} MiB, after ${ABORTS} ${Math.round(after / 1048576)} MiB (growth ${Math.round(growth / 1048576)} MiB)`)

  const ping = await request(`${proxy.url}/v2/`)
  t.equal(ping.statusCode, 200, 'the proxy still serves')
  await ping.body.dump()
  t.equal(proxy.child.exitCode, null)
})
