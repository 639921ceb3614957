// Merge the parts bench/run.sh collected in its work dir into bench/results/latest.{json,md}
// (plus a timestamped copy): machine info, one table per upstream with a column per forwarder and
// same-run ratio columns, the memory figures, and the budget lines with met / missed.
// Usage: report.ts --work DIR --results DIR
import { execFileSync } from 'node:child_process'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import type { DownloadResult, IdleRss, LoadResult, Plan, TransferResult, WrkResult } from './measure.js'
import type { ProfileSummary } from './cpuprofile-top.js'

interface BlobRow {
  download1?: DownloadResult
  download8?: DownloadResult
  uploadMonolithic?: TransferResult
  uploadChunked?: TransferResult & { chunks: number }
  vmHwmKiB?: number
}
/** target → case id → `c16` → result */
type SmallTable = Record<string, Record<string, Record<string, WrkResult>>>
interface SetParts {
  idle: Record<string, IdleRss>
  blobs: Record<string, BlobRow>
  small: Record<string, SmallTable>
  load: Record<string, LoadResult>
  profileRun: Record<string, unknown>
}
interface RunInfo {
  loadBefore: string
  loadAfter: string
  blobMiB: number
  smallAuth: string
  proxyLogLevel: string
  proxyIncluded: boolean
  tokenLength: number
  nginxVersion: string
  pinning: string
  sets: string[]
  concurrencies: number[]
  rounds: number
  wrkSeconds: number
  downloadReps: number
  chunkSize: number
  loadClients: number
  loadSeconds: number
  elapsedSeconds: number
}
interface Parts {
  run: RunInfo
  sets: Record<string, SetParts>
  plans: Record<string, Plan>
  profile: Record<string, ProfileSummary>
}
interface Check { line: string, budget: string, measured: string, met: boolean | null }

const SET_TITLES: Record<string, string> = {
  fast: 'fast upstream, plain HTTP (nginx serving files: the forwarder is the bottleneck)',
  'fast-tls': 'fast upstream, TLS',
  registry: 'docker-registry, plain HTTP',
  'registry-tls': 'docker-registry behind a TLS terminator'
}
const FLOOR = 'node-minimal'
const PROXY = 'proxy'

// ------------------------------------------------------------------ small helpers

const MB = (kib: number): number => kib * 1024 / 1e6
const fmtMB = (kib: number | undefined): string => kib === undefined || kib === 0 ? 'n/a' : MB(kib).toFixed(1)

function ratio (a: number | undefined | null, b: number | undefined | null): number | null {
  if (a === undefined || b === undefined || a === null || b === null || b === 0 || a === 0) return null
  return Math.round((a / b) * 1000) / 1000
}
const fmtRatio = (r: number | null): string => r === null ? 'n/a' : `${r.toFixed(2)}×`
function num (n: number | undefined | null, digits = 0): string {
  return n === undefined || n === null ? 'n/a' : n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}
function verdict (met: boolean | null): string {
  return met === null ? 'n/a' : met ? 'met' : '**missed**'
}

function cmdVersion (cmd: string, args: string[], pick: (out: string) => string): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 })
    return pick(out).trim()
  } catch (err) {
    const e = err as { stdout?: string, stderr?: string }
    const text = `${e.stdout ?? ''}${e.stderr ?? ''}`
    return text === '' ? 'unknown' : pick(text).trim()
  }
}

function machine (run: RunInfo, root: string): Record<string, unknown> {
  const cpus = os.cpus()
  return {
    cores: cpus.length,
    cpu: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    nginx: run.nginxVersion,
    registry: cmdVersion('docker-registry', ['--version'], (s) => s.split(/\s+/).filter(Boolean).pop() ?? s),
    wrk: cmdVersion('wrk', ['-v'], (s) => (s.split('\n')[0] ?? '').replace(/\s+Copyright.*/, '')),
    curl: cmdVersion('curl', ['--version'], (s) => (s.split(' ')[1] ?? s)),
    openssl: cmdVersion('openssl', ['version'], (s) => s.split(' ').slice(0, 2).join(' ')),
    proxy: cmdVersion('node', ['-p', `require(${JSON.stringify(path.join(root, 'package.json'))}).version`], (s) => s),
    commit: cmdVersion('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], (s) => s) +
      (cmdVersion('git', ['-C', root, 'status', '--porcelain', '--', 'src'], (s) => s) === '' ? '' : ' + uncommitted src/ changes'),
    loadAverageBefore: run.loadBefore,
    loadAverageAfter: run.loadAfter
  }
}

async function loadParts (work: string): Promise<Parts> {
  const parts: Parts = { run: {} as RunInfo, sets: {}, plans: {}, profile: {} }
  const files = (await readdir(work)).sort()
  const slot = (set: string): SetParts => {
    parts.sets[set] ??= { idle: {}, blobs: {}, small: {}, load: {}, profileRun: {} }
    return parts.sets[set]
  }
  for (const f of files) {
    if (f.startsWith('plan-') && f.endsWith('.json')) {
      const plan = JSON.parse(await readFile(path.join(work, f), 'utf8')) as Plan
      parts.plans[plan.set] = plan
      continue
    }
    if (!f.startsWith('part-') || !f.endsWith('.json')) continue
    const j = JSON.parse(await readFile(path.join(work, f), 'utf8')) as Record<string, unknown>
    if (f === 'part-run.json') { parts.run = j as unknown as RunInfo; continue }
    if (j.profile !== undefined) Object.assign(parts.profile, j.profile)
    if (typeof j.set !== 'string') continue
    const s = slot(j.set)
    if (j.idle !== undefined) Object.assign(s.idle, j.idle)
    if (j.blobs !== undefined) Object.assign(s.blobs, j.blobs)
    if (j.small !== undefined) Object.assign(s.small, j.small)
    if (j.load !== undefined) Object.assign(s.load, j.load)
    if (j.profileRun !== undefined) Object.assign(s.profileRun, j.profileRun)
  }
  return parts
}

/** The nginx target the budget compares with: nginx-buffered, else the first nginx of the set. */
function nginxOf (plan: Plan | undefined): string | undefined {
  const names = plan?.targets.filter((t) => t.kind === 'nginx').map((t) => t.name) ?? []
  return names.includes('nginx-buffered') ? 'nginx-buffered' : names[0]
}

const okMibps = (r: TransferResult | undefined): number | undefined => r?.ok === true ? r.mibps : undefined
const cpuPerGiB = (r: TransferResult | undefined): number | undefined =>
  r?.ok === true && typeof r.cpuSeconds === 'number' && r.bytes > 0 ? r.cpuSeconds / (r.bytes / 2 ** 30) : undefined
const okRps = (r: WrkResult | undefined): number | undefined => r?.ok === true ? r.rps : undefined
const cpuUs = (r: WrkResult | undefined): number | undefined => typeof r?.cpuUsPerRequest === 'number' ? r.cpuUsPerRequest : undefined

// ------------------------------------------------------------------ budget

function budget (parts: Parts): Check[] {
  const checks: Check[] = []
  const add = (line: string, budgetText: string, measured: string, met: boolean | null): void => { checks.push({ line, budget: budgetText, measured, met }) }
  const small = (set: string): SmallTable | undefined => parts.sets[set]?.small.fast
  const caseLabel = (set: string, id: string): string => parts.plans[set]?.smallCases.find((k) => k.id === id)?.label ?? id
  const tlsWord = (set: string): string => set.endsWith('-tls') ? 'TLS' : 'plain'
  if (parts.run.proxyIncluded !== true) add('proxy included in the run', 'yes', 'no (build or start failed)', false)

  // 1. CPU per small request vs the minimal Node forwarder
  for (const set of ['fast', 'fast-tls']) {
    for (const id of ['manifest-HEAD', 'manifest-GET']) {
      const rows = small(set)
      const p = cpuUs(rows?.[PROXY]?.[id]?.c16)
      const f = cpuUs(rows?.[FLOOR]?.[id]?.c16)
      const r = ratio(p, f)
      add(`${caseLabel(set, id)} CPU per request, ${tlsWord(set)} upstream (c16)`, `≤ 1.5× ${FLOOR}`,
        r === null ? 'n/a' : `${fmtRatio(r)} (${num(p)} vs ${num(f)} µs)`, r === null ? null : r <= 1.5)
    }
  }
  // 2. small-request throughput at c16, the proxy on one core
  for (const set of ['fast', 'fast-tls']) {
    for (const id of ['manifest-HEAD', 'manifest-GET', 'tags-GET']) {
      const rows = small(set)
      const p = okRps(rows?.[PROXY]?.[id]?.c16)
      const f = okRps(rows?.[FLOOR]?.[id]?.c16)
      const r = ratio(p, f)
      add(`${caseLabel(set, id)} req/s at c16, ${tlsWord(set)} upstream, proxy on one core`, `≥ 0.6× ${FLOOR}`,
        r === null ? 'n/a' : `${fmtRatio(r)} (${num(p)} vs ${num(f)} req/s)`, r === null ? null : r >= 0.6)
    }
  }
  // 3. blob download through a TLS upstream vs nginx-buffered
  const tlsBlobs = parts.sets['registry-tls']?.blobs
  const tlsNginx = nginxOf(parts.plans['registry-tls'])
  for (const [key, label] of [['download1', '1 client'], ['download8', '8 clients']] as const) {
    const p = tlsBlobs?.[PROXY]?.[key]
    const n = tlsNginx === undefined ? undefined : tlsBlobs?.[tlsNginx]?.[key]
    const r = ratio(okMibps(p), okMibps(n))
    add(`blob download through the TLS upstream, ${label}: throughput`, `≥ 1.0× ${tlsNginx ?? 'nginx'}`,
      r === null ? 'n/a' : `${fmtRatio(r)} (${num(okMibps(p))} vs ${num(okMibps(n))} MiB/s)`, r === null ? null : r >= 1.0)
    const c = ratio(cpuPerGiB(p), cpuPerGiB(n))
    add(`blob download through the TLS upstream, ${label}: CPU per GiB`, `≤ 1.5× ${tlsNginx ?? 'nginx'}`,
      c === null ? 'n/a' : `${fmtRatio(c)} (${num(cpuPerGiB(p), 2)} vs ${num(cpuPerGiB(n), 2)} CPU-s/GiB)`, c === null ? null : c <= 1.5)
  }
  // 4. chunked upload CPU per GiB vs nginx
  for (const set of ['registry', 'registry-tls']) {
    const b = parts.sets[set]?.blobs
    const ng = nginxOf(parts.plans[set])
    const p = cpuPerGiB(b?.[PROXY]?.uploadChunked)
    const n = ng === undefined ? undefined : cpuPerGiB(b?.[ng]?.uploadChunked)
    const r = ratio(p, n)
    add(`chunked upload CPU per GiB, ${tlsWord(set)} upstream`, `≤ 2× ${ng ?? 'nginx'}`,
      r === null ? 'n/a' : `${fmtRatio(r)} (${num(p, 2)} vs ${num(n, 2)} CPU-s/GiB)`, r === null ? null : r <= 2)
  }
  // 5. idle RSS: every freshly started proxy of the run (the highest counts)
  const idles = Object.entries(parts.sets).flatMap(([set, s]) => s.idle[PROXY] === undefined ? [] : [{ set, kib: s.idle[PROXY].rssKiB, anon: s.idle[PROXY].anonKiB }])
  const worst = idles.reduce<{ set: string, kib: number, anon: number } | undefined>((a, x) => a === undefined || x.kib > a.kib ? x : a, undefined)
  add('idle RSS of the proxy (just started, token held; highest of the run\'s fresh instances)', '≤ 80 MB',
    worst === undefined ? 'n/a' : `${fmtMB(worst.kib)} MB (${idles.map((x) => `${x.set} ${fmtMB(x.kib)}`).join(', ')}; anonymous ${fmtMB(worst.anon)} MB)`,
    worst === undefined ? null : MB(worst.kib) <= 80)
  // 6. peak during 8 concurrent downloads
  for (const set of ['registry', 'registry-tls']) {
    const s = parts.sets[set]
    const idle = s?.idle[PROXY]?.rssKiB
    const peak = s?.blobs[PROXY]?.download8?.rss?.peakRssKiB
    const growth = idle !== undefined && peak !== undefined && peak > 0 ? MB(peak) - MB(idle) : undefined
    add(`proxy RSS peak during 8 concurrent ${parts.run.blobMiB === 1024 ? '1 GiB' : `${parts.run.blobMiB} MiB`} downloads, ${tlsWord(set)} upstream`, '≤ idle + 30 MB',
      growth === undefined ? 'n/a' : `idle + ${growth.toFixed(1)} MB (${fmtMB(idle)} → ${fmtMB(peak)} MB)`, growth === undefined ? null : growth <= 30)
  }
  // 7. many concurrent manifest clients
  const fast = parts.sets.fast
  const ld = fast?.load[PROXY]
  const idleFast = fast?.idle[PROXY]?.rssKiB
  // the higher of the peak sampled during the load and the RSS after it (it can still grow once the clients are gone)
  const lpeak = ld === undefined ? undefined : Math.max(ld.rss.peakRssKiB, ld.rssAfterKiB)
  const lgrowth = lpeak !== undefined && idleFast !== undefined && lpeak > 0 ? MB(lpeak) - MB(idleFast) : undefined
  add(`proxy RSS under ${parts.run.loadClients} concurrent manifest clients (higher of the peak during and the RSS after)`, '≤ idle + 50 MB',
    lgrowth === undefined ? 'n/a' : `idle + ${lgrowth.toFixed(1)} MB (idle ${fmtMB(idleFast)}, peak during ${fmtMB(ld?.rss.peakRssKiB)}, ${fmtMB(ld?.rssAfterKiB)} MB ${parts.plans.fast?.load.settleSeconds ?? 5} s after)`,
    lgrowth === undefined ? null : lgrowth <= 50)
  const pr = ld === undefined ? null : ratio(ld.latencyMs.p99, ld.latencyMs.p50)
  add(`p99 under ${parts.run.loadClients} concurrent manifest clients`, '≤ 3× p50',
    pr === null || ld === undefined ? 'n/a' : `${fmtRatio(pr)} (p50 ${ld.latencyMs.p50.toFixed(1)} ms, p99 ${ld.latencyMs.p99.toFixed(1)} ms; ${ld.over2s} requests waited past 2 s)`,
    pr === null ? null : pr <= 3)
  return checks
}

// ------------------------------------------------------------------ tables

interface Columns { targets: string[], ratios: Array<{ label: string, over: string }> }

function columns (plan: Plan | undefined): Columns {
  const targets = plan?.targets.map((t) => t.name) ?? []
  const ng = nginxOf(plan)
  const ratios: Columns['ratios'] = []
  if (targets.includes(PROXY)) {
    if (targets.includes(FLOOR)) ratios.push({ label: `proxy / ${FLOOR}`, over: FLOOR })
    if (ng !== undefined) ratios.push({ label: `proxy / ${ng}`, over: ng })
    ratios.push({ label: 'proxy / direct', over: 'direct' })
  }
  return { targets, ratios }
}

function header (first: string[], c: Columns): string[] {
  const cells = [...first, ...c.targets, ...c.ratios.map((r) => r.label)]
  return [`| ${cells.join(' | ')} |`, `|${cells.map((_, i) => i < first.length ? '---' : '---:').join('|')}|`]
}

/** One row: a value per target, then the proxy's value over each ratio column's target. */
function row (first: string[], c: Columns, value: (t: string) => number | undefined, fmt: (n: number | undefined, t: string) => string): string {
  const cells = [...first, ...c.targets.map((t) => fmt(value(t), t)), ...c.ratios.map((r) => fmtRatio(ratio(value(PROXY), value(r.over))))]
  return `| ${cells.join(' | ')} |`
}

function smallTable (L: string[], plan: Plan | undefined, rows: SmallTable, note: string): void {
  const c = columns(plan)
  L.push(note, '', ...header(['request', 'c', 'metric'], c))
  const ids = plan?.smallCases.map((k) => k.id) ?? []
  for (const id of ids) {
    const label = plan?.smallCases.find((k) => k.id === id)?.label ?? id
    const concs = [...new Set(Object.values(rows).flatMap((r) => Object.keys(r[id] ?? {})))].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))
    for (const cc of concs) {
      const cell = (t: string): WrkResult | undefined => rows[t]?.[id]?.[cc]
      const flag = (t: string): string => cell(t) !== undefined && cell(t)?.ok !== true ? ' ⚠' : ''
      L.push(row([label, cc.slice(1), 'req/s'], c, (t) => okRps(cell(t)) ?? cell(t)?.rps, (n, t) => `${num(n)}${flag(t)}`))
      L.push(row(['', '', 'p50 / p99 ms'], c, (t) => cell(t)?.latencyMs.p50, (n, t) => {
        const r = cell(t)
        return r === undefined ? 'n/a' : `${r.latencyMs.p50.toFixed(2)} / ${r.latencyMs.p99.toFixed(2)}`
      }))
      L.push(row(['', '', 'CPU µs/request'], c, (t) => cpuUs(cell(t)), (n) => n === undefined ? '–' : num(n)))
    }
  }
  L.push('')
}

function blobTable (L: string[], plan: Plan | undefined, b: Record<string, BlobRow>, idle: Record<string, IdleRss>, chunkMiB: number): void {
  const c = columns(plan)
  L.push(...header(['transfer', 'metric'], c))
  const specs: Array<[keyof BlobRow, string]> = [['download1', 'download, 1 client'], ['download8', 'download, 8 clients'],
    ['uploadMonolithic', 'upload, monolithic PUT'], ['uploadChunked', `upload, chunked PATCH ${chunkMiB} MiB`]]
  for (const [key, label] of specs) {
    const r = (t: string): TransferResult | undefined => b[t]?.[key] as TransferResult | undefined
    if (c.targets.every((t) => r(t) === undefined)) continue
    L.push(row([label, 'MiB/s'], c, (t) => okMibps(r(t)), (n, t) => r(t) !== undefined && r(t)?.ok !== true ? 'FAILED' : num(n)))
    L.push(row(['', 'CPU-s/GiB'], c, (t) => cpuPerGiB(r(t)), (n) => n === undefined ? '–' : num(n, 2)))
    if (key === 'download8') {
      L.push(row(['', 'RSS idle → peak MB'], c, (t) => b[t]?.download8?.rss?.peakRssKiB || undefined, (n, t) => {
        const rss = b[t]?.download8?.rss
        return rss === undefined || rss.peakRssKiB === 0 ? '–' : `${fmtMB(idle[t]?.rssKiB)} → ${fmtMB(rss.peakRssKiB)}`
      }))
    }
  }
  L.push('')
  const errs: string[] = []
  for (const t of c.targets) {
    for (const [k, v] of Object.entries(b[t] ?? {})) {
      const e = (v as { error?: string } | undefined)?.error
      if (typeof e === 'string') errs.push(`- ${t} ${k}: ${e.slice(0, 300)}`)
    }
  }
  if (errs.length > 0) L.push('Failures:', '', ...errs, '')
}

function memoryTable (L: string[], parts: Parts): void {
  const names = [...new Set(Object.values(parts.sets).flatMap((s) => Object.keys(s.idle)))]
  if (names.length === 0) return
  const ordered = [...names.filter((n) => n.startsWith('nginx')), ...names.filter((n) => n === FLOOR), ...names.filter((n) => n === PROXY),
    ...names.filter((n) => !n.startsWith('nginx') && n !== FLOOR && n !== PROXY)]
  const floorCol = ordered.includes(FLOOR) && ordered.includes(PROXY)
  L.push('## Memory (RSS in MB = 10⁶ bytes; VmRSS of the process, nginx: master + worker)', '',
    `| measurement | ${ordered.join(' | ')}${floorCol ? ` | proxy − ${FLOOR}` : ''} |`, `|---|${ordered.map(() => '---:').join('|')}${floorCol ? '|---:' : ''}|`)
  const line = (label: string, v: (n: string) => number | undefined, f: (n: number | undefined) => string, diff = true): void => {
    const d = floorCol && diff ? ` | ${(() => { const p = v(PROXY); const q = v(FLOOR); return p === undefined || q === undefined ? 'n/a' : f(p - q) })()}` : floorCol ? ' | ' : ''
    L.push(`| ${label} | ${ordered.map((n) => f(v(n))).join(' | ')}${d} |`)
  }
  for (const [set, s] of Object.entries(parts.sets)) {
    if (Object.keys(s.idle).length === 0) continue
    line(`idle, just started (${set}): RSS`, (n) => s.idle[n] === undefined ? undefined : MB(s.idle[n].rssKiB), (x) => x === undefined ? 'n/a' : x.toFixed(1))
    line(`idle, just started (${set}): of it anonymous`, (n) => s.idle[n] === undefined ? undefined : MB(s.idle[n].anonKiB), (x) => x === undefined ? 'n/a' : x.toFixed(1))
  }
  const ld = parts.sets.fast?.load ?? {}
  if (Object.keys(ld).length > 0) {
    const clients = parts.run.loadClients
    const secs = parts.run.loadSeconds
    const t = `${clients} concurrent manifest GET clients, ${secs} s (fast; exact latencies)`
    line(`${t}: req/s`, (n) => ld[n]?.rps, (x) => num(x), false)
    line(`${t}: p50 / p99 ms`, (n) => ld[n]?.latencyMs.p50, (x) => num(x), false)
    L.pop()
    L.push(`| ${t}: p50 / p99 ms | ${ordered.map((n) => ld[n] === undefined ? 'n/a' : `${ld[n].latencyMs.p50.toFixed(1)} / ${ld[n].latencyMs.p99.toFixed(1)}`).join(' | ')}${floorCol ? ' | ' : ''} |`)
    line(`${t}: requests waiting past 2 s`, (n) => ld[n]?.over2s, (x) => num(x), false)
    line(`${t}: of them sent in the first second`, (n) => ld[n]?.over2sSentInFirstSecond, (x) => num(x), false)
    line(`${t}: CPU µs/request`, (n) => ld[n]?.cpuUsPerRequest ?? undefined, (x) => num(x), false)
    line(`${t}: upstream connections closed during it`, (n) => ld[n]?.upstreamClosed ?? undefined, (x) => num(x), false)
    line(`${t}: RSS before`, (n) => ld[n] === undefined ? undefined : MB(ld[n].rssBeforeKiB), (x) => x === undefined ? 'n/a' : x.toFixed(1))
    line(`${t}: RSS peak (sampled every 50 ms)`, (n) => ld[n] === undefined ? undefined : MB(ld[n].rss.peakRssKiB), (x) => x === undefined ? 'n/a' : x.toFixed(1))
    line(`${t}: RSS after (${parts.plans.fast?.load.settleSeconds ?? 5} s quiet)`, (n) => ld[n] === undefined ? undefined : MB(ld[n].rssAfterKiB), (x) => x === undefined ? 'n/a' : x.toFixed(1))
  }
  L.push('')
}

function markdown (stamp: string, m: Record<string, unknown>, parts: Parts, checks: Check[]): string {
  const L: string[] = []
  const run = parts.run
  L.push(`# ecr-auth-proxy benchmark — ${stamp}`, '')
  L.push(`Machine: ${String(m.cores)} cores (${String(m.cpu)}), ${String(m.memoryGiB)} GiB, ${String(m.kernel)}; ` +
    `node ${String(m.node)}, nginx ${String(m.nginx)}, docker-registry ${String(m.registry)}, ${String(m.wrk)}, curl ${String(m.curl)}, ${String(m.openssl)}; ` +
    `proxy ${String(m.proxy)} (commit ${String(m.commit)}). Load average before/after: ${String(m.loadAverageBefore)} / ${String(m.loadAverageAfter)}. ` +
    `The run took ${Math.floor(run.elapsedSeconds / 60)} min ${run.elapsedSeconds % 60} s.`, '')
  L.push(`Everything on 127.0.0.1. Pinning: ${run.pinning}. ` +
    'Targets: direct (the client sends the token itself), nginx injecting the Authorization header (one worker, access log on), ' +
    `${FLOOR} (bench/node-forwarder.mjs: node:http server + undici Pool, nothing else), and the proxy as shipped ` +
    `(log level ${run.proxyLogLevel}, one JSON line per request to a file). Every forwarder is started fresh for each upstream. ` +
    `Token ${run.tokenLength} characters. Small requests: wrk (GET) and ApacheBench -i -k (HEAD: wrk cannot finish a HEAD answer with Content-Length), ` +
    `median of ${run.rounds} rounds of ${run.wrkSeconds} s per cell, target order rotating. ` +
    `Blobs: ${run.blobMiB} MiB of random bytes; 1-client downloads median of ${run.downloadReps}, 8-client downloads and uploads one run each (sync before each upload). ` +
    'CPU: user + system time of the target\'s processes over each measurement (/proc/<pid>/stat).', '')
  const load = Number(String(m.loadAverageBefore).split(' ')[0])
  if (load > Number(m.cores)) {
    L.push(`> **Noisy run:** the load average was ${String(m.loadAverageBefore)} on ${String(m.cores)} cores when it started — other work shared the CPUs; compare the same-run ratios, not absolute figures.`, '')
  }

  L.push('## Budget (same-run ratios)', '', '| budget line | budget | measured | verdict |', '|---|---|---|---|')
  for (const c of checks) L.push(`| ${c.line} | ${c.budget} | ${c.measured} | ${verdict(c.met)} |`)
  L.push('', `Met ${checks.filter((c) => c.met === true).length}, missed ${checks.filter((c) => c.met === false).length}, not measured ${checks.filter((c) => c.met === null).length}.`, '')

  for (const set of ['fast', 'fast-tls']) {
    const rows = parts.sets[set]?.small.fast
    if (rows === undefined) continue
    L.push(`## Small requests — ${SET_TITLES[set] ?? set}`, '')
    smallTable(L, parts.plans[set], rows, `Upstream ${parts.plans[set]?.upstream ?? '?'}. Ratios: the proxy's figure over the other's (req/s: higher is better; CPU and latency: lower is better; the latency ratio is of p50). ⚠ = errors in the cell.`)
  }
  for (const set of ['registry', 'registry-tls']) {
    const b = parts.sets[set]?.blobs
    if (b === undefined || Object.keys(b).length === 0) continue
    L.push(`## Blob transfers — ${SET_TITLES[set] ?? set}`, '')
    blobTable(L, parts.plans[set], b, parts.sets[set]?.idle ?? {}, run.chunkSize / 1048576)
  }
  memoryTable(L, parts)
  for (const [mode, rows] of Object.entries(parts.sets.registry?.small ?? {})) {
    L.push(`## Registry-bound manifest rows — docker-registry (${mode.replace('registry-bound-', '')}), c16, one round`, '')
    smallTable(L, parts.plans.registry, rows, 'Here docker-registry (about 1,000 req/s on its CPU) is the bottleneck, so throughput ratios say little about the forwarders; kept for comparison with earlier runs.')
  }
  for (const [label, p] of Object.entries(parts.profile)) {
    L.push(`## CPU profile of the proxy — ${label} load (${p.busyMs} ms busy, ${p.idleMs} ms idle)`, '',
      '| self % | package |', '|---:|---|', ...p.topPackages.slice(0, 10).map((e) => `| ${e.percent} | ${e.name} |`), '',
      '| self % | function | where |', '|---:|---|---|', ...p.topFunctions.slice(0, 15).map((e) => `| ${e.percent} | ${e.name} | ${e.where} |`), '')
  }
  return L.join('\n')
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { work: { type: 'string' }, results: { type: 'string' } } })
  if (values.work === undefined || values.results === undefined) throw new Error('usage: report.ts --work DIR --results DIR')
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
  const parts = await loadParts(values.work)
  const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  const m = machine(parts.run, root)
  const checks = budget(parts)
  const json = {
    timestamp: stamp,
    machine: m,
    settings: parts.run,
    plans: Object.fromEntries(Object.entries(parts.plans).map(([k, p]) => [k, { upstream: p.upstream, tls: p.tls, targets: p.targets.map((t) => ({ name: t.name, kind: t.kind, base: t.base })), smallCases: p.smallCases }])),
    sets: parts.sets,
    budget: checks,
    profile: parts.profile
  }
  const md = markdown(stamp, m, parts, checks)
  await mkdir(values.results, { recursive: true })
  const file = stamp.replace(/:/g, '')
  await writeFile(path.join(values.results, 'latest.json'), JSON.stringify(json, null, 2) + '\n')
  await writeFile(path.join(values.results, 'latest.md'), md + '\n')
  await writeFile(path.join(values.results, `${file}.json`), JSON.stringify(json, null, 2) + '\n')
  await writeFile(path.join(values.results, `${file}.md`), md + '\n')
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
