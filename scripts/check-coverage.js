// The coverage gate of `npm test`. The thresholds are tap's own settings in package.json "tap"
// (statements, branches, functions, lines): tap then stays quiet about a run above them, and
// allow-incomplete-coverage lets `npx tap test/one.test.ts` pass on its partial coverage, so this
// script is what fails a full run below them. Raise them as coverage grows; never lower them to
// make a change pass.
import { readFileSync } from 'node:fs'

const METRICS = ['lines', 'statements', 'functions', 'branches']
const tapConfig = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).tap
const summary = JSON.parse(readFileSync(new URL('../.tap/report/coverage-summary.json', import.meta.url), 'utf8')).total
const below = METRICS.filter((m) => summary[m].pct < tapConfig[m])
const measured = METRICS.map((m) => `${m} ${summary[m].pct}% (≥ ${tapConfig[m]})`).join(', ')
if (below.length > 0) {
  console.error(`coverage: FAILED, ${below.join(' and ')} below the threshold: ${measured}`)
  process.exit(1)
}
console.log(`coverage: ok, ${measured}`)
