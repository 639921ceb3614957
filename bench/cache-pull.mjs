// The client of the cache benchmark: N concurrent "pulls" of one image (GET the manifest by tag,
// then the config and the layers, --parallel at a time per client, as docker does), every blob
// checked against its digest. While it runs, the RSS of --rss-pid is sampled every 50 ms.
// Prints one JSON line: {clients, seconds, bytes, mibPerSecond (aggregate), perClientSeconds,
// rssIdleKiB (before), rssPeakKiB, ok}.
import http from 'node:http'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    base: { type: 'string' },
    repo: { type: 'string' },
    tag: { type: 'string', default: 'latest' },
    clients: { type: 'string', default: '1' },
    parallel: { type: 'string', default: '3' },
    'rss-pid': { type: 'string' },
    auth: { type: 'string' }
  }
})
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
const headers = values.auth ? { authorization: values.auth } : {}

function get (path, accept) {
  return new Promise((resolve, reject) => {
    const req = http.get(values.base + path, { agent, headers: { ...headers, ...(accept ? { accept } : {}) } }, (res) => {
      if (res.statusCode === 307 || res.statusCode === 302) { res.resume(); reject(new Error(`redirect ${res.headers.location}`)); return }
      if (res.statusCode !== 200) { res.resume(); reject(new Error(`${path}: ${res.statusCode}`)); return }
      const h = createHash('sha256')
      let n = 0
      const chunks = accept ? [] : null
      res.on('data', (d) => { h.update(d); n += d.length; if (chunks) chunks.push(d) })
      res.on('end', () => resolve({ digest: 'sha256:' + h.digest('hex'), bytes: n, body: chunks ? Buffer.concat(chunks) : null }))
      res.on('error', reject)
    })
    req.setTimeout(300000, () => req.destroy(new Error('timeout')))
    req.on('error', reject)
  })
}

async function pull () {
  const t0 = performance.now()
  const m = await get(`/v2/${values.repo}/manifests/${values.tag}`, 'application/vnd.oci.image.manifest.v1+json')
  const manifest = JSON.parse(m.body.toString())
  const blobs = [manifest.config, ...manifest.layers]
  let bytes = m.bytes
  let i = 0
  const worker = async () => {
    while (i < blobs.length) {
      const b = blobs[i++]
      const r = await get(`/v2/${values.repo}/blobs/${b.digest}`)
      if (r.digest !== b.digest || r.bytes !== b.size) throw new Error(`${b.digest}: got ${r.digest}, ${r.bytes} bytes`)
      bytes += r.bytes
    }
  }
  await Promise.all(Array.from({ length: Number(values.parallel) }, worker))
  return { seconds: (performance.now() - t0) / 1000, bytes }
}

function rssKiB () {
  if (!values['rss-pid']) return null
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${values['rss-pid']}/status`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch { return null }
}

const rssIdleKiB = rssKiB()
let rssPeakKiB = rssIdleKiB
const sampler = setInterval(() => { const r = rssKiB(); if (r !== null && r > rssPeakKiB) rssPeakKiB = r }, 50)
const t0 = performance.now()
let ok = true
let error = null
let results = []
try {
  results = await Promise.all(Array.from({ length: Number(values.clients) }, pull))
} catch (err) { ok = false; error = String(err) }
const seconds = (performance.now() - t0) / 1000
clearInterval(sampler)
const bytes = results.reduce((a, r) => a + r.bytes, 0)
console.log(JSON.stringify({
  clients: Number(values.clients),
  seconds,
  bytes,
  mibPerSecond: bytes / 1048576 / seconds,
  perClientSeconds: results.map(r => r.seconds),
  rssIdleKiB,
  rssPeakKiB,
  ok,
  error
}))
agent.destroy()
process.exit(ok ? 0 : 1)
