/**
 * docker login / podman login / skopeo --creds against the proxy with client authentication on;
 * docker pull after login, and refused before it.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Containerd, DockerEngine, Podman, Skopeo } from './harness/clients.js'
import { FORMATS, seedDirect } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { htpasswdLine } from './harness/registry.js'
import { startStack } from './harness/stack.js'
import { tempDir } from './harness/util.js'
import { run } from './harness/process.js'

const dir = tempDir(t, 'client-auth')
const htpasswd = join(dir, 'clients.htpasswd')
writeFileSync(htpasswd, htpasswdLine('alice', 'alice-pw-123'))
const stack = await startStack(t, { proxyArgs: ['--htpasswd', htpasswd] })
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const containerd = await Containerd.start(t, join(dir, 'containerd'))
const engine = await DockerEngine.start(t, join(dir, 'docker'), containerd)
const proxy = stack.proxy.host

t.test('docker: refused before login, pulls after docker login', async (t) => {
  await seedDirect(stack, skopeo, images, 'e2e/auth')
  const tag = FORMATS[0]?.tag ?? 'oci'
  const image = `${proxy}/e2e/auth:${tag}`
  const before = await run(engine.cli, ['pull', image], { env: engine.env, timeoutMs: 60_000 })
  t.not(before.code, 0, 'pull without login fails')
  t.match(before.stderr, /no basic auth credentials|unauthorized|authentication required/i)
  const wrong = await run(engine.cli, ['login', proxy, '-u', 'alice', '--password-stdin'], { env: engine.env, input: 'nope', timeoutMs: 60_000 })
  t.not(wrong.code, 0, 'a wrong password is refused')
  await engine.docker(['login', proxy, '-u', 'alice', '--password-stdin'], { input: 'alice-pw-123' })
  const pulled = await engine.docker(['pull', image])
  t.match(pulled.stdout, /Digest: sha256:/)
})

t.test('podman login and pull', async (t) => {
  const podman = new Podman(join(dir, 'podman'))
  const p = async (args: string[], input?: string) => await run('podman', [...podman.globalArgs, ...args], { env: podman.env, timeoutMs: 120_000, ...(input === undefined ? {} : { input }) })
  const login = await p(['login', '--tls-verify=false', '-u', 'alice', '--password-stdin', proxy], 'alice-pw-123')
  t.equal(login.code, 0, login.stderr)
  const pulled = await p(['pull', '--tls-verify=false', `${proxy}/e2e/auth:${FORMATS[0]?.tag ?? 'oci'}`])
  t.equal(pulled.code, 0, pulled.stderr)
})
