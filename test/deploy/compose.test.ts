/**
 * docker-compose.yml through the Compose implementations users have: Debian 12's docker-compose
 * 1.29 (`apt-get install docker-compose`; scripts/install-peers.sh, which .ci/run runs, installs it)
 * and Compose v2 (`docker compose`) where its plugin is installed. `config` validates and resolves
 * the file without a Docker engine. Each skips only when its tool is absent.
 *
 * And one image name: the README's `docker run`, the build command beside it, docker-compose.yml
 * and scripts/test-image.sh use the same tag.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { parse as parseYaml } from 'yaml'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const TAG = 'ecr-auth-proxy:local'
// Resolved as a user's shell would: HOME for the ~/.aws mount, nothing else set.
const ENV = { PATH: process.env.PATH ?? '', HOME: '/home/someone' }

function available (command: string[]): boolean {
  const [file, ...args] = command
  return spawnSync(file as string, args, { env: ENV, stdio: 'ignore' }).status === 0
}

function checkResolved (t: Test, command: string[]): void {
  const [file, ...args] = command
  const result = spawnSync(file as string, [...args, '-f', 'docker-compose.yml', 'config'], { cwd: ROOT, env: ENV, encoding: 'utf8' })
  t.equal(result.status, 0, `${command.join(' ')} config accepts the file`, { stderr: result.stderr })
  const service = (parseYaml(result.stdout ?? '') as { services?: Record<string, Record<string, unknown>> } | null)?.services?.['ecr-auth-proxy']
  t.equal(service?.image, TAG)
  t.match(service?.command, ['--registry-id', '600423610423'], 'defaults filled in')
  t.match(JSON.stringify(service?.ports), /127\.0\.0\.1/, 'published on loopback')
  t.match(JSON.stringify(service?.volumes), /\/home\/someone\/\.aws/, 'the ~/.aws mount resolved')
}

const compose1 = ['docker-compose']
t.test('docker-compose 1.29 (Debian) accepts docker-compose.yml', { skip: available([...compose1, 'version']) ? false : 'docker-compose is not installed (apt-get install docker-compose)' }, async (t) => {
  checkResolved(t, compose1)
})

const compose2 = ['docker', 'compose']
t.test('Compose v2 accepts docker-compose.yml', { skip: available([...compose2, 'version']) ? false : 'no docker compose plugin' }, async (t) => {
  checkResolved(t, compose2)
})

t.test('one image tag: README, Dockerfile, docker-compose.yml, scripts/test-image.sh', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const run = readme.split('\n').find((line) => line.startsWith('| docker |')) ?? ''
  t.match(run, new RegExp(`docker run .* ${TAG}\``), 'the README\'s docker run uses it')
  t.match(readme, `docker build -t ${TAG} .`, 'the README says how to build it')
  t.match(readme, 'bash scripts/build-base-image.sh', '… and how without Docker Hub')
  t.match(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'), `docker build -t ${TAG} .`)
  const compose = parseYaml(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, { image?: string }> }
  t.equal(compose.services['ecr-auth-proxy']?.image, TAG)
  t.match(readFileSync(join(ROOT, 'scripts', 'test-image.sh'), 'utf8'), `IMAGE=\${IMAGE:-${TAG}}`)
})
