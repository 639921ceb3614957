// Read buffer size per scheme: what the blob client's onread buffer size does to a download over
// plain HTTP and over TLS. Over TLS, Node hands the cleartext to onread in pieces of at most 16 KiB
// (TLSWrap::ClearOut reads one TLS record's worth per call), whatever the buffer size; this measures
// whether larger buffers still help there.
//
// Usage: node --import=@tapjs/typescript/import bench/experiments/read-size.ts [--mib 512] [--runs 3]
//          [--sizes 16,64,256,1024] [--schemes http,https]
//
// A child process serves the blob (node:http / node:https, Content-Length, written with backpressure
// from one 1 MiB buffer) and runs a TCP sink that discards what it reads. This process downloads it
// with a BlobClient and writes the body into a loopback socket to that sink, as the proxy writes to
// its client, and measures its own CPU (user + system) and wall time per download. Runs interleave
// the configurations; each figure is the median of the runs. `node:http` is the same download
// through node:http (a fresh Buffer per read), for reference.
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { BlobClient, type BodyDestination } from '../../src/upstream/transport/blob-client.js'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

interface Ports { http: number, https: number, sink: number, cert: string }

function selfSigned (): { key: Buffer, cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'read-size-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The child: the origin (plain and TLS) and the sink. Prints its ports as one JSON line. */
async function serve (): Promise<void> {
  const block = Buffer.alloc(MiB, 0x5a)
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const bytes = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('bytes'))
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes) })
    let left = bytes
    const pump = (): void => {
      while (left > 0) {
        const piece = left >= block.length ? block : block.subarray(0, left)
        left -= piece.length
        if (!res.write(piece)) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
  }
  const { key, cert } = selfSigned()
  const plain = http.createServer(handler)
  const secure = https.createServer({ key, cert }, handler)
  const sink = net.createServer((socket) => {
    socket.on('data', () => {})
    socket.on('error', () => {})
  })
  for (const server of [plain, secure, sink]) server.listen(0, '127.0.0.1')
  await Promise.all([plain, secure, sink].map(async (server) => await once(server, 'listening')))
  const port = (server: net.Server): number => (server.address() as net.AddressInfo).port
  const ports: Ports = { http: port(plain), https: port(secure), sink: port(sink), cert: cert.toString() }
  process.stdout.write(`${JSON.stringify(ports)}\n`)
}

interface Result { seconds: number, cpuSeconds: number, writes: number, bufferBytes: number, buffersMiB: number }

/** A loopback socket to the sink, counting the writes it is given. */
async function sinkSocket (port: number): Promise<{ destination: BodyDestination, socket: net.Socket, writes: () => number }> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.setNoDelay(true)
  let writes = 0
  const destination: BodyDestination = {
    write: (chunk, callback) => {
      writes++
      return socket.write(chunk, callback)
    },
    end: () => socket.end(),
    on: (event, listener) => socket.on(event, listener),
    off: (event, listener) => socket.off(event, listener),
    get writableFinished () { return socket.writableFinished }
  }
  return { destination, socket, writes: () => writes }
}

async function measured (download: () => Promise<Omit<Result, 'seconds' | 'cpuSeconds'>>): Promise<Result> {
  const cpu = process.cpuUsage()
  const started = process.hrtime.bigint()
  const counts = await download()
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const used = process.cpuUsage(cpu)
  return { seconds, cpuSeconds: (used.user + used.system) / 1e6, ...counts }
}

/** `readBufferBytes` undefined: the client's defaults for the scheme. */
async function viaBlobClient (ports: Ports, scheme: 'http' | 'https', readBufferBytes: number | undefined, bytes: number): Promise<Result> {
  const client = new BlobClient({
    connectTimeoutMs: 5000,
    headersTimeoutMs: 5000,
    bodyTimeoutMs: 30_000,
    ca: ports.cert,
    // Both set, so the size measured is the size used whatever the scheme.
    ...(readBufferBytes === undefined ? {} : { readBufferBytes, tlsReadBufferBytes: readBufferBytes })
  })
  const sink = await sinkSocket(ports.sink)
  try {
    return await measured(async () => {
      const res = await client.get(`${scheme}://127.0.0.1:${ports[scheme]}`, `/blob?bytes=${bytes}`, {})
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`)
      await res.pipeTo(sink.destination)
      const pool = scheme === 'https' ? client.tlsPool : client.pool
      return { writes: sink.writes(), bufferBytes: pool.size, buffersMiB: pool.stats().allocated * pool.size / MiB }
    })
  } finally {
    client.destroy()
    sink.socket.destroy()
  }
}

async function viaNodeHttp (ports: Ports, scheme: 'http' | 'https', bytes: number): Promise<Result> {
  const agent = scheme === 'https' ? new https.Agent({ ca: ports.cert }) : new http.Agent()
  const sink = await sinkSocket(ports.sink)
  try {
    return await measured(async () => {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const get = scheme === 'https' ? https.get : http.get
        get(`${scheme}://127.0.0.1:${ports[scheme]}/blob?bytes=${bytes}`, { agent }, resolve).on('error', reject)
      })
      let reads = 0
      res.on('data', () => { reads++ })
      res.pipe(sink.socket, { end: false })
      await once(res, 'end')
      return { writes: reads, bufferBytes: 0, buffersMiB: 0 }
    })
  } finally {
    agent.destroy()
    sink.socket.destroy()
  }
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: 'boolean' },
      mib: { type: 'string' },
      runs: { type: 'string' },
      sizes: { type: 'string' },
      schemes: { type: 'string' }
    }
  })
  if (values.serve === true) {
    await serve()
    return
  }
  const bytes = Number(values.mib ?? 512) * MiB
  const runs = Number(values.runs ?? 3)
  const sizes = (values.sizes ?? '16,64,256,1024').split(',').map((kib) => Number(kib) * KiB)
  const schemes = (values.schemes ?? 'http,https').split(',') as Array<'http' | 'https'>

  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--serve'], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const [line] = await once(child.stdout, 'data') as [Buffer]
    const ports = JSON.parse(line.toString()) as Ports

    const configs: Array<{ scheme: 'http' | 'https', size: number | 'default' | 'node:http' }> = []
    for (const scheme of schemes) {
      for (const size of sizes) configs.push({ scheme, size })
      configs.push({ scheme, size: 'default' }, { scheme, size: 'node:http' })
    }
    const run = async ({ scheme, size }: typeof configs[number], length: number): Promise<Result> =>
      size === 'node:http' ? await viaNodeHttp(ports, scheme, length) : await viaBlobClient(ports, scheme, size === 'default' ? undefined : size, length)

    // Warm-up: JIT, TLS session, the child's buffers.
    for (const config of configs) await run(config, 32 * MiB)
    const results = new Map<typeof configs[number], Result[]>(configs.map((config) => [config, []]))
    for (let i = 0; i < runs; i++) {
      for (const config of configs) results.get(config)?.push(await run(config, bytes))
    }

    const load = loadavg().map((l) => l.toFixed(1)).join(' ')
    console.log(`Node ${process.version}, ${cpus().length} CPUs, load average ${load} at the end; ${bytes / MiB} MiB per download, ` +
      `median (min–max) of ${runs} runs`)
    console.log('| scheme | read buffer | MiB/s | CPU-s/GiB | KiB per read | read buffers allocated (MiB) |')
    console.log('|---|---|---:|---:|---:|---:|')
    const spread = (values: number[], digits: number): string =>
      `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`
    for (const config of configs) {
      const all = results.get(config) ?? []
      const mibPerSecond = spread(all.map((r) => bytes / MiB / r.seconds), 0)
      const cpuPerGiB = spread(all.map((r) => r.cpuSeconds / (bytes / GiB)), 2)
      const perRead = median(all.map((r) => bytes / r.writes / KiB)).toFixed(1)
      const buffers = config.size === 'node:http' ? '–' : median(all.map((r) => r.buffersMiB)).toFixed(2)
      const size = typeof config.size === 'number' ? `${config.size / KiB} KiB` : config.size === 'default' ? `default (${(all[0]?.bufferBytes ?? 0) / KiB} KiB)` : 'node:http'
      console.log(`| ${config.scheme} | ${size} | ${mibPerSecond} | ${cpuPerGiB} | ${perRead} | ${buffers} |`)
    }
  } finally {
    child.kill()
  }
}

await main()
