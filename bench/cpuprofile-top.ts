// Summarise a V8 .cpuprofile (node --cpu-prof): self time per function and per package.
// Usage: cpuprofile-top.ts FILE [--out JSON] [--label NAME] [--top 20]
import { readFile, writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'

interface CallFrame { functionName: string, url: string, lineNumber: number, columnNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, hitCount?: number, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

export interface ProfileEntry { name: string, where: string, selfMs: number, percent: number }
export interface ProfileSummary {
  label: string
  file: string
  totalMs: number
  busyMs: number
  idleMs: number
  topFunctions: ProfileEntry[]
  topPackages: ProfileEntry[]
}

/** Where a frame comes from: a package under node_modules, node's internals, our code, or V8. */
export function packageOf (url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    return rest[0]?.startsWith('@') === true ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? url)
  }
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/')
  const src = url.indexOf('/dist/src/')
  if (src >= 0) return 'ecr-auth-proxy (dist/src)'
  return url
}

export function summarise (profile: CpuProfile, label: string, file: string, top: number): ProfileSummary {
  const byId = new Map<number, ProfileNode>()
  for (const n of profile.nodes) byId.set(n.id, n)
  const selfUs = new Map<number, number>()
  const count = Math.min(profile.samples.length, profile.timeDeltas.length)
  for (let i = 0; i < count; i++) {
    // timeDeltas[i] is the time before sample i; attribute the following delta to sample i
    const id = profile.samples[i] as number
    const dt = profile.timeDeltas[i + 1] ?? 0
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt))
  }
  const fn = new Map<string, { name: string, where: string, us: number }>()
  const pkg = new Map<string, number>()
  let total = 0
  let idle = 0
  for (const [id, us] of selfUs) {
    const node = byId.get(id)
    if (node === undefined) continue
    const { functionName, url, lineNumber } = node.callFrame
    total += us
    if (functionName === '(idle)') { idle += us; continue }
    const name = functionName === '' ? '(anonymous)' : functionName
    const where = url === '' ? '' : `${url.replace(/^file:\/\/.*?\/node_modules\//, 'node_modules/').replace(/^file:\/\/.*?\/dist\/src\//, 'dist/src/')}:${lineNumber + 1}`
    const key = `${name} ${where}`
    const e = fn.get(key) ?? { name, where, us: 0 }
    e.us += us
    fn.set(key, e)
    const p = packageOf(url, functionName)
    pkg.set(p, (pkg.get(p) ?? 0) + us)
  }
  const busy = total - idle
  const pct = (us: number): number => busy > 0 ? Math.round((us / busy) * 1000) / 10 : 0
  const ms = (us: number): number => Math.round(us / 100) / 10
  return {
    label,
    file,
    totalMs: ms(total),
    busyMs: ms(busy),
    idleMs: ms(idle),
    topFunctions: [...fn.values()].sort((a, b) => b.us - a.us).slice(0, top)
      .map((e) => ({ name: e.name, where: e.where, selfMs: ms(e.us), percent: pct(e.us) })),
    topPackages: [...pkg.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)
      .map(([name, us]) => ({ name, where: '', selfMs: ms(us), percent: pct(us) }))
  }
}

async function main (): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { out: { type: 'string' }, label: { type: 'string' }, top: { type: 'string' } }
  })
  const file = positionals[0]
  if (file === undefined) throw new Error('usage: cpuprofile-top.ts FILE [--out JSON] [--label NAME] [--top N]')
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile
  const label = values.label ?? 'profile'
  const s = summarise(profile, label, file, Number(values.top ?? 20))
  if (values.out !== undefined) await writeFile(values.out, JSON.stringify({ profile: { [label]: s } }, null, 2) + '\n')
  console.error(`profile ${label}: ${s.busyMs} ms busy of ${s.totalMs} ms`)
  for (const e of s.topPackages.slice(0, 10)) console.error(`  ${String(e.percent).padStart(5)}%  ${e.name}`)
  for (const e of s.topFunctions.slice(0, 15)) console.error(`  ${String(e.percent).padStart(5)}%  ${e.name}  ${e.where}`)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
