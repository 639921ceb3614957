/**
 * What a new user reads agrees with the code: the README's settings table has a row for every
 * setting --help lists (SETTINGS), with the same flag, environment variable and config key, and
 * no other; the README names every metric /metrics serves.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { SETTINGS } from '../src/config/index.js'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')

interface Row { flag: string, env: string, key: string }

/** The rows of the table under "## Configuration" whose header is `| flag | environment | config key |…`. */
function settingsTable (text: string): Row[] {
  const section = text.slice(text.indexOf('\n## Configuration'))
  const lines = section.split('\n')
  const header = lines.findIndex((l) => /^\| flag \| environment \| config key \|/.test(l))
  const rows: Row[] = []
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break
    const cells = line.split('|').slice(1, -1).map((c) => c.trim())
    const code = (cell: string | undefined) => /^`([^`]*)`/.exec(cell ?? '')?.[1] ?? ''
    rows.push({ flag: code(cells[0]).split(' ')[0] ?? '', env: code(cells[1]), key: code(cells[2]) })
  }
  return rows
}

t.test('the README settings table lists every setting --help lists, and no other', async (t) => {
  const rows = settingsTable(readme)
  t.ok(rows.length > 0, 'the table is found')
  const expected: Row[] = [
    { flag: '--config', env: 'ECR_PROXY_CONFIG', key: '' },
    ...SETTINGS.map((s) => ({ flag: s.flag === '' ? '' : `--${s.flag}`, env: s.env, key: s.key.split(', ')[0] ?? '' }))
  ]
  const byEnv = (list: Row[]) => new Map(list.map((r) => [r.env, r]))
  t.same([...byEnv(rows).keys()].sort(), [...byEnv(expected).keys()].sort(), 'one row per setting')
  for (const want of expected) t.same(byEnv(rows).get(want.env), want, want.env)
})

t.test('the README names every metric /metrics serves', async (t) => {
  const source = readFileSync(join(ROOT, 'src', 'ops', 'metrics.ts'), 'utf8')
  const names = [...source.matchAll(/'(ecr_proxy_[a-z_]+)'/g)].map((m) => m[1] as string)
  t.ok(names.length >= 9, `found the metric names in src/ops/metrics.ts (${names.length})`)
  const health = readme.slice(readme.indexOf('## Health and logs'))
  for (const name of names) t.match(health, `\`${name}\``, name)
})
