// Quick same-run comparison of proxy builds on the upload path and on TLS blob downloads, with a
// Node sink as the upstream (no registry: the proxy's own cost, not docker-registry's pacing).
// Not part of `npm run bench`; for iterating on bench/../src/upstream and src/http.
// Usage: node bench/experiments/upload-path.mjs --variant NAME=CLI.js[|node flags] [--variant …] [--mib 256]
//   [--rounds 3] [--what chunked,tls-chunked,download8,tls-download8] [--download-mib 256]
//   [--node-flags="--cpu-prof --cpu-prof-dir=DIR/@NAME@"] [--log-dir DIR] (the proxies' stdout, e.g. --trace-gc)
//   [--smaps] (RSS by mapping kind at idle and at the download peak) [--heap-log DIR] (heap-spaces.cjs)
// The proxies run on CPU 1 (taskset), the sink and the client on CPU 0.
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { openSync, mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    variant: { type: 'string', multiple: true },
    mib: { type: 'string', default: '256' },
    'download-mib': { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    what: { type: 'string', default: 'chunked,tls-chunked,tls-download8' },
    'node-flags': { type: 'string', default: '' },
    'chunk-mib': { type: 'string', default: '8' },
    sink: { type: 'string', default: 'node' },
    'log-dir': { type: 'string' },
    smaps: { type: 'boolean', default: false },
    'heap-log': { type: 'string' }
  }
})
const MiB = 1024 * 1024
const work = mkdtempSync(join(tmpdir(), 'upload-path-'))
const children = []
process.on('exit', () => { for (const c of children) { try { c.kill('SIGTERM') } catch {} } })
process.on('SIGINT', () => process.exit(130))

const cert = join(work, 'cert.pem')
const key = join(work, 'key.pem')
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=localhost',
  '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })

async function freePort () {
  const s = http.createServer()
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = s.address().port
  await new Promise((resolve) => s.close(resolve))
  return port
}

// ---------------------------------------------------------------- the sink upstream (child, CPU 0)
const sinkSource = `
const http = require('node:http'), https = require('node:https'), fs = require('node:fs')
const [plainPort, tlsPort, certFile, keyFile, downloadBytes] = process.argv.slice(1)
const block = require('node:crypto').randomBytes(1024 * 1024)
const handler = (req, res) => {
  if (req.method === 'GET' && req.url.includes('/blobs/sha256:')) {
    const size = Number(downloadBytes)
    res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream', 'docker-content-digest': req.url.split('/').pop() })
    let sent = 0
    const more = () => {
      while (sent < size) {
        const n = Math.min(block.length, size - sent)
        sent += n
        if (!res.write(n === block.length ? block : block.subarray(0, n))) { res.once('drain', more); return }
      }
      res.end()
    }
    more()
    return
  }
  let bytes = 0
  req.on('data', (c) => { bytes += c.length })
  req.on('end', () => {
    const loc = '/v2/bench/up/blobs/uploads/0123456789abcdef'
    if (req.method === 'PUT') res.writeHead(201, { location: '/v2/bench/up/blobs/sha256:00', 'content-length': 0, 'docker-content-digest': 'sha256:00' })
    else if (req.method === 'GET') res.writeHead(200, { 'content-length': 2, 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0' })
    else res.writeHead(202, { location: loc, range: '0-' + Math.max(0, bytes - 1), 'content-length': 0, 'docker-upload-uuid': '0123456789abcdef' })
    res.end(req.method === 'GET' ? '{}' : undefined)
  })
}
http.createServer(handler).listen(Number(plainPort), '127.0.0.1')
https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) }, handler).listen(Number(tlsPort), '127.0.0.1')
`
const plainPort = await freePort()
const tlsPort = await freePort()
const downloadBytes = Number(values['download-mib']) * MiB
if (values.sink === 'node') {
  const sink = spawn('taskset', ['-c', '0', process.execPath, '-e', sinkSource, plainPort, tlsPort, cert, key, downloadBytes], { stdio: 'inherit' })
  children.push(sink)
}

// ---------------------------------------------------------------- ECR API stand-in
const tokenFile = join(work, 'token.json')
const standin = spawn('taskset', ['-c', '0', process.execPath, '--import=@tapjs/typescript/import', 'bench/ecr-standin.ts', '--out', tokenFile,
  '--proxy-endpoint', `http://127.0.0.1:${plainPort}`], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' } })
children.push(standin)
for (let i = 0; i < 300 && !existsSync(tokenFile); i++) await sleep(100)
const ecrUrl = JSON.parse(readFileSync(tokenFile, 'utf8')).url

function sleep (ms) { return new Promise((resolve) => setTimeout(resolve, ms)) }

// ---------------------------------------------------------------- proxies (CPU 1)
// NAME=CLI.js[|node flags of this variant]
const variants = (values.variant ?? []).map((v) => { const at = v.indexOf('='); const name = v.slice(0, at); const [cli, flags] = v.slice(at + 1).split('|'); return { name, cli, flags: flags === undefined || flags === '' ? [] : flags.split(' ') } })
const proxies = []
for (const v of variants) {
  for (const scheme of ['http', 'https']) {
    const port = await freePort()
    const upstream = `${scheme}://127.0.0.1:${scheme === 'http' ? plainPort : tlsPort}`
    const flags = values['node-flags'] === '' ? [] : values['node-flags'].replaceAll('@NAME@', `${v.name}-${scheme}`).split(' ')
    const heapLog = values['heap-log'] === undefined ? [] : ['--require', join(import.meta.dirname, 'heap-spaces.cjs')]
    const child = spawn('taskset', ['-c', '1', process.execPath, ...flags, ...heapLog, ...v.flags, v.cli, '--host', '127.0.0.1', '--port', String(port), '--region', 'us-east-2',
      '--upstream', upstream, '--log-level', 'info'], {
      stdio: ['ignore', values['log-dir'] === undefined ? 'ignore' : openSync(join(values['log-dir'], `${v.name}-${scheme}.log`), 'w'), 'inherit'],
      env: { ...process.env, NODE_OPTIONS: '', AWS_ENDPOINT_URL_ECR: ecrUrl, AWS_REGION: 'us-east-2', AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret', AWS_EC2_METADATA_DISABLED: 'true', NODE_EXTRA_CA_CERTS: cert, HEAP_SPACES_DIR: values['heap-log'] ?? '' }
    })
    children.push(child)
    proxies.push({ name: v.name, scheme, port, child })
  }
}
for (const p of proxies) {
  for (let i = 0; ; i++) {
    const ok = await new Promise((resolve) => http.get(`http://127.0.0.1:${p.port}/readyz`, (res) => { res.resume(); resolve(res.statusCode === 200) }).on('error', () => resolve(false)))
    if (ok) break
    if (i > 300) throw new Error(`${p.name} not ready`)
    await sleep(100)
  }
}
// the child is taskset; the node process is its exec'd image (same pid)
const cpuOf = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100 }
// RSS by kind of mapping (kB): the brk heap (malloc), anonymous mappings (V8's pages, large mallocs), files
const smapsOf = (pid) => {
  const kinds = { heap: 0, anon: 0, file: 0 }
  let kind = 'anon'
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line)
    if (m !== null) { kind = m[1] === '[heap]' ? 'heap' : (m[1].startsWith('/') ? 'file' : 'anon'); continue }
    const r = /^Rss:\s+(\d+) kB/.exec(line)
    if (r !== null) kinds[kind] += Number(r[1])
  }
  return kinds
}
const rssOf = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024

// ---------------------------------------------------------------- client side (this process, CPU 0)
execFileSync('taskset', ['-pc', '0', String(process.pid)], { stdio: 'ignore' })
const agent = new http.Agent({ keepAlive: true })
const part = randomBytes(Number(values['chunk-mib']) * MiB)
function request (port, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent }, (res) => {
      res.resume()
      res.on('end', () => resolve(res))
    })
    req.on('error', reject)
    req.end(body)
  })
}
async function chunked (p, mib) {
  let res = await request(p.port, 'POST', '/v2/bench/up/blobs/uploads/', { 'content-length': 0 })
  if (res.statusCode !== 202) throw new Error(`POST ${res.statusCode}`)
  let loc = res.headers.location
  for (let offset = 0; offset < mib * MiB; offset += part.length) {
    res = await request(p.port, 'PATCH', loc, { 'content-type': 'application/octet-stream', 'content-length': part.length, 'content-range': `${offset}-${offset + part.length - 1}` }, part)
    if (res.statusCode !== 202) throw new Error(`PATCH ${res.statusCode}`)
    loc = res.headers.location
  }
  res = await request(p.port, 'PUT', `${loc}?digest=sha256:${'0'.repeat(64)}`, { 'content-length': 0 })
  if (res.statusCode !== 201) throw new Error(`PUT ${res.statusCode}`)
}
async function download8 (p) {
  const start = performance.now()
  let peak = 0
  const sampling = { on: true }
  let peakMaps = null
  const sampler = (async () => { while (sampling.on) { const rss = rssOf(p.child.pid); if (rss > peak) { peak = rss; if (values.smaps) peakMaps = smapsOf(p.child.pid) } await sleep(50) } })()
  const runs = Array.from({ length: 8 }, () => new Promise((resolve, reject) => {
    const curl = spawn('curl', ['-sS', '-o', '/dev/null', '-w', '%{size_download}', `http://127.0.0.1:${p.port}/v2/bench/up/blobs/sha256:${'a'.repeat(64)}`], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    curl.stdout.on('data', (d) => { out += d })
    curl.on('close', () => (Number(out) === downloadBytes ? resolve() : reject(new Error(`download: ${out}`))))
  }))
  await Promise.all(runs)
  sampling.on = false
  await sampler
  if (peakMaps !== null) console.log(JSON.stringify({ name: p.name, idleMaps: p.idleMaps, peakMaps }))
  return { seconds: (performance.now() - start) / 1000, peak }
}

const results = []
const what = values.what.split(',')
const mib = Number(values.mib)
for (const p of proxies) { p.idle = rssOf(p.child.pid); if (values.smaps) p.idleMaps = smapsOf(p.child.pid) }
for (let round = 0; round < Number(values.rounds); round++) {
  for (const w of what) {
    const scheme = w.startsWith('tls-') ? 'https' : 'http'
    const order = proxies.filter((p) => p.scheme === scheme)
    const rotated = [...order.slice(round % order.length), ...order.slice(0, round % order.length)]
    for (const p of rotated) {
      await sleep(300)
      const cpu0 = cpuOf(p.child.pid)
      const t0 = performance.now()
      let extra = {}
      if (w.endsWith('chunked')) await chunked(p, mib)
      else if (w.endsWith('download8')) extra = await download8(p)
      const seconds = (performance.now() - t0) / 1000
      const cpu = cpuOf(p.child.pid) - cpu0
      const gib = (w.endsWith('download8') ? 8 * downloadBytes : mib * MiB) / (1024 * MiB)
      const r = { round, what: w, name: p.name, cpuPerGiB: +(cpu / gib).toFixed(3), mibps: +((gib * 1024) / seconds).toFixed(0), ...(extra.peak === undefined ? {} : { peakOverIdle: +(extra.peak - p.idle).toFixed(1) }) }
      results.push(r)
      console.log(JSON.stringify(r))
    }
  }
}
console.log('--- medians')
for (const w of what) {
  for (const v of variants) {
    const rs = results.filter((r) => r.what === w && r.name === v.name)
    const med = (k) => { const xs = rs.map((r) => r[k]).filter((x) => x !== undefined).sort((a, b) => a - b); return xs.length === 0 ? '' : xs[Math.floor(xs.length / 2)] }
    console.log(`${w.padEnd(14)} ${v.name.padEnd(10)} CPU-s/GiB ${med('cpuPerGiB')}  MiB/s ${med('mibps')}  ${rs[0]?.peakOverIdle === undefined ? '' : `peak-idle MiB ${med('peakOverIdle')} (all: ${rs.map((r) => r.peakOverIdle).join(' ')})`}`)
  }
}
for (const p of proxies) p.child.kill('SIGTERM')
await sleep(1500)
agent.destroy()
rmSync(work, { recursive: true, force: true })
process.exit(0)
