/**
 * `ecr-auth-proxy client-config …` through the built CLI: dispatched before the proxy's own flag
 * parsing, so the proxy neither loads its configuration nor listens.
 */
import { spawnSync } from 'node:child_process'
import t from 'tap'
import { CLI } from '../helpers/cli-process.js'

const ECR = '600423610423.dkr.ecr.us-east-2.amazonaws.com'

function cli (args: string[]): { status: number | null, stdout: string, stderr: string } {
  // Were the proxy to start instead, it would keep running until the timeout ends it.
  const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent' }, timeout: 30_000 })
  return { status: run.status, stdout: run.stdout, stderr: run.stderr }
}

t.test('client-config prints the hosts files and exits 0', async (t) => {
  const run = cli(['client-config', 'containerd', '--registry', ECR])
  t.equal(run.status, 0, run.stderr)
  t.match(run.stdout, new RegExp(`^# ${ECR.replace(/\./g, '\\.')}/hosts\\.toml\\n`))
  t.match(run.stdout, '[host."http://127.0.0.1:5000"]\n  capabilities = ["pull", "resolve"]\n')
  t.equal(run.stderr, '')
})

t.test('its own flags, not the proxy\'s: --port is unknown to it', async (t) => {
  t.same(cli(['client-config', 'containerd', '--registry', ECR, '--port', '5000']), { status: 2, stdout: '', stderr: 'ecr-auth-proxy: client-config containerd: unknown option --port\n' })
  t.same(cli(['client-config']), { status: 2, stdout: '', stderr: 'ecr-auth-proxy: client-config: name a client: containerd, k3s or kind (see client-config --help)\n' })
})

t.test('client-config --help', async (t) => {
  const run = cli(['client-config', '--help'])
  t.equal(run.status, 0)
  t.match(run.stdout, /^Usage: ecr-auth-proxy client-config <client>/)
})
