/**
 * `ecr-auth-proxy client-config …` through the built CLI: dispatched before the proxy's own flag
 * parsing, so the proxy neither loads its configuration nor listens.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
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
  t.same(cli(['client-config']), { status: 2, stdout: '', stderr: 'ecr-auth-proxy: client-config: name a client: containerd, k3s, kind or docker (see client-config --help)\n' })
})

t.test('client-config --help', async (t) => {
  const run = cli(['client-config', '--help'])
  t.equal(run.status, 0)
  t.match(run.stdout, /^Usage: ecr-auth-proxy client-config <client>/)
})

t.test('the proxy\'s configured registries, from --config or the environment, plus --registry', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ecr-proxy-client-config-'))
  const file = join(dir, 'proxy.yaml')
  writeFileSync(file, `registries:\n  - { registry: ${ECR}, alias: prod }\n  - { registryId: "111122223333", region: eu-west-1 }\n`)
  const run = cli(['client-config', 'containerd', '--config', file, '--registry', '444455556666.dkr.ecr.us-west-2.amazonaws.com'])
  t.equal(run.status, 0, run.stderr)
  t.same([...run.stdout.matchAll(/^# (\S+)\/hosts\.toml$/gm)].map((m) => m[1]), [ECR, '111122223333.dkr.ecr.eu-west-1.amazonaws.com', '444455556666.dkr.ecr.us-west-2.amazonaws.com'])
  const fromEnv = spawnSync(process.execPath, [CLI, 'client-config', 'k3s'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', ECR_PROXY_REGISTRIES: `${ECR}=prod` }, timeout: 30_000 })
  t.equal(fromEnv.status, 0, fromEnv.stderr)
  t.match(fromEnv.stdout, `"${ECR}":`)
  const bad = cli(['client-config', 'containerd', '--config', join(dir, 'missing.yaml')])
  t.equal(bad.status, 2)
  t.match(bad.stderr, /^ecr-auth-proxy: cannot read config file .*missing\.yaml/)
})

t.test('mirrored hosts from the config are included; docker gets daemon.json for the Docker Hub mirror port', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ecr-proxy-client-config-'))
  const file = join(dir, 'proxy.yaml')
  writeFileSync(file, [
    'registries:',
    `  - { registry: ${ECR}, alias: prod, default: true }`,
    'mirrors:',
    '  registry-1.docker.io: { registry: prod, prefix: docker-hub }',
    '  registry.k8s.io: { registry: prod, prefix: k8s }',
    'listener: { dockerHubMirrorPort: 5001 }',
    ''
  ].join('\n'))
  const containerd = cli(['client-config', 'containerd', '--config', file])
  t.equal(containerd.status, 0, containerd.stderr)
  t.same([...containerd.stdout.matchAll(/^# (\S+)\/hosts\.toml$/gm)].map((m) => m[1]), [ECR, 'docker.io', 'registry.k8s.io'], 'Docker Hub under the name containerd looks up')
  t.match(containerd.stdout, '# docker.io/hosts.toml\n')
  t.match(containerd.stdout, 'server = "https://registry-1.docker.io"\n')

  const docker = cli(['client-config', 'docker', '--config', file])
  t.same(docker, { status: 0, stdout: '{\n  "registry-mirrors": [\n    "http://127.0.0.1:5001"\n  ]\n}\n', stderr: '' })
  const fromEnv = spawnSync(process.execPath, [CLI, 'client-config', 'docker'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', ECR_PROXY_REGISTRIES: `${ECR}=prod`, ECR_PROXY_MIRRORS: 'docker.io=prod/docker-hub' }, timeout: 30_000 })
  t.same(JSON.parse(fromEnv.stdout), { 'registry-mirrors': ['http://127.0.0.1:5000'] }, 'the main port without a Docker Hub mirror port')
  t.same(cli(['client-config', 'docker', '--registry', ECR]), { status: 2, stdout: '', stderr: 'ecr-auth-proxy: client-config docker: Docker\'s registry-mirrors serves Docker Hub only, and docker.io is not mirrored here (mirrors: docker.io: { registry, prefix } in the config, or --registry docker.io when the proxy maps it)\n' })
})
