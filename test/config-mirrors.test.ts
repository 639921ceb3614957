import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { helpText, loadConfig, parseCommandLine } from '../src/config/index.js'

const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadConfig(parseCommandLine(argv), env)
const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const EU = '600423610423.dkr.ecr.eu-west-1.amazonaws.com'

function configFile (lines: string[]): string {
  const file = join(mkdtempSync(join(tmpdir(), 'ecr-proxy-mirrors-')), 'proxy.yaml')
  writeFileSync(file, lines.join('\n') + '\n')
  return file
}

t.test('mirrors from the file, --mirror and ECR_PROXY_MIRRORS; a flag replaces the file\'s mapping', async (t) => {
  const file = configFile([
    'registries:',
    `  - { registry: ${PROD}, alias: prod }`,
    `  - { registry: ${EU} }`,
    'mirrors:',
    '  docker.io: { registry: prod, prefix: docker-hub }',
    `  registry.k8s.io: { registry: ${EU}, prefix: k8s }`
  ])
  t.same(load(['--config', file]).mirrors, { 'docker.io': { registry: 'prod', prefix: 'docker-hub' }, 'registry.k8s.io': { registry: EU, prefix: 'k8s' } })
  t.same(load(['--config', file, '--mirror', 'quay.io=prod/caches/quay']).mirrors, { 'quay.io': { registry: 'prod', prefix: 'caches/quay' } })
  t.same(load(['--registry', `${PROD}=prod`, '--mirror', 'Docker.io=prod/docker-hub', '--mirror', `ghcr.io=${PROD}/ghcr`]).mirrors, { 'docker.io': { registry: 'prod', prefix: 'docker-hub' }, 'ghcr.io': { registry: PROD, prefix: 'ghcr' } })
  t.same(load([], { ECR_PROXY_REGISTRIES: `${PROD}=prod`, ECR_PROXY_MIRRORS: 'docker.io=prod/docker-hub, registry.k8s.io=prod/k8s' }).mirrors, { 'docker.io': { registry: 'prod', prefix: 'docker-hub' }, 'registry.k8s.io': { registry: 'prod', prefix: 'k8s' } })
  t.same(load([]).mirrors, {}, 'none by default')
})

t.test('each mistake in a mirror names the key, where it came from and the value', async (t) => {
  t.throws(() => load(['--registry', `${PROD}=prod`, '--mirror', 'docker.io']), { message: 'invalid configuration: mirrors (from --mirror) must be HOST=REGISTRY/PREFIX (e.g. docker.io=prod/docker-hub), got "docker.io"' })
  t.throws(() => load(['--registry', `${PROD}=prod`, '--mirror', 'docker.io=prod']), { message: /^invalid configuration: mirrors \(from --mirror\) must be HOST=REGISTRY\/PREFIX/ })
  t.throws(() => load(['--registry', `${PROD}=prod`, '--mirror', 'docker.io=staging/docker-hub']), { message: `invalid configuration: mirrors.docker.io.registry (from --mirror) names no configured registry (one of ${PROD}, prod), got "staging"` })
  t.throws(() => load(['--registry', `${PROD}=prod`, '--mirror', 'docker.io=prod/Docker-Hub']), { message: /^invalid configuration: mirrors\.docker\.io\.prefix \(from --mirror\) must match .*, got "Docker-Hub"$/ })
  t.throws(() => load(['--registry', `${PROD}=prod`], { ECR_PROXY_MIRRORS: 'docker.io=prod/hub,index.docker.io=prod/hub2' }), { message: 'invalid configuration: mirrors.index.docker.io (from ECR_PROXY_MIRRORS) names the same registry as mirrors.docker.io (docker.io)' })
  t.throws(() => load(['--registry', `${PROD}=prod`, '--mirror', 'nginx=prod/hub']), { message: 'invalid configuration: mirrors.nginx (from --mirror) is not a registry hostname (lower case, e.g. docker.io or registry.k8s.io), got "nginx"' })
  t.throws(() => load(['--registry', `${PROD}=prod`, '--mirror', `${PROD}=prod/hub`]), { message: /^invalid configuration: mirrors\.600423610423\.dkr\.ecr\.us-east-2\.amazonaws\.com \(from --mirror\) is a configured registry itself/ })
  const file = configFile([`registries: [{ registry: ${PROD} }]`, 'mirrors:', '  docker.io: { registry: prod, prefix: hub, rule: x }'])
  t.throws(() => load(['--config', file]), { message: `invalid configuration: mirrors.docker.io.rule (from config file ${file}) is not a known setting (see --help), got "x"` })
  const noRegistry = configFile([`registries: [{ registry: ${PROD} }]`, 'mirrors:', '  docker.io: { prefix: hub }'])
  t.throws(() => load(['--config', noRegistry]), { message: /^invalid configuration: mirrors\.docker\.io\.registry \(from config file .*\) / })
  t.throws(() => load(['--mirror', 'docker.io=prod/hub']), { message: 'invalid configuration: mirrors.docker.io.registry (from --mirror) names no configured registry (name the registry by hostname in registries), got "prod"' })
})

t.test('--help documents --mirror', async (t) => {
  t.match(helpText(), /--mirror HOST=REGISTRY\/PREFIX\s+ECR_PROXY_MIRRORS\s+serve a public registry/)
  t.match(helpText(), /\[config: mirrors\.<host>\.registry, mirrors\.<host>\.prefix\]/)
})

t.test('public.ecr.aws is a registry of its own kind: no region or account; anonymous only there', async (t) => {
  const config = load(['--registry', 'public.ecr.aws=pub', '--registry', `${PROD}=prod`, '--mirror', 'docker.io=prod/docker-hub'])
  t.same(config.registries.map((r) => [r.registry, r.alias]), [['public.ecr.aws', 'pub'], [PROD, 'prod']])
  const file = configFile(['registries:', '  - { registry: public.ecr.aws, anonymous: "yes" }'])
  t.equal(load(['--config', file]).registries[0]?.anonymous, true, 'the one coercion rule applies')
  const region = configFile(['registries:', '  - { registry: public.ecr.aws, region: eu-west-1 }'])
  t.throws(() => load(['--config', region]), { message: /^invalid configuration: registries\.0\.region \(from config file .*\) does not apply to public\.ecr\.aws \(ECR Public's API is in us-east-1 only\), got "eu-west-1"$/ })
  const fips = configFile(['registries:', '  - { registry: public.ecr.aws, fips: true }'])
  t.throws(() => load(['--config', fips]), { message: /^invalid configuration: registries\.0\.fips .* does not apply to public\.ecr\.aws$/ })
  const anonymous = configFile(['registries:', `  - { registry: ${PROD}, anonymous: true }`])
  t.throws(() => load(['--config', anonymous]), { message: /^invalid configuration: registries\.0\.anonymous .* applies to public\.ecr\.aws only$/ })
})
