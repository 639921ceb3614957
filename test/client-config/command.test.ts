import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import t, { type Test } from 'tap'
import { parse } from 'yaml'
import { clientConfigHelp, runClientConfig } from '../../src/client-config/command.js'
import { containerdHosts } from '../../src/client-config/render.js'

const ECR = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const ECR2 = '111122223333.dkr.ecr.eu-west-1.amazonaws.com'

async function cli (argv: string[], registries: string[] = []): Promise<{ code: number, stdout: string, stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await runClientConfig(argv, registries, { stdout: { write: (s: string) => { stdout += s } }, stderr: { write: (s: string) => { stderr += s } } })
  return { code, stdout, stderr }
}

function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'client-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('containerd without --dir prints each file after a "# <path>" line', async (t) => {
  const run = await cli(['containerd', '--registry', ECR, `--registry=${ECR2}`])
  const files = containerdHosts({ registries: [ECR, ECR2], proxy: 'http://127.0.0.1:5000' })
  t.same(run, { code: 0, stdout: `# ${ECR}/hosts.toml\n${files[0]?.content ?? ''}\n# ${ECR2}/hosts.toml\n${files[1]?.content ?? ''}`, stderr: '' })
})

t.test('the configured registries come first, --registry flags add to them', async (t) => {
  const run = await cli(['containerd', '--registry', ECR2, '--registry', ECR], [ECR])
  t.same(run.stdout.match(/^# \S+$/gm), [`# ${ECR}/hosts.toml`, `# ${ECR2}/hosts.toml`])
})

t.test('containerd --dir writes the files, says so, and leaves identical files alone', async (t) => {
  const dir = join(tempDir(t), 'certs.d')
  const argv = ['containerd', '--registry', ECR, '--registry', ECR2, '--dir', dir, '--proxy', 'http://127.0.0.1:5000', '--server', 'http://127.0.0.1:9']
  const first = await cli(argv)
  t.same(first, { code: 0, stdout: `wrote ${dir}/${ECR}/hosts.toml\nwrote ${dir}/${ECR2}/hosts.toml\n`, stderr: '' })
  const expected = containerdHosts({ registries: [ECR, ECR2], proxy: 'http://127.0.0.1:5000', server: 'http://127.0.0.1:9' })
  for (const f of expected) {
    t.equal(readFileSync(join(dir, f.path), 'utf8'), f.content, f.path)
    t.equal(statSync(join(dir, f.path)).mode & 0o777, 0o644, `${f.path}: readable by all, written by its owner`)
  }
  t.same(readdirSync(dir).sort(), [ECR2, ECR].sort(), 'one directory per registry')
  const inode = statSync(join(dir, ECR, 'hosts.toml')).ino

  const again = await cli(argv)
  t.same(again, { code: 0, stdout: `unchanged ${dir}/${ECR}/hosts.toml\nunchanged ${dir}/${ECR2}/hosts.toml\n`, stderr: '' })
  t.equal(statSync(join(dir, ECR, 'hosts.toml')).ino, inode, 'not rewritten')

  const moved = await cli([...argv.slice(0, -4), '--proxy', 'http://127.0.0.1:5001'])
  t.equal(moved.code, 0)
  t.match(readFileSync(join(dir, ECR, 'hosts.toml'), 'utf8'), '[host."http://127.0.0.1:5001"]')
  t.not(statSync(join(dir, ECR, 'hosts.toml')).ino, inode, 'replaced by a rename, not rewritten in place')
  t.same(readdirSync(join(dir, ECR)), ['hosts.toml'], 'no temporary file left behind')
})

t.test('containerd --dir: a relative directory is taken from the working directory', async (t) => {
  const dir = join(tempDir(t), 'rel')
  const run = await cli(['containerd', '--registry', ECR, '--dir', relative(process.cwd(), dir)])
  t.same(run, { code: 0, stdout: `wrote ${dir}/${ECR}/hosts.toml\n`, stderr: '' })
})

t.test('a file that cannot be written: exit 1, after saying what was written', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, ECR2), 'not a directory')
  const run = await cli(['containerd', '--registry', ECR, '--registry', ECR2, '--dir', dir])
  t.equal(run.code, 1)
  t.equal(run.stdout, `wrote ${dir}/${ECR}/hosts.toml\n`)
  t.match(run.stderr, new RegExp(`^ecr-auth-proxy: cannot write the hosts files under ${dir}: EEXIST: file already exists, mkdir '${dir}/${ECR2}'\n$`))
})

t.test('an existing hosts.toml that cannot be read is an error, not overwritten blindly', async (t) => {
  const dir = tempDir(t)
  mkdirSync(join(dir, ECR, 'hosts.toml'), { recursive: true })
  const run = await cli(['containerd', '--registry', ECR, '--dir', dir])
  t.equal(run.code, 1)
  t.match(run.stderr, /^ecr-auth-proxy: cannot write the hosts files under .*: EISDIR/)
})

t.test('k3s prints registries.yaml', async (t) => {
  const run = await cli(['k3s', '--registry', ECR, '--proxy', 'http://127.0.0.1:5000'])
  t.equal(run.code, 0)
  t.same(parse(run.stdout), { mirrors: { [ECR]: { endpoint: ['http://127.0.0.1:5000'] } } })
})

t.test('kind prints a cluster config; with --hosts-dir it mounts it and names the command that fills it', async (t) => {
  const bare = await cli(['kind'])
  t.equal(bare.code, 0, 'no registries needed for the patch alone')
  t.same(Object.keys(parse(bare.stdout)), ['kind', 'apiVersion', 'containerdConfigPatches'])
  const dir = join(tempDir(t), 'certs.d')
  const run = await cli(['kind', '--registry', ECR, '--hosts-dir', relative(process.cwd(), dir), '--proxy', 'http://ecr-auth-proxy:5000'])
  t.equal(run.code, 0)
  t.same(parse(run.stdout).nodes, [{ role: 'control-plane', extraMounts: [{ hostPath: dir, containerPath: '/etc/containerd/certs.d', readOnly: true }] }])
  t.match(run.stdout, `#   ecr-auth-proxy client-config containerd --registry ${ECR} --proxy http://ecr-auth-proxy:5000 --dir ${dir}\n`)
  const unnamed = await cli(['kind', '--hosts-dir', dir])
  t.match(unnamed.stdout, `client-config containerd --registry HOST --proxy http://127.0.0.1:5000 --dir ${dir}\n`)
})

t.test('--help anywhere prints the help', async (t) => {
  for (const argv of [['--help'], ['-h'], ['containerd', '--help'], ['kind', '--hosts-dir', '/x', '-h']]) {
    t.same(await cli(argv), { code: 0, stdout: clientConfigHelp(), stderr: '' }, argv.join(' '))
  }
  t.match(clientConfigHelp(), /^Usage: ecr-auth-proxy client-config <client> \[--registry HOST\]\.\.\. \[options\]\n/)
})

t.test('bad usage: exit 2 and one line naming the problem', async (t) => {
  const cases: Array<[string[], string]> = [
    [[], 'client-config: name a client: containerd, k3s, kind or docker (see client-config --help)'],
    [['podman'], 'client-config: unknown client "podman": containerd, k3s, kind or docker'],
    [['toString'], 'client-config: unknown client "toString": containerd, k3s, kind or docker'],
    [['containerd'], 'no registries: give --registry HOST, once per registry'],
    [['k3s'], 'no registries: give --registry HOST, once per registry'],
    [['containerd', '--registry'], 'client-config containerd: --registry needs a value'],
    [['containerd', '--registry', '--dir', '/x'], 'client-config containerd: --registry needs a value'],
    [['containerd', '--registry', ECR, '--dir'], 'client-config containerd: --dir needs a value'],
    [['containerd', '--registry', ECR, ECR2], `client-config containerd: unexpected argument "${ECR2}"`],
    [['containerd', '--registry', ECR, '-d', '/x'], 'client-config containerd: unexpected argument "-d"'],
    [['k3s', '--registry', ECR, '--dir', '/x'], 'client-config k3s: unknown option --dir'],
    [['kind', '--server', 'http://127.0.0.1:9'], 'client-config kind: unknown option --server'],
    [['containerd', '--registry', ECR, '--dir', '/a', '--dir', '/b'], 'client-config containerd: --dir given twice'],
    [['containerd', '--registry', `https://${ECR}`], `--registry "https://${ECR}": a hostname, not a URL (drop https://)`],
    [['containerd', '--registry', `${ECR}/team`], `--registry "${ECR}/team": a hostname, without a path`],
    [['containerd', '--registry', ECR, '--proxy', '127.0.0.1:5000'], '--proxy "127.0.0.1:5000": must be an http:// or https:// URL, e.g. http://127.0.0.1:5000'],
    [['containerd', '--registry', ECR, '--ca', '/ca.pem'], '--ca is for an https:// proxy; this one is plain HTTP']
  ]
  for (const [argv, message] of cases) {
    t.same(await cli(argv), { code: 2, stdout: '', stderr: `ecr-auth-proxy: ${message}\n` }, argv.join(' ') || '(nothing)')
  }
  t.same(await cli(['containerd'], ['https://a.example']), { code: 2, stdout: '', stderr: 'ecr-auth-proxy: --registry "https://a.example": a hostname, not a URL (drop https://)\n' },
    'configured registries are checked too')
})

t.test('docker: daemon.json with the proxy as Docker Hub\'s mirror; insecure-registries off loopback', async (t) => {
  t.same(await cli(['docker', '--registry', 'docker.io']), { code: 0, stdout: '{\n  "registry-mirrors": [\n    "http://127.0.0.1:5000"\n  ]\n}\n', stderr: '' })
  t.same(await cli(['docker'], ['docker.io']), { code: 0, stdout: '{\n  "registry-mirrors": [\n    "http://127.0.0.1:5000"\n  ]\n}\n', stderr: '' }, 'docker.io known from the configuration')
  for (const loopback of ['http://127.0.0.2:5001', 'http://localhost:5000', 'http://[::1]:5000', 'https://proxy.example:5443']) {
    const run = await cli(['docker', '--proxy', loopback], ['docker.io'])
    t.same(run, { code: 0, stdout: `${JSON.stringify({ 'registry-mirrors': [loopback] }, null, 2)}\n`, stderr: '' }, loopback)
  }
  const remote = await cli(['docker', '--proxy', 'http://proxy.example:5000'], ['docker.io'])
  t.equal(remote.code, 0)
  t.same(JSON.parse(remote.stdout), { 'registry-mirrors': ['http://proxy.example:5000'], 'insecure-registries': ['proxy.example:5000'] })
  t.equal(remote.stderr, 'note: proxy.example:5000 is plain HTTP off loopback: dockerd uses plain HTTP there only when it is listed in "insecure-registries" (included above); merge both keys into /etc/docker/daemon.json and restart dockerd\n')
  const hubPort = await runClientConfig(['docker'], ['docker.io'], { stdout: { write: (s: string) => { t.same(JSON.parse(s), { 'registry-mirrors': ['http://127.0.0.1:5001'] }, 'the Docker Hub mirror port when configured') } }, stderr: { write: () => { t.fail('nothing on stderr') } } }, { dockerHubMirrorPort: 5001 })
  t.equal(hubPort, 0)
  t.same(await cli(['docker', '--dir', '/tmp/x'], ['docker.io']), { code: 2, stdout: '', stderr: 'ecr-auth-proxy: client-config docker: unknown option --dir\n' })
  t.same(await cli(['docker', '--proxy', 'http://127.0.0.1:5000/v2'], ['docker.io']), { code: 2, stdout: '', stderr: 'ecr-auth-proxy: --proxy "http://127.0.0.1:5000/v2": scheme, host and port only (containerd adds /v2 itself)\n' })
})
