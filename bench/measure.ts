// Measurement driver for bench/run.sh. Every load generator is bounded in time; results go to --out as JSON,
// keyed by the plan's set (the upstream the targets forward to: registry, registry-tls, fast, fast-tls).
//   --phase blobs          1 GiB download (1 and 8 clients, RSS sampled), monolithic and chunked upload
//   --phase small          small requests (manifest HEAD/GET, tags/list) at the plan's concurrencies
//                          (--mode labels the run; --cases / --concurrency / --rounds override the plan)
//   --phase load           many concurrent manifest clients (plan.load) per forwarder: latency, requests
//                          waiting past 2 s, RSS sampled during the load and read again after it
//   --idle                 first: each forwarder's RSS while idle (it was just started), before any load
//   --phase profile-small  load on the proxy only while it runs under --cpu-prof
//   --phase profile-blob   idem, one download and one upload
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { open, readFile, writeFile } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import https from 'node:https'
import type { Readable } from 'node:stream'
import { parseArgs } from 'node:util'

export interface Target {
  name: string
  kind: 'direct' | 'nginx' | 'node' | 'proxy' | 'variant'
  base: string
  auth: string | null
  pids: number[]
}

/** One kind of small request: what the `small` phase measures per target and concurrency. */
export interface SmallCase {
  id: string
  label: string
  method: 'HEAD' | 'GET'
  path: string
}

export interface Plan {
  /** which upstream the targets forward to: registry, registry-tls, fast, fast-tls */
  set: string
  /** the upstream's origin (also the direct target's base) */
  upstream: string
  tls: boolean
  /** the certificate the TLS upstreams present (self-signed), for direct clients; null: plain */
  caFile: string | null
  targets: Target[]
  repo: string
  tag: string
  blob: { path: string, digest: string, size: number }
  chunkSize: number
  wrkSeconds: number
  wrkScript: string
  workDir: string
  /** rounds of every manifest cell (median reported) */
  rounds: number
  /** repetitions of the 1-client download (median reported) */
  downloadReps: number
  smallCases: SmallCase[]
  concurrencies: number[]
  /** the many-clients memory test */
  load: { clients: number, seconds: number, settleSeconds: number }
}

export interface TransferResult {
  ok: boolean
  error?: string
  bytes: number
  seconds: number
  mibps: number
  /** CPU time (user + system) the target's processes used during the transfer; null: not measured */
  cpuSeconds?: number | null
}

export interface DownloadResult extends TransferResult {
  clients: number
  perClientMibps: number[]
  rss?: RssResult
  /** every repetition's MiB/s when repeated (this result is the median one) */
  runsMibps?: number[]
}

export interface RssResult {
  samples: number
  /** the first sample, taken as the load starts */
  startRssKiB: number
  peakRssKiB: number
  /** peak of RssAnon: without the file-backed pages (the executable's text, shared) */
  peakAnonKiB: number
  hwmKiB: number | null
}

export interface IdleRss { rssKiB: number, anonKiB: number }

export interface LoadResult extends WrkResult {
  /** requests answered after more than 2 s, plus timeouts (10 s) */
  over2s: number
  /** of those answered after more than 2 s, the ones sent in the first second (the connection burst) */
  over2sSentInFirstSecond: number
  /** RSS of the forwarder just before the load, sampled during it, and after settleSeconds of quiet */
  rssBeforeKiB: number
  rss: RssResult
  rssAfterKiB: number
  anonAfterKiB: number
  /** connections to the upstream that were closed during the load (new TIME-WAIT sockets on its port); null: unknown */
  upstreamClosed: number | null
}

export interface WrkResult {
  tool: 'wrk' | 'ab' | 'node'
  ok: boolean
  error?: string
  concurrency: number
  requests: number
  seconds: number
  rps: number
  errors: { connect: number, read: number, write: number, status: number, timeout: number }
  latencyMs: { p50: number, p75: number, p90: number, p99: number, p999: number, mean: number, max: number }
  cpuSeconds?: number | null
  /** CPU microseconds the target's processes spent per request */
  cpuUsPerRequest?: number | null
  /** per round when repeated; the fields above are then medians */
  rounds?: Array<{ rps: number, p50: number, p99: number }>
}

const MiB = 1024 * 1024
const CLOCK_TICKS = 100 // USER_HZ on Linux (getconf CLK_TCK)
const children = new Set<ChildProcess>()

function killChildren (): void {
  for (const c of children) c.kill('SIGKILL')
}
/** What has been measured so far, written out if the phase is stopped early (time limit). */
let partial: { out: string, result: () => unknown } | undefined

process.on('exit', killChildren)
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killChildren()
    if (partial !== undefined) {
      try {
        writeFileSync(partial.out, JSON.stringify({ ...(partial.result() as object), incomplete: true }, null, 2) + '\n')
        console.error(`measure: stopped by ${sig}; partial results written`)
      } catch (err) { console.error(err) }
    }
    process.exit(1)
  })
}

interface RunResult { code: number | null, stdout: string, stderr: string, ms: number }

/** Run a command, never longer than timeoutMs (then SIGKILL). */
function run (cmd: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve) => {
    const start = performance.now()
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env })
    children.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { if (stdout.length < 1e6) stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 1e5) stderr += d })
    const timer = setTimeout(() => { stderr += `\n[killed after ${timeoutMs} ms]`; child.kill('SIGKILL') }, timeoutMs)
    child.on('error', (err) => { stderr += String(err) })
    child.on('close', (code) => {
      clearTimeout(timer)
      children.delete(child)
      resolve({ code, stdout, stderr, ms: performance.now() - start })
    })
  })
}

interface HttpAnswer { status: number, headers: http.IncomingHttpHeaders, body: Buffer }

function request (url: string, method: string, headers: Record<string, string | number>, body: Readable | Buffer | null,
  agent: http.Agent, timeoutMs: number): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? https : http).request(url, { method, headers, agent }, (res) => {
      const parts: Buffer[] = []
      let size = 0
      res.on('data', (d: Buffer) => { size += d.length; if (size < 1e6) parts.push(d) })
      res.on('end', () => { clearTimeout(timer); resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }) })
      res.on('error', reject)
    })
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)), timeoutMs)
    req.on('error', (err) => { clearTimeout(timer); reject(err) })
    if (body === null) req.end()
    else if (Buffer.isBuffer(body)) req.end(body)
    else {
      body.on('error', (err) => req.destroy(err))
      body.pipe(req)
    }
  })
}

/** A keep-alive agent for the target's scheme (https: trusting the plan's self-signed certificate). */
function agentFor (plan: Plan, t: Target): http.Agent {
  return t.base.startsWith('https:')
    ? new https.Agent({ keepAlive: true, maxSockets: 1, ...(plan.caFile === null ? {} : { ca: readFileSyncCa(plan.caFile) }) })
    : new http.Agent({ keepAlive: true, maxSockets: 1 })
}

let caCache: { file: string, pem: string } | undefined
function readFileSyncCa (file: string): string {
  if (caCache?.file !== file) caCache = { file, pem: readFileSync(file, 'utf8') }
  return caCache.pem
}

/** curl arguments for the target's scheme. */
function curlTls (plan: Plan, t: Target): string[] {
  return t.base.startsWith('https:') && plan.caFile !== null ? ['--cacert', plan.caFile] : []
}

function authHeaders (t: Target): Record<string, string> {
  return t.auth === null ? {} : { authorization: t.auth }
}

function round (n: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

// ------------------------------------------------------------------ memory sampling

function readStatusKiB (pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon', text?: string): number {
  const m = text?.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'))
  return m?.[1] !== undefined ? Number(m[1]) : 0
}

async function statusOf (pid: number): Promise<string | undefined> {
  try { return await readFile(`/proc/${pid}/status`, 'utf8') } catch { return undefined }
}

async function processTree (pid: number): Promise<number[]> {
  // nginx: the master plus its workers
  try {
    const kids = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim()
    return [pid, ...(kids === '' ? [] : kids.split(/\s+/).map(Number))]
  } catch { return [pid] }
}

/** CPU seconds (user + system) used so far by the targets' processes (and their children); null without pids. */
async function cpuSeconds (pids: number[]): Promise<number | null> {
  if (pids.length === 0) return null
  let ticks = 0
  for (const root of pids) {
    for (const p of await processTree(root)) {
      const stat = await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '')
      // fields after "(comm)": state is field 3, utime field 14, stime field 15
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(rest[11] ?? 0) + Number(rest[12] ?? 0)
    }
  }
  return ticks / CLOCK_TICKS
}

async function withCpu<T extends { cpuSeconds?: number | null }> (pids: number[], f: () => Promise<T>): Promise<T> {
  const before = await cpuSeconds(pids)
  const res = await f()
  const after = await cpuSeconds(pids)
  res.cpuSeconds = before === null || after === null ? null : round(after - before, 2)
  return res
}

/** Sample the summed VmRSS of the targets' processes every 50 ms until stop(). */
function sampleRss (pids: number[]): { stop: () => Promise<RssResult> } {
  let peak = 0
  let peakAnon = 0
  let start = 0
  let samples = 0
  const state = { running: true }
  const loop = (async () => {
    for (let i = 0; state.running && i < 20 * 600; i++) {
      let sum = 0
      let anon = 0
      for (const root of pids) {
        for (const p of await processTree(root)) {
          const status = await statusOf(p)
          sum += readStatusKiB(p, 'VmRSS', status)
          anon += readStatusKiB(p, 'RssAnon', status)
        }
      }
      peak = Math.max(peak, sum)
      peakAnon = Math.max(peakAnon, anon)
      if (samples === 0) start = sum
      samples++
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })()
  return {
    async stop () {
      state.running = false
      await loop
      let hwm: number | null = null
      if (pids.length === 1 && pids[0] !== undefined) {
        const tree = await processTree(pids[0])
        if (tree.length === 1) hwm = readStatusKiB(pids[0], 'VmHWM', await statusOf(pids[0]))
      }
      return { samples, startRssKiB: start, peakRssKiB: peak, peakAnonKiB: peakAnon, hwmKiB: hwm }
    }
  }
}

// ------------------------------------------------------------------ blobs

async function download (plan: Plan, t: Target, clients: number): Promise<DownloadResult> {
  const url = `${t.base}/v2/${plan.repo}/blobs/${plan.blob.digest}`
  const args = ['-sS', '-L', '-o', '/dev/null', '--max-time', '300', '-w', '%{http_code} %{size_download} %{time_total}', ...curlTls(plan, t)]
  if (t.auth !== null) args.push('-H', `Authorization: ${t.auth}`)
  args.push(url)
  const start = performance.now()
  const runs = await Promise.all(Array.from({ length: clients }, () => run('curl', args, 310_000)))
  const seconds = (performance.now() - start) / 1000
  let bytes = 0
  const perClientMibps: number[] = []
  const errors: string[] = []
  for (const r of runs) {
    const [code, size, time] = r.stdout.trim().split(' ')
    if (r.code !== 0 || code !== '200' || Number(size) !== plan.blob.size) {
      errors.push(`curl exit ${r.code}, HTTP ${code}, ${size} bytes ${r.stderr.trim()}`)
    }
    bytes += Number(size ?? 0)
    perClientMibps.push(round(Number(size) / MiB / Number(time)))
  }
  const res: DownloadResult = { ok: errors.length === 0, clients, bytes, seconds: round(seconds, 3), mibps: round(bytes / MiB / seconds), perClientMibps }
  if (errors.length > 0) res.error = errors.join('; ')
  return res
}

function resolveLocation (base: string, answer: HttpAnswer, what: string): string {
  const loc = answer.headers.location
  if (loc === undefined) throw new Error(`${what}: HTTP ${answer.status} without Location: ${answer.body.toString('utf8', 0, 300)}`)
  return new URL(loc, base).toString()
}

function withDigest (location: string, digest: string): string {
  const u = new URL(location)
  u.searchParams.append('digest', digest)
  return u.toString()
}

async function startUpload (plan: Plan, t: Target, agent: http.Agent, repo: string): Promise<string> {
  const url = `${t.base}/v2/${repo}/blobs/uploads/`
  const a = await request(url, 'POST', { ...authHeaders(t), 'content-length': 0 }, null, agent, 10_000)
  if (a.status !== 202) throw new Error(`POST ${url}: HTTP ${a.status} ${a.body.toString('utf8', 0, 300)}`)
  return resolveLocation(url, a, 'POST upload')
}

async function uploadMonolithic (plan: Plan, t: Target): Promise<TransferResult> {
  const agent = agentFor(plan, t)
  const start = performance.now()
  try {
    const loc = await startUpload(plan, t, agent, `bench/upload-mono-${t.name}`)
    const args = ['-sS', '-X', 'PUT', '-T', plan.blob.path, '-H', 'Content-Type: application/octet-stream', '-H', 'Expect:',
      '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '300', ...curlTls(plan, t)]
    if (t.auth !== null) args.push('-H', `Authorization: ${t.auth}`)
    args.push(withDigest(loc, plan.blob.digest))
    const r = await run('curl', args, 310_000)
    const seconds = (performance.now() - start) / 1000
    if (r.code !== 0 || r.stdout.trim() !== '201') throw new Error(`PUT: curl exit ${r.code}, HTTP ${r.stdout.trim()} ${r.stderr.trim()}`)
    return { ok: true, bytes: plan.blob.size, seconds: round(seconds, 3), mibps: round(plan.blob.size / MiB / seconds) }
  } catch (err) {
    return { ok: false, error: String(err), bytes: 0, seconds: 0, mibps: 0 }
  } finally {
    agent.destroy()
  }
}

/**
 * Chunked upload: POST, then one PATCH per part (each read whole into one reused buffer, so the
 * client spends little CPU: it shares the CPUs with the proxy), then PUT ?digest=.
 */
async function uploadChunked (plan: Plan, t: Target): Promise<TransferResult & { chunks: number }> {
  const agent = agentFor(plan, t)
  const file = await open(plan.blob.path, 'r')
  const part = Buffer.allocUnsafe(plan.chunkSize)
  const start = performance.now()
  let chunks = 0
  try {
    let loc = await startUpload(plan, t, agent, `bench/upload-chunked-${t.name}`)
    const size = plan.blob.size
    const maxChunks = Math.ceil(size / plan.chunkSize)
    for (let offset = 0; offset < size && chunks < maxChunks; chunks++) {
      const end = Math.min(offset + plan.chunkSize, size) - 1
      const { bytesRead } = await file.read(part, 0, end - offset + 1, offset)
      if (bytesRead !== end - offset + 1) throw new Error(`short read at ${offset}`)
      const body = part.subarray(0, bytesRead)
      const a = await request(loc, 'PATCH', {
        ...authHeaders(t),
        'content-type': 'application/octet-stream',
        'content-length': end - offset + 1,
        'content-range': `${offset}-${end}`
      }, body, agent, 60_000)
      if (a.status !== 202 && a.status !== 201) throw new Error(`PATCH #${chunks}: HTTP ${a.status} ${a.body.toString('utf8', 0, 300)}`)
      loc = resolveLocation(loc, a, `PATCH #${chunks}`)
      offset = end + 1
    }
    const fin = await request(withDigest(loc, plan.blob.digest), 'PUT', { ...authHeaders(t), 'content-length': 0 }, null, agent, 60_000)
    if (fin.status !== 201) throw new Error(`final PUT: HTTP ${fin.status} ${fin.body.toString('utf8', 0, 300)}`)
    if (fin.headers['docker-content-digest'] !== plan.blob.digest) throw new Error(`final PUT: digest ${String(fin.headers['docker-content-digest'])}`)
    const seconds = (performance.now() - start) / 1000
    return { ok: true, bytes: size, seconds: round(seconds, 3), mibps: round(size / MiB / seconds), chunks }
  } catch (err) {
    return { ok: false, error: String(err), bytes: 0, seconds: 0, mibps: 0, chunks }
  } finally {
    agent.destroy()
    await file.close()
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return 0
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

/** The targets in an order rotated by `round`, so that no target is always measured first. */
function rotated (targets: Target[], round: number): Target[] {
  const k = targets.length === 0 ? 0 : round % targets.length
  return [...targets.slice(k), ...targets.slice(0, k)]
}

/** Flush dirty pages (the previous upload's 1 GiB) so that each upload starts from the same state. */
async function settle (): Promise<void> {
  await run('sync', [], 60_000)
}

async function blobs (plan: Plan, skipUploads: boolean, outFile: string): Promise<unknown> {
  const out: Record<string, Record<string, unknown>> = {}
  for (const t of plan.targets) out[t.name] = {}
  partial = { out: outFile, result: () => ({ set: plan.set, blobs: out }) }
  const note = (t: Target, key: string, v: unknown): void => {
    const slot = out[t.name]
    if (slot !== undefined) slot[key] = v
    console.error(`  ${plan.set.padEnd(12)} ${t.name.padEnd(16)} ${key.padEnd(16)} ${JSON.stringify(v).slice(0, 200)}`)
  }
  // Interleave targets per test (rotating the order) so that background drift hits all alike.
  const reps = Math.max(1, Math.min(plan.downloadReps, 10))
  const d1 = new Map<string, DownloadResult[]>()
  for (let r = 0; r < reps; r++) {
    for (const t of rotated(plan.targets, r)) {
      const res = await withCpu(t.pids, async () => await download(plan, t, 1))
      d1.set(t.name, [...(d1.get(t.name) ?? []), res])
    }
  }
  for (const t of plan.targets) {
    const runs = d1.get(t.name) ?? []
    const okRuns = runs.filter((x) => x.ok).sort((a, b) => a.mibps - b.mibps)
    const pick = okRuns.length === runs.length ? okRuns[Math.floor((okRuns.length - 1) / 2)] : runs.find((x) => !x.ok)
    if (pick !== undefined) note(t, 'download1', { ...pick, mibps: okRuns.length === runs.length ? round(median(okRuns.map((x) => x.mibps))) : pick.mibps, runsMibps: runs.map((x) => x.mibps) })
  }
  for (const t of plan.targets) {
    const sampler = sampleRss(t.pids)
    const res = await withCpu(t.pids, async () => await download(plan, t, 8))
    res.rss = await sampler.stop()
    note(t, 'download8', res)
  }
  if (!skipUploads) {
    for (const t of rotated(plan.targets, 1)) { await settle(); note(t, 'uploadMonolithic', await withCpu(t.pids, async () => await uploadMonolithic(plan, t))) }
    for (const t of rotated(plan.targets, 2)) { await settle(); note(t, 'uploadChunked', await withCpu(t.pids, async () => await uploadChunked(plan, t))) }
  }
  // whole-run memory high-water mark of single-process targets (the proxy)
  for (const t of plan.targets) {
    const pid = t.pids[0]
    if (t.kind === 'proxy' && pid !== undefined) note(t, 'vmHwmKiB', readStatusKiB(pid, 'VmHWM', await statusOf(pid)))
  }
  return { blobs: out }
}

// ------------------------------------------------------------------ small requests

function manifestPath (plan: Plan): string {
  return `/v2/${plan.repo}/manifests/${plan.tag}`
}

async function wrk (plan: Plan, t: Target, method: 'HEAD' | 'GET', concurrency: number, seconds: number,
  path = manifestPath(plan)): Promise<WrkResult> {
  const url = `${t.base}${path}`
  const env = { ...process.env, WRK_METHOD: method, WRK_AUTH: t.auth ?? '' }
  const args = ['-t1', `-c${concurrency}`, `-d${seconds}s`, '--timeout', '5s', '--latency', '-s', plan.wrkScript, url]
  const r = await run('wrk', args, (seconds + 20) * 1000, env)
  const line = r.stdout.split('\n').find((l) => l.startsWith('WRKJSON '))
  const empty = { connect: 0, read: 0, write: 0, status: 0, timeout: 0 }
  if (r.code !== 0 || line === undefined) {
    return { tool: 'wrk', ok: false, error: `wrk exit ${r.code}: ${r.stderr.trim()} ${r.stdout.slice(0, 300)}`, concurrency, requests: 0, seconds: 0, rps: 0, errors: empty, latencyMs: { p50: 0, p75: 0, p90: 0, p99: 0, p999: 0, mean: 0, max: 0 } }
  }
  const j = JSON.parse(line.slice('WRKJSON '.length)) as {
    requests: number,
    duration_us: number,
    errors: WrkResult['errors'],
    latency_us: { p50: number, p75: number, p90: number, p99: number, p999: number, mean: number, max: number }
  }
  const secs = j.duration_us / 1e6
  const ms = (us: number): number => round(us / 1000, 3)
  const errs = j.errors.connect + j.errors.read + j.errors.write + j.errors.status + j.errors.timeout
  const res: WrkResult = {
    tool: 'wrk',
    ok: errs === 0 && j.requests > 0,
    concurrency,
    requests: j.requests,
    seconds: round(secs, 3),
    rps: round(j.requests / secs),
    errors: j.errors,
    latencyMs: { p50: ms(j.latency_us.p50), p75: ms(j.latency_us.p75), p90: ms(j.latency_us.p90), p99: ms(j.latency_us.p99), p999: ms(j.latency_us.p999), mean: ms(j.latency_us.mean), max: ms(j.latency_us.max) }
  }
  if (!res.ok) res.error = `${errs} errors: ${JSON.stringify(j.errors)}`
  return res
}

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, ' +
  'application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'

/**
 * HEAD load with ApacheBench (-i): wrk's parser waits for a body after a HEAD answer that carries
 * Content-Length (the registry's does), so wrk cannot drive HEAD here. ab's CSV gives percentiles in ms.
 */
async function abHead (plan: Plan, t: Target, concurrency: number, seconds: number, csv: string, path = manifestPath(plan)): Promise<WrkResult> {
  const url = `${t.base}${path}`
  const args = ['-i', '-k', '-q', '-r', '-c', String(concurrency), '-t', String(seconds), '-n', '10000000', '-s', '10',
    '-e', csv, '-H', `Accept: ${ACCEPT}`]
  if (t.auth !== null) args.push('-H', `Authorization: ${t.auth}`)
  args.push(url)
  const r = await run('ab', args, (seconds + 20) * 1000)
  const field = (name: string): number | undefined => {
    const m = r.stdout.match(new RegExp(`^${name}:\\s+([\\d.]+)`, 'm'))
    return m?.[1] === undefined ? undefined : Number(m[1])
  }
  const requests = field('Complete requests') ?? 0
  const secs = field('Time taken for tests') ?? 0
  const failed = field('Failed requests') ?? 0
  const non2xx = field('Non-2xx responses') ?? 0
  const pct = new Map<number, number>()
  try {
    for (const line of (await readFile(csv, 'utf8')).split('\n').slice(1)) {
      const [p, v] = line.split(',')
      if (p !== undefined && v !== undefined && p !== '') pct.set(Number(p), Number(v))
    }
  } catch { /* no csv: reported below */ }
  const at = (p: number): number => round(pct.get(p) ?? 0, 3)
  const res: WrkResult = {
    tool: 'ab',
    ok: r.code === 0 && requests > 0 && failed === 0 && non2xx === 0,
    concurrency,
    requests,
    seconds: round(secs, 3),
    rps: secs > 0 ? round(requests / secs) : 0,
    errors: { connect: 0, read: failed, write: 0, status: non2xx, timeout: 0 },
    latencyMs: { p50: at(50), p75: at(75), p90: at(90), p99: at(99), p999: at(100), mean: secs > 0 && requests > 0 ? round((secs * 1000 * concurrency) / requests, 3) : 0, max: at(100) }
  }
  if (!res.ok) res.error = `ab exit ${r.code}: ${failed} failed, ${non2xx} non-2xx ${r.stderr.trim().slice(0, 300)}`
  return res
}

function aggregate (runs: WrkResult[]): WrkResult {
  const first = runs[0]
  if (first === undefined) throw new Error('no runs')
  if (runs.length === 1) {
    return { ...first, cpuUsPerRequest: typeof first.cpuSeconds === 'number' && first.requests > 0 ? round((first.cpuSeconds * 1e6) / first.requests) : null }
  }
  const med = (f: (r: WrkResult) => number): number => round(median(runs.map(f)), 3)
  const sum = (f: (r: WrkResult) => number): number => runs.reduce((a, r) => a + f(r), 0)
  const bad = runs.filter((r) => !r.ok)
  const res: WrkResult = {
    tool: first.tool,
    ok: bad.length === 0,
    concurrency: first.concurrency,
    requests: sum((r) => r.requests),
    seconds: round(sum((r) => r.seconds), 3),
    rps: round(median(runs.map((r) => r.rps))),
    errors: {
      connect: sum((r) => r.errors.connect),
      read: sum((r) => r.errors.read),
      write: sum((r) => r.errors.write),
      status: sum((r) => r.errors.status),
      timeout: sum((r) => r.errors.timeout)
    },
    latencyMs: {
      p50: med((r) => r.latencyMs.p50),
      p75: med((r) => r.latencyMs.p75),
      p90: med((r) => r.latencyMs.p90),
      p99: med((r) => r.latencyMs.p99),
      p999: med((r) => r.latencyMs.p999),
      mean: med((r) => r.latencyMs.mean),
      max: Math.max(...runs.map((r) => r.latencyMs.max))
    },
    rounds: runs.map((r) => ({ rps: r.rps, p50: r.latencyMs.p50, p99: r.latencyMs.p99 }))
  }
  const cpus = runs.map((r) => r.cpuSeconds)
  if (cpus.every((c) => typeof c === 'number')) {
    res.cpuSeconds = round(sum((r) => r.cpuSeconds ?? 0), 2)
    res.cpuUsPerRequest = res.requests > 0 ? round((res.cpuSeconds * 1e6) / res.requests) : null
  }
  if (bad.length > 0) res.error = bad.map((r) => r.error ?? '').join('; ')
  return res
}

export interface SmallOptions { mode: string, cases: SmallCase[], concurrencies: number[], rounds: number }

/** Small requests: result[mode][target][case id][`c${concurrency}`], medians over the rounds. */
async function small (plan: Plan, o: SmallOptions, outFile: string): Promise<unknown> {
  const runs = new Map<string, WrkResult[]>()
  const result = (): unknown => {
    const out: Record<string, Record<string, Record<string, WrkResult>>> = {}
    for (const t of plan.targets) {
      const row: Record<string, Record<string, WrkResult>> = {}
      out[t.name] = row
      for (const k of o.cases) {
        const cells: Record<string, WrkResult> = {}
        row[k.id] = cells
        for (const c of o.concurrencies) {
          const rs = runs.get(`${t.name} ${k.id} c${c}`)
          if (rs !== undefined) cells[`c${c}`] = aggregate(rs)
        }
      }
    }
    return { small: { [o.mode]: out } }
  }
  partial = { out: outFile, result: () => ({ set: plan.set, ...(result() as object) }) }
  for (const t of plan.targets) await wrk(plan, t, 'GET', 16, 1) // warm-up: connections, caches, JIT
  for (let round = 0; round < o.rounds; round++) {
    for (const k of o.cases) {
      for (const c of o.concurrencies) {
        for (const t of rotated(plan.targets, round)) {
          const r = await withCpu(t.pids, async () => k.method === 'HEAD'
            ? await abHead(plan, t, c, plan.wrkSeconds, `${plan.workDir}/ab-${plan.set}-${t.name}-${c}.csv`, k.path)
            : await wrk(plan, t, k.method, c, plan.wrkSeconds, k.path))
          const key = `${t.name} ${k.id} c${c}`
          runs.set(key, [...(runs.get(key) ?? []), r])
          console.error(`  #${round + 1} ${plan.set.padEnd(12)} ${t.name.padEnd(16)} ${k.label.padEnd(14)} c${String(c).padEnd(3)} ${String(r.rps).padStart(8)} req/s  p50 ${r.latencyMs.p50} ms  p99 ${r.latencyMs.p99} ms  ${r.cpuSeconds === null || r.cpuSeconds === undefined || r.requests === 0 ? '' : `${Math.round(r.cpuSeconds * 1e6 / r.requests)} µs/req`}${r.ok ? '' : '  ' + (r.error ?? '')}`)
        }
      }
    }
  }
  return result()
}

// ------------------------------------------------------------------ idle RSS and many clients

async function rssOf (pids: number[]): Promise<IdleRss> {
  let rssKiB = 0
  let anonKiB = 0
  for (const root of pids) {
    for (const p of await processTree(root)) {
      const status = await statusOf(p)
      rssKiB += readStatusKiB(p, 'VmRSS', status)
      anonKiB += readStatusKiB(p, 'RssAnon', status)
    }
  }
  return { rssKiB, anonKiB }
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Each forwarder's RSS while idle: the targets were just started (one health check, one manifest GET). */
async function idle (plan: Plan): Promise<Record<string, IdleRss>> {
  await sleep(3000)
  const out: Record<string, IdleRss> = {}
  for (const t of plan.targets) {
    if (t.pids.length === 0) continue
    const r = await rssOf(t.pids)
    out[t.name] = r
    console.error(`  ${plan.set.padEnd(12)} ${t.name.padEnd(16)} idle RSS ${(r.rssKiB / 1024).toFixed(1)} MiB (anon ${(r.anonKiB / 1024).toFixed(1)})`)
  }
  return out
}

/**
 * `clients` concurrent clients, each on its own kept-alive connection, sending manifest GETs one
 * after another for `seconds`. A raw-socket client (a Node http.Agent costs more CPU per request
 * than the forwarders it would be measuring, and shares a CPU with the upstream), with every
 * request's time recorded exactly: wrk corrects its percentiles for coordinated omission by adding
 * synthetic samples, which would make a count of slow answers meaningless. Requests still out when
 * the time is up are waited for (up to their 10 s timeout) and counted in the latencies: p50/p99
 * over all answers; over2s = answers that took longer than 2 s plus timeouts; req/s = answers
 * completed within the time. Plain HTTP only (the forwarders' side).
 */
async function manyClients (plan: Plan, t: Target, clients: number, seconds: number): Promise<WrkResult & { over2s: number, over2sSentInFirstSecond: number }> {
  const u = new URL(`${t.base}${manifestPath(plan)}`)
  if (u.protocol !== 'http:') throw new Error('manyClients: plain HTTP targets only')
  const head = Buffer.from(`GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n` +
    (t.auth === null ? '' : `Authorization: ${t.auth}\r\n`) + '\r\n', 'latin1')
  const latencies: number[] = []
  const errors = { connect: 0, read: 0, write: 0, status: 0, timeout: 0 }
  const start = performance.now()
  const end = start + seconds * 1000
  let withinTime = 0
  let over2sEarly = 0
  let lastError = ''
  /** One client: resolves when its last request (sent before `end`) is answered or failed. */
  const client = (): Promise<void> => new Promise((resolve) => {
    let sent = 0
    let buf: Buffer = Buffer.alloc(0)
    let timer: NodeJS.Timeout | undefined
    let waiting = false
    let finished = false
    let sock: net.Socket
    const send = (): void => {
      if (performance.now() >= end) { finished = true; sock.destroy(); resolve(); return }
      sent = performance.now()
      waiting = true
      timer = setTimeout(() => { errors.timeout++; lastError = 'no answer within 10 s'; waiting = false; replace() }, 10_000)
      sock.write(head)
    }
    /** a new connection (then the next request); the old one, if any, is dropped */
    const replace = (): void => {
      const old = sock as net.Socket | undefined
      open()
      old?.destroy()
    }
    const open = (): void => {
      buf = Buffer.alloc(0)
      let connected = false
      const s = net.connect({ host: u.hostname, port: Number(u.port) }, () => { connected = true; send() })
      sock = s
      s.setNoDelay(true)
      s.on('data', (d: Buffer) => {
        if (s !== sock) return
        buf = buf.length === 0 ? d : Buffer.concat([buf, d])
        const eoh = buf.indexOf('\r\n\r\n')
        if (eoh < 0) return
        const headText = buf.toString('latin1', 0, eoh)
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(headText)
        if (m !== null) {
          if (buf.length < eoh + 4 + Number(m[1])) return
        } else if (/\r\ntransfer-encoding:\s*chunked/i.test(headText) && buf.indexOf('\r\n0\r\n\r\n', eoh) < 0) return
        clearTimeout(timer)
        waiting = false
        const now = performance.now()
        if (!headText.startsWith('HTTP/1.1 200')) { errors.status++; lastError = headText.slice(0, 40) } else {
          latencies.push(now - sent)
          if (now <= end) withinTime++
          if (now - sent > 2000 && sent - start < 1000) over2sEarly++
        }
        buf = Buffer.alloc(0)
        if (/\r\nconnection:\s*close/i.test(headText)) replace()
        else send()
      })
      s.on('error', (err) => { lastError = String(err) })
      s.on('close', () => {
        if (s !== sock || finished) return
        // closed under a request (or before the first): count it, and carry on on a new connection
        if (waiting) { clearTimeout(timer); waiting = false; errors.read++ }
        if (performance.now() >= end) { finished = true; resolve(); return }
        if (connected) open()
        else { errors.connect++; setTimeout(open, 50) }
      })
    }
    open()
  })
  await Promise.all(Array.from({ length: clients }, client))
  const secs = (end - start) / 1000
  latencies.sort((a, b) => a - b)
  const pct = (p: number): number => latencies.length === 0 ? 0 : round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0, 3)
  const errs = errors.connect + errors.read + errors.write + errors.status + errors.timeout
  const res: WrkResult & { over2s: number, over2sSentInFirstSecond: number } = {
    tool: 'node',
    ok: errs === 0 && latencies.length > 0,
    concurrency: clients,
    requests: latencies.length,
    seconds: round(secs, 3),
    rps: round(withinTime / secs),
    errors,
    latencyMs: { p50: pct(50), p75: pct(75), p90: pct(90), p99: pct(99), p999: pct(99.9), mean: round(latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length), 3), max: round(latencies.at(-1) ?? 0, 3) },
    over2s: latencies.filter((ms) => ms > 2000).length + errors.timeout,
    over2sSentInFirstSecond: over2sEarly
  }
  if (!res.ok) res.error = `${errs} errors: ${JSON.stringify(errors)} (last: ${lastError.slice(0, 200)})`
  return res
}

/** Loopback TCP sockets in TIME-WAIT to or from the upstream's port: each is one closed connection (for 60 s). */
async function timeWaitTo (upstream: string): Promise<number | null> {
  const port = new URL(upstream).port
  if (port === '') return null
  const r = await run('ss', ['-Htan', 'state', 'time-wait', `( dport = :${port} or sport = :${port} )`], 10_000)
  return r.code === 0 ? r.stdout.split('\n').filter((l) => l.trim() !== '').length : null
}

/** plan.load.clients concurrent manifest GETs for plan.load.seconds against each forwarder. */
async function load (plan: Plan, outFile: string): Promise<unknown> {
  const out: Record<string, LoadResult> = {}
  partial = { out: outFile, result: () => ({ set: plan.set, load: out }) }
  const { clients, seconds, settleSeconds } = plan.load
  for (const t of plan.targets.filter((x) => x.pids.length > 0)) {
    const before = await rssOf(t.pids)
    const tw = await timeWaitTo(plan.upstream)
    const sampler = sampleRss(t.pids)
    const r = await withCpu(t.pids, async () => await manyClients(plan, t, clients, seconds))
    const rss = await sampler.stop()
    const tw2 = await timeWaitTo(plan.upstream)
    await sleep(settleSeconds * 1000)
    const after = await rssOf(t.pids)
    const res: LoadResult = {
      ...r,
      cpuUsPerRequest: typeof r.cpuSeconds === 'number' && r.requests > 0 ? round((r.cpuSeconds * 1e6) / r.requests) : null,
      rssBeforeKiB: before.rssKiB,
      rss,
      rssAfterKiB: after.rssKiB,
      anonAfterKiB: after.anonKiB,
      upstreamClosed: tw === null || tw2 === null ? null : Math.max(0, tw2 - tw)
    }
    out[t.name] = res
    console.error(`  ${plan.set.padEnd(12)} ${t.name.padEnd(16)} c${clients} ${res.rps} req/s p50 ${res.latencyMs.p50} ms p99 ${res.latencyMs.p99} ms >2s ${res.over2s} (sent in the first second: ${res.over2sSentInFirstSecond}) ` +
      `upstream connections closed ${res.upstreamClosed ?? 'n/a'} RSS ${(before.rssKiB / 1024).toFixed(1)} -> peak ${(rss.peakRssKiB / 1024).toFixed(1)} -> after ${(after.rssKiB / 1024).toFixed(1)} MiB${res.ok ? '' : '  ' + (res.error ?? '')}`)
  }
  return { load: out }
}

// ------------------------------------------------------------------ profiling load

async function profileLoad (plan: Plan, what: string): Promise<unknown> {
  const t = plan.targets.find((x) => x.kind === 'proxy')
  if (t === undefined) throw new Error('no proxy target in the plan')
  if (what === 'small') {
    return { profileRun: { small: { GET: await wrk(plan, t, 'GET', 16, 10), HEAD: await abHead(plan, t, 16, 5, `${plan.workDir}/ab-profile.csv`) } } }
  }
  return { profileRun: { blob: { download8: await download(plan, t, 8), uploadMonolithic: await uploadMonolithic(plan, t) } } }
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      plan: { type: 'string' },
      phase: { type: 'string' },
      out: { type: 'string' },
      mode: { type: 'string' },
      idle: { type: 'boolean' },
      cases: { type: 'string' },
      concurrency: { type: 'string' },
      rounds: { type: 'string' },
      'skip-uploads': { type: 'boolean' }
    }
  })
  if (values.plan === undefined || values.phase === undefined || values.out === undefined) {
    throw new Error('usage: measure.ts --plan FILE --phase blobs|small|load|profile-small|profile-blob --out FILE [--idle] [--mode LABEL] [--cases a,b] [--concurrency "1 16"] [--rounds N]')
  }
  const plan = JSON.parse(await readFile(values.plan, 'utf8')) as Plan
  const idleRss = values.idle === true ? { idle: await idle(plan) } : {}
  let result: unknown
  switch (values.phase) {
    case 'blobs': result = await blobs(plan, values['skip-uploads'] === true, values.out); break
    case 'small': {
      const ids = values.cases?.split(',').filter(Boolean)
      const cases = ids === undefined ? plan.smallCases : plan.smallCases.filter((k) => ids.includes(k.id))
      const concurrencies = values.concurrency === undefined ? plan.concurrencies : values.concurrency.split(/[ ,]+/).filter(Boolean).map(Number)
      const rounds = Math.max(1, Math.min(values.rounds === undefined ? plan.rounds : Number(values.rounds), 10))
      result = await small(plan, { mode: values.mode ?? 'default', cases, concurrencies, rounds }, values.out)
      break
    }
    case 'load': result = await load(plan, values.out); break
    case 'profile-small': result = await profileLoad(plan, 'small'); break
    case 'profile-blob': result = await profileLoad(plan, 'blob'); break
    default: throw new Error(`unknown phase ${values.phase}`)
  }
  await writeFile(values.out, JSON.stringify({ set: plan.set, ...idleRss, ...(result as object) }, null, 2) + '\n')
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
