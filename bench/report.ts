// Merge the parts bench/run.sh collected in its work dir into bench/results/latest.{json,md}
// (plus a timestamped copy), with machine info, ratios and the budget verdicts.
// Usage: report.ts --work DIR --results DIR
import { execFileSync } from 'node:child_process'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import type { DownloadResult, Plan, TransferResult, WrkResult } from './measure.js'
import type { ProfileSummary } from './cpuprofile-top.js'

interface BlobRow {
  download1?: DownloadResult
  download8?: DownloadResult
  uploadMonolithic?: TransferResult
  uploadChunked?: TransferResult & { chunks: number }
  vmHwmKiB?: number
}
type SmallRow = Record<'HEAD' | 'GET', Record<string, WrkResult>>
interface RunInfo {
  loadBefore: string
  loadAfter: string
  blobMiB: number
  smallAuth: string
  proxyLogLevel: string
  proxyIncluded: boolean
  tokenLength: number
  nginxVersion: string
  pinning?: string
}
interface Parts {
  run: RunInfo
  blobs: Record<string, BlobRow>
  small: Record<string, Record<string, SmallRow>>
  profile: Record<string, ProfileSummary>
  profileRun: Record<string, unknown>
}

interface Check { check: string, budget: string, measured: string, pass: boolean | null }

const MB100_KIB = 100e6 / 1024

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
  const pkg = (): string => {
    try { return cmdVersion('node', ['-p', `require(${JSON.stringify(path.join(root, 'package.json'))}).version`], (s) => s) } catch { return 'unknown' }
  }
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
    proxy: pkg(),
    commit: cmdVersion('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], (s) => s) +
      (cmdVersion('git', ['-C', root, 'status', '--porcelain', '--', 'src'], (s) => s) === '' ? '' : ' + uncommitted src/ changes'),
    loadAverageBefore: run.loadBefore,
    loadAverageAfter: run.loadAfter
  }
}

async function loadParts (work: string): Promise<{ parts: Parts, plan: Plan }> {
  const parts: Parts = { run: {} as RunInfo, blobs: {}, small: {}, profile: {}, profileRun: {} }
  for (const f of (await readdir(work)).filter((x) => x.startsWith('part-') && x.endsWith('.json')).sort()) {
    const j = JSON.parse(await readFile(path.join(work, f), 'utf8')) as Record<string, unknown>
    if (f === 'part-run.json') { parts.run = j as unknown as RunInfo; continue }
    if (j.blobs !== undefined) parts.blobs = j.blobs as Parts['blobs']
    if (j.small !== undefined) Object.assign(parts.small, j.small)
    if (j.profile !== undefined) Object.assign(parts.profile, j.profile)
    if (j.profileRun !== undefined) Object.assign(parts.profileRun, j.profileRun)
  }
  const plan = JSON.parse(await readFile(path.join(work, 'plan.json'), 'utf8')) as Plan
  return { parts, plan }
}

function ratio (a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || b === 0 || a === 0) return null
  return Math.round((a / b) * 1000) / 1000
}

function fmtRatio (r: number | null): string {
  return r === null ? 'n/a' : `${r.toFixed(2)}×`
}

function num (n: number | undefined, digits = 0): string {
  return n === undefined ? 'n/a' : n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function transferCell (r: TransferResult | undefined): string {
  if (r === undefined) return 'n/a'
  return r.ok ? num(r.mibps) : 'FAILED'
}

function best (names: string[], value: (n: string) => number | undefined): { name: string, value: number } | undefined {
  let b: { name: string, value: number } | undefined
  for (const n of names) {
    const v = value(n)
    if (v !== undefined && v > 0 && (b === undefined || v > b.value)) b = { name: n, value: v }
  }
  return b
}

function analyse (parts: Parts, plan: Plan): { ratios: Record<string, unknown>, checks: Check[], budgetMode: string | null } {
  const names = plan.targets.map((t) => t.name)
  const nginx = plan.targets.filter((t) => t.kind === 'nginx').map((t) => t.name)
  const hasProxy = names.includes('proxy')
  const okMibps = (r: TransferResult | undefined): number | undefined => r?.ok === true ? r.mibps : undefined
  const ratios: Record<string, unknown> = {}
  const checks: Check[] = []
  const add = (check: string, budget: string, measured: string, pass: boolean | null): void => { checks.push({ check, budget, measured, pass }) }

  for (const key of ['download1', 'download8', 'uploadMonolithic', 'uploadChunked'] as const) {
    const v = (n: string): number | undefined => okMibps(parts.blobs[n]?.[key])
    const bn = best(nginx, v)
    ratios[key] = {
      proxyOverDirect: ratio(v('proxy'), v('direct')),
      proxyOverBestNginx: ratio(v('proxy'), bn?.value),
      bestNginx: bn?.name ?? null,
      bestNginxOverDirect: ratio(bn?.value, v('direct'))
    }
  }
  const modes = Object.keys(parts.small)
  const budgetMode = modes.includes('auth-off') ? 'auth-off' : (modes[0] ?? null)
  const smallRatios: Record<string, unknown> = {}
  for (const mode of modes) {
    const rows = parts.small[mode] ?? {}
    for (const method of ['HEAD', 'GET'] as const) {
      for (const c of ['c1', 'c16', 'c64']) {
        const rps = (n: string): number | undefined => {
          const r = rows[n]?.[method]?.[c]
          return r?.ok === true ? r.rps : undefined
        }
        const p50 = (n: string): number | undefined => rows[n]?.[method]?.[c]?.latencyMs.p50
        const bn = best(nginx, rps)
        const pp = p50('proxy')
        const dp = p50('direct')
        smallRatios[`${mode} ${method} ${c}`] = {
          proxyOverDirect: ratio(rps('proxy'), rps('direct')),
          proxyOverBestNginx: ratio(rps('proxy'), bn?.value),
          bestNginx: bn?.name ?? null,
          p50AddedMs: pp !== undefined && dp !== undefined ? Math.round((pp - dp) * 1000) / 1000 : null
        }
      }
    }
  }
  ratios.small = smallRatios

  const verdict = (r: number | null, min: number): boolean | null => r === null ? null : r >= min
  const rr = (key: string): { proxyOverDirect: number | null, proxyOverBestNginx: number | null, bestNginx: string | null } =>
    ratios[key] as { proxyOverDirect: number | null, proxyOverBestNginx: number | null, bestNginx: string | null }
  if (!hasProxy) add('proxy included in the run', 'yes', 'no (build or start failed)', false)
  for (const [key, label] of [['download1', 'blob download, 1 client'], ['download8', 'blob download, 8 clients']] as const) {
    const r = rr(key)
    add(`${label} vs direct`, '≥ 0.90×', fmtRatio(r.proxyOverDirect), verdict(r.proxyOverDirect, 0.9))
    add(`${label} vs best nginx (${r.bestNginx ?? 'n/a'})`, '≥ 1.00×', fmtRatio(r.proxyOverBestNginx), verdict(r.proxyOverBestNginx, 1.0))
  }
  for (const [key, label] of [['uploadMonolithic', 'blob upload, monolithic PUT'], ['uploadChunked', 'blob upload, chunked PATCH']] as const) {
    const r = rr(key)
    add(`${label} vs direct`, '≥ 0.90×', fmtRatio(r.proxyOverDirect), verdict(r.proxyOverDirect, 0.9))
  }
  if (budgetMode !== null) {
    for (const method of ['HEAD', 'GET'] as const) {
      const s = smallRatios[`${budgetMode} ${method} c16`] as { proxyOverDirect: number | null }
      add(`manifest ${method} req/s at c16 vs direct (${budgetMode})`, '≥ 0.90×', fmtRatio(s.proxyOverDirect), verdict(s.proxyOverDirect, 0.9))
    }
    for (const method of ['HEAD', 'GET'] as const) {
      const s = smallRatios[`${budgetMode} ${method} c1`] as { p50AddedMs: number | null }
      add(`manifest ${method} p50 added latency at c1 (${budgetMode})`, '≤ 0.5 ms', s.p50AddedMs === null ? 'n/a' : `${s.p50AddedMs.toFixed(3)} ms`,
        s.p50AddedMs === null ? null : s.p50AddedMs <= 0.5)
    }
  }
  const rss = parts.blobs.proxy?.download8?.rss
  add('proxy peak RSS during 8 × blob download', '≤ 100 MB', rss === undefined ? 'n/a' : `${(rss.peakRssKiB * 1024 / 1e6).toFixed(1)} MB sampled every 50 ms (at start ${((rss.startRssKiB ?? 0) * 1024 / 1e6).toFixed(1)} MB; peak RssAnon ${rss.peakAnonKiB === undefined ? 'n/a' : (rss.peakAnonKiB * 1024 / 1e6).toFixed(1)} MB; lifetime VmHWM ${rss.hwmKiB === null ? 'n/a' : (rss.hwmKiB * 1024 / 1e6).toFixed(1)} MB)`,
    rss === undefined ? null : rss.peakRssKiB <= MB100_KIB)
  return { ratios, checks, budgetMode }
}

function markdown (stamp: string, m: Record<string, unknown>, parts: Parts, plan: Plan, a: ReturnType<typeof analyse>): string {
  const L: string[] = []
  const names = plan.targets.map((t) => t.name)
  const mib = (kib: number | undefined): string => kib === undefined ? 'n/a' : (kib / 1024).toFixed(1)
  L.push(`# ecr-auth-proxy benchmark — ${stamp}`, '')
  L.push(`Machine: ${String(m.cores)} cores (${String(m.cpu)}), ${String(m.memoryGiB)} GiB, ${String(m.kernel)}; ` +
    `node ${String(m.node)}, nginx ${String(m.nginx)}, docker-registry ${String(m.registry)}, ${String(m.wrk)}, curl ${String(m.curl)}; ` +
    `proxy ${String(m.proxy)} (commit ${String(m.commit)}). Load average before/after: ${String(m.loadAverageBefore)} / ${String(m.loadAverageAfter)}.`, '')
  L.push(`Everything on 127.0.0.1. Blob ${parts.run.blobMiB} MiB of random bytes, registry storage on the filesystem (page-cached), ` +
    'registry auth htpasswd bcrypt cost 4 for the blob runs; manifest runs with the registry\'s auth as labelled ' +
    '(auth-off: no auth on the registry; htpasswd-bcrypt4: bcrypt cost 4 checked on every request). ' +
    `Token ${parts.run.tokenLength} characters. Proxy log level ${parts.run.proxyLogLevel} (one JSON line per request to a file); ` +
    'nginx access_log on (file), 2 workers. ' +
    `1-client downloads: median of ${plan.downloadReps}; 8-client downloads and uploads: one run each (sync before each upload); ` +
    (Object.keys(parts.small).length === 0 ? 'no manifest runs. ' : `manifest cells: median of ${plan.rounds} rounds of ${plan.wrkSeconds} s. `) +
    'Target order rotates between rounds. ' +
    `CPU pinning: ${parts.run.pinning ?? 'none'}.`, '')
  const load = Number(String(m.loadAverageBefore).split(' ')[0])
  if (load > Number(m.cores)) {
    L.push(`> **Noisy run:** the load average was ${String(m.loadAverageBefore)} on ${String(m.cores)} cores when it started — other work shared the CPUs; compare ratios, not absolute figures.`, '')
  }

  L.push('## Budget', '', '| check | budget | measured | verdict |', '|---|---|---|---|')
  for (const c of a.checks) L.push(`| ${c.check} | ${c.budget} | ${c.measured} | ${c.pass === null ? 'n/a' : c.pass ? 'pass' : '**miss**'} |`)
  L.push('')

  L.push('## Blob transfers (MiB/s, higher is better)', '',
    `| target | download, 1 client | download, 8 clients (aggregate) | upload, monolithic PUT | upload, chunked PATCH ${plan.chunkSize / 1048576} MiB | RSS at start → peak during 8× download (MiB) |`,
    '|---|---:|---:|---:|---:|---:|')
  for (const n of names) {
    const b = parts.blobs[n] ?? {}
    L.push(`| ${n} | ${transferCell(b.download1)} | ${transferCell(b.download8)} | ${transferCell(b.uploadMonolithic)} | ${transferCell(b.uploadChunked)} | ${b.download8?.rss === undefined || b.download8.rss.samples === 0 || b.download8.rss.peakRssKiB === 0 ? 'n/a' : `${mib(b.download8.rss.startRssKiB)} → ${mib(b.download8.rss.peakRssKiB)}`} |`)
  }
  L.push('')
  const errs: string[] = []
  for (const n of names) {
    const b = parts.blobs[n] ?? {}
    for (const [k, v] of Object.entries(b)) {
      const e = (v as { error?: string } | undefined)?.error
      if (typeof e === 'string') errs.push(`- ${n} ${k}: ${e.slice(0, 300)}`)
    }
  }
  if (errs.length > 0) L.push('Failures:', '', ...errs, '')

  const perGiB = (r: TransferResult | undefined): string =>
    r?.ok === true && typeof r.cpuSeconds === 'number' && r.bytes > 0 ? (r.cpuSeconds / (r.bytes / 2 ** 30)).toFixed(2) : 'n/a'
  const modes = Object.keys(parts.small)
  const perReq = (n: string, method: 'HEAD' | 'GET'): string => {
    const v = modes.length === 0 ? undefined : parts.small[modes[0] as string]?.[n]?.[method]?.c16?.cpuUsPerRequest
    return typeof v === 'number' ? String(Math.round(v)) : 'n/a'
  }
  L.push('## CPU cost of the forwarding (user + system time of the target\'s processes)', '',
    `| target | download CPU s/GiB, 1 client | 8 clients | upload CPU s/GiB, monolithic | chunked | manifest HEAD c16 CPU µs/request${modes.length > 0 ? ` (${modes[0] as string})` : ''} | GET c16 |`,
    '|---|---:|---:|---:|---:|---:|---:|')
  for (const n of names.filter((x) => x !== 'direct')) {
    const b = parts.blobs[n] ?? {}
    L.push(`| ${n} | ${perGiB(b.download1)} | ${perGiB(b.download8)} | ${perGiB(b.uploadMonolithic)} | ${perGiB(b.uploadChunked)} | ${perReq(n, 'HEAD')} | ${perReq(n, 'GET')} |`)
  }
  L.push('')

  for (const [mode, rows] of Object.entries(parts.small)) {
    L.push(`## Manifest requests — registry ${mode} (req/s, p50 / p99 ms)`, '',
      'GET with wrk --latency (1 thread); HEAD with ApacheBench -i -k (wrk cannot finish a HEAD answer that carries Content-Length). ' +
      'Compare rows of the same method only.', '',
      '| target | method | c1 req/s | c1 p50 / p99 | c16 req/s | c16 p50 / p99 | c64 req/s | c64 p50 / p99 |',
      '|---|---|---:|---:|---:|---:|---:|---:|')
    for (const method of ['HEAD', 'GET'] as const) {
      for (const n of names) {
        const cells = ['c1', 'c16', 'c64'].map((c) => {
          const r = rows[n]?.[method]?.[c]
          if (r === undefined) return 'n/a | n/a'
          const flag = r.ok ? '' : ' ⚠'
          return `${num(r.rps)}${flag} | ${r.latencyMs.p50.toFixed(2)} / ${r.latencyMs.p99.toFixed(2)}`
        })
        L.push(`| ${n} | ${method} | ${cells.join(' | ')} |`)
      }
    }
    L.push('')
  }

  L.push('## Ratios', '', '| metric | proxy / direct | proxy / best nginx | best nginx / direct |', '|---|---:|---:|---:|')
  for (const key of ['download1', 'download8', 'uploadMonolithic', 'uploadChunked']) {
    const r = a.ratios[key] as { proxyOverDirect: number | null, proxyOverBestNginx: number | null, bestNginx: string | null, bestNginxOverDirect: number | null }
    L.push(`| ${key} | ${fmtRatio(r.proxyOverDirect)} | ${fmtRatio(r.proxyOverBestNginx)} (${r.bestNginx ?? 'n/a'}) | ${fmtRatio(r.bestNginxOverDirect)} |`)
  }
  for (const [k, v] of Object.entries(a.ratios.small as Record<string, { proxyOverDirect: number | null, proxyOverBestNginx: number | null, bestNginx: string | null, p50AddedMs: number | null }>)) {
    L.push(`| ${k} req/s (p50 added ${v.p50AddedMs === null ? 'n/a' : v.p50AddedMs.toFixed(3) + ' ms'}) | ${fmtRatio(v.proxyOverDirect)} | ${fmtRatio(v.proxyOverBestNginx)} (${v.bestNginx ?? 'n/a'}) | |`)
  }
  L.push('')

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
  const { parts, plan } = await loadParts(values.work)
  const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  const m = machine(parts.run, root)
  const a = analyse(parts, plan)
  const json = {
    timestamp: stamp,
    machine: m,
    settings: {
      blobBytes: plan.blob.size,
      chunkBytes: plan.chunkSize,
      wrkSeconds: plan.wrkSeconds,
      manifestRounds: plan.rounds,
      downloadReps: plan.downloadReps,
      blobRegistryAuth: 'htpasswd bcrypt cost 4',
      smallRegistryAuth: Object.keys(parts.small),
      proxyLogLevel: parts.run.proxyLogLevel,
      pinning: parts.run.pinning ?? 'none',
      tokenLength: parts.run.tokenLength
    },
    targets: plan.targets.map((t) => ({ name: t.name, kind: t.kind })),
    blobs: parts.blobs,
    small: parts.small,
    ratios: a.ratios,
    budget: a.checks,
    profile: parts.profile,
    profileRun: parts.profileRun
  }
  const md = markdown(stamp, m, parts, plan, a)
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
