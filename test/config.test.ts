import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, helpText, loadConfig, parseCommandLine, SETTINGS } from '../src/config/index.js'

const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadConfig(parseCommandLine(argv), env)

function configFile (name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ecr-proxy-config-'))
  const file = join(dir, name)
  writeFileSync(file, text)
  return file
}

t.test('defaults listen on loopback port 5000', async (t) => {
  const config = load([])
  t.equal(config.listener.host, '127.0.0.1')
  t.equal(config.listener.port, 5000)
  t.equal(config.log.level, 'info')
  t.same(config.credentials.refresh, { fraction: 0.5, minRetrySeconds: 1, maxRetrySeconds: 60, rejectedIntervalSeconds: 10 })
  t.equal(config.registries[0]?.fips, false)
  t.equal(config.registries[0]?.registryId, undefined)
})

t.test('precedence: flag > environment > file > default', async (t) => {
  const file = configFile('proxy.yaml', 'port: 7000\nregion: us-east-2\nregistryId: "600423610423"\nrefresh:\n  fraction: 0.25\n')
  t.equal(load(['--config', file]).listener.port, 7000)
  t.equal(load(['--config', file], { ECR_PROXY_PORT: '7001' }).listener.port, 7001)
  t.equal(load(['--config', file, '--port', '7002'], { ECR_PROXY_PORT: '7001' }).listener.port, 7002)
  const config = load([], { ECR_PROXY_CONFIG: file, ECR_PROXY_REFRESH_MAX_RETRY_SECONDS: '30' })
  t.equal(config.registries[0]?.region, 'us-east-2')
  t.equal(config.registries[0]?.registryId, '600423610423')
  t.same(config.credentials.refresh, { fraction: 0.25, minRetrySeconds: 1, maxRetrySeconds: 30, rejectedIntervalSeconds: 10 })
})

t.test('JSON config files are read too', async (t) => {
  const file = configFile('proxy.json', JSON.stringify({ host: '::1', logLevel: 'debug', dualStack: true }))
  const config = load(['--config', file])
  t.equal(config.listener.host, '::1')
  t.equal(config.log.level, 'debug')
  t.equal(config.registries[0]?.dualStack, true)
})

t.test('boolean flags and env values', async (t) => {
  t.equal(load(['--fips']).registries[0]?.fips, true)
  t.equal(load([], { ECR_PROXY_FIPS: 'true' }).registries[0]?.fips, true)
  t.equal(load([], { ECR_PROXY_FIPS: '0' }).registries[0]?.fips, false)
  t.throws(() => load([], { ECR_PROXY_FIPS: 'maybe' }), { message: 'invalid configuration: fips (from ECR_PROXY_FIPS) must be true or false (or yes/no, 1/0), got "maybe"' })
})

t.test('bad values name the key, the source and the value', async (t) => {
  t.throws(() => load(['--port', 'abc']), new ConfigError('invalid configuration: port (from --port) must be a number, got "abc"'))
  t.throws(() => load(['--port', '70000']), { message: /^invalid configuration: port \(from --port\) .*70000$/ })
  t.throws(() => load(['--log-level', 'loud']), { message: 'invalid configuration: logLevel (from --log-level) must be one of fatal, error, warn, info, debug, trace, silent, got "loud"' })
  t.throws(() => load([], { ECR_PROXY_REGISTRY_ID: '1234' }), { message: 'invalid configuration: registryId (from ECR_PROXY_REGISTRY_ID) must match ^[0-9]{12}$, got "1234"' })
  t.throws(() => load(['--upstream', 'ftp://registry.example']), { message: /^invalid configuration: upstream \(from --upstream\) must match/ })
  t.throws(() => load(['--upstream', 'https://user:pw@registry.example']), { message: /upstream/ })
  const file = configFile('bad.yaml', 'port: 5000\nlisten: 1\n')
  t.throws(() => load(['--config', file]), { message: `invalid configuration: listen (from config file ${file}) is not a known setting (see --help), got 1` })
  const nested = configFile('nested.yaml', 'refresh:\n  fraction: 2\n')
  t.throws(() => load(['--config', nested]), { message: /^invalid configuration: refresh\.fraction \(from config file .*nested\.yaml\) .*got 2$/ })
})

t.test('unreadable or malformed files and unknown flags are clear errors', async (t) => {
  t.throws(() => load(['--config', '/nonexistent/proxy.yaml']), { name: 'ConfigError', message: /^cannot read config file \/nonexistent\/proxy\.yaml/ })
  t.throws(() => load(['--config', configFile('list.yaml', '- a\n- b\n')]), { message: /must hold a mapping/ })
  t.throws(() => load(['--config', configFile('broken.yaml', 'port: [\n')]), { message: /is not valid YAML or JSON/ })
  t.throws(() => parseCommandLine(['--listen', 'x']), { name: 'ConfigError', message: /Unknown option '--listen'.*see --help/ })
  t.throws(() => parseCommandLine(['serve']), { name: 'ConfigError' })
})

t.test('--help lists every flag with its environment variable and config key', async (t) => {
  const help = helpText()
  for (const s of SETTINGS) {
    t.match(help, `--${s.flag}`)
    t.match(help, s.env)
    t.match(help, `[config: ${s.key}]`)
  }
  t.match(help, 'ECR_PROXY_CONFIG')
  t.match(help, 'AWS_ENDPOINT_URL_ECR')
})

t.test('the example configs in config/ are valid', async (t) => {
  for (const name of ['ecr-auth-proxy.yaml', 'ecr-auth-proxy.json']) {
    const config = load(['--config', join(import.meta.dirname, '..', 'config', name)])
    t.equal(config.registries[0]?.registryId, '600423610423', name)
    t.equal(config.registries[0]?.region, 'us-east-2', name)
  }
})

t.test('sectioned config files, with the flat keys of earlier releases mapped into them', async (t) => {
  const sectioned = configFile('sections.yaml', [
    'listener: { host: "::1", port: 7100, shutdownGraceSeconds: 5 }',
    'access: { readOnly: true, allowRepositories: [team/*] }',
    'registries:',
    '  - registryId: "600423610423"',
    '    region: eu-west-1',
    '    dualStack: true',
    'credentials: { refresh: { fraction: 0.3 } }',
    'forwarding: { headersTimeoutSeconds: 60, redirects: follow }',
    'log: { level: warn }',
    ''
  ].join('\n'))
  const config = load(['--config', sectioned])
  t.same(config.listener, { host: '::1', port: 7100, shutdownGraceSeconds: 5, maxConnections: 1024, headerTimeoutSeconds: 20, idleTimeoutSeconds: 300, keepAliveTimeoutSeconds: 72 })
  t.same(config.access, { allowUnauthenticated: false, readOnly: true, allowRepositories: ['team/*'], denyRepositories: [] })
  t.same(config.registries, [{ registryId: '600423610423', region: 'eu-west-1', dualStack: true, fips: false }])
  t.equal(config.credentials.refresh.fraction, 0.3)
  t.same(config.forwarding, { connectTimeoutSeconds: 10, headersTimeoutSeconds: 60, bodyTimeoutSeconds: 300, redirects: 'follow' })
  t.equal(config.log.level, 'warn')
  // Flags address the same places: --region is the first registry's.
  t.equal(load(['--config', sectioned, '--region', 'us-east-2']).registries[0]?.region, 'us-east-2')
  t.equal(load(['--config', sectioned], { ECR_PROXY_PORT: '7200' }).listener.port, 7200)

  const flat = configFile('flat.yaml', 'host: 127.0.0.2\nupstreamBodyTimeoutSeconds: 0\nreadOnly: true\nregion: us-west-2\n')
  const mapped = load(['--config', flat])
  t.equal(mapped.listener.host, '127.0.0.2')
  t.equal(mapped.forwarding.bodyTimeoutSeconds, 0)
  t.equal(mapped.access.readOnly, true)
  t.same(mapped.registries, [{ region: 'us-west-2', fips: false, dualStack: false }])
})

t.test('errors name the key as its source spelled it', async (t) => {
  const sectioned = configFile('bad-sections.yaml', 'listener: { port: 70000 }\n')
  t.throws(() => load(['--config', sectioned]), { message: `invalid configuration: listener.port (from config file ${sectioned}) must be a whole number, at least 0 and at most 65535, got 70000` })
  const registry = configFile('bad-registry.yaml', 'registries: [{ registryId: "12" }]\n')
  t.throws(() => load(['--config', registry]), { message: `invalid configuration: registries.0.registryId (from config file ${registry}) must match ^[0-9]{12}$, got "12"` })
  const unknown = configFile('unknown-key.yaml', 'registries: [{ account: "1" }]\n')
  t.throws(() => load(['--config', unknown]), { message: /^invalid configuration: registries\.0\.account \(from config file .*\) is not a known setting/ })
  t.throws(() => load(['--upstream-body-timeout-seconds=-1']), { message: /^invalid configuration: upstreamBodyTimeoutSeconds \(from --upstream-body-timeout-seconds\) must be/ })
  const two = configFile('two.yaml', 'registries: [{ region: us-east-2 }, { region: eu-west-1 }]\n')
  t.throws(() => load(['--config', two]), { message: /^invalid configuration: registries\.0\.registry \(from config file .*\) is needed when several registries are configured/ }, 'several registries are each named')
})

t.test('several registries: by hostname or account and region, from a file, flags or the environment', async (t) => {
  const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
  const EU = '600423610423.dkr.ecr.eu-west-1.amazonaws.com'
  t.same(load(['--registry', `${PROD}=prod`, '--registry', EU]).registries, [
    { registry: PROD, alias: 'prod', fips: false, dualStack: false },
    { registry: EU, fips: false, dualStack: false }
  ])
  t.same(load([], { ECR_PROXY_REGISTRIES: `${PROD}=prod, ${EU}` }).registries.map((r) => r.registry), [PROD, EU])
  t.equal(load(['--any-ecr-registry']).anyEcrRegistry, true)
  for (const host of ['600423610423.dkr.ecr-fips.us-gov-west-1.amazonaws.com', '600423610423.dkr-ecr.eu-west-1.on.aws', '600423610423.dkr.ecr.cn-north-1.amazonaws.com.cn', '600423610423.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn']) {
    t.equal(load(['--registry', host]).registries[0]?.registry, host, `${host} is an ECR hostname`)
  }
  const file = configFile('several.yaml', [
    'registries:',
    `  - { registry: ${PROD}, alias: prod, default: true, profile: prod }`,
    '  - { registryId: "111122223333", region: eu-west-1, roleArn: "arn:aws:iam::111122223333:role/puller", externalId: xyz }',
    ''
  ].join('\n'))
  const config = load(['--config', file])
  t.equal(config.registries.length, 2)
  t.equal(config.registries[1]?.roleArn, 'arn:aws:iam::111122223333:role/puller')
})

t.test('several registries: each mistake names the entry and the key', async (t) => {
  const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
  const bad = (name: string, lines: string[]) => {
    const file = configFile(name, ['registries:', ...lines, ''].join('\n'))
    return () => load(['--config', file])
  }
  t.throws(bad('dup.yaml', [`  - { registry: ${PROD} }`, '  - { registryId: "600423610423", region: us-east-2 }']), { message: /^invalid configuration: registries\.1\.registryId \(from config file .*\) names the same registry as registries\[0\] \(600423610423\.dkr\.ecr\.us-east-2\.amazonaws\.com\)$/ })
  t.throws(bad('defaults.yaml', [`  - { registry: ${PROD}, default: true }`, '  - { registry: 111122223333.dkr.ecr.us-east-2.amazonaws.com, default: true }']), { message: /^invalid configuration: registries\.1\.default \(from .*\) is also set on registries\[0\]: one default registry at most$/ })
  t.throws(bad('aliases.yaml', [`  - { registry: ${PROD}, alias: prod }`, '  - { registry: 111122223333.dkr.ecr.us-east-2.amazonaws.com, alias: prod }']), { message: /^invalid configuration: registries\.1\.alias \(from .*\) is also the alias of registries\[0\], got "prod"$/ })
  t.throws(bad('alias-host.yaml', [`  - { registry: ${PROD}, alias: "${PROD}" }`]), { message: /^invalid configuration: registries\.0\.alias \(from .*\) must match/ }, 'an alias can never be a hostname: no dots')
  t.throws(bad('not-ecr.yaml', ['  - { registry: registry.example.com }']), { message: /^invalid configuration: registries\.0\.registry \(from .*\) is not an ECR registry hostname .*, got "registry\.example\.com"$/ })
  t.throws(bad('contradiction.yaml', [`  - { registry: ${PROD}, region: eu-west-1 }`]), { message: /^invalid configuration: registries\.0\.region \(from .*\) contradicts the hostname 600423610423\.dkr\.ecr\.us-east-2\.amazonaws\.com, got "eu-west-1"$/ })
  t.throws(bad('anonymous.yaml', [`  - { registry: ${PROD} }`, '  - { region: eu-west-1 }']), { message: /^invalid configuration: registries\.1\.registry \(from .*\) is needed when several registries are configured/ })
  t.throws(bad('role.yaml', ['  - { registry: ' + PROD + ', roleArn: "arn:aws:iam::1:role/x" }']), { message: /^invalid configuration: registries\.0\.roleArn .* must match/ })
  t.throws(() => load(['--registry', 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com']), { message: /^invalid configuration: registries\.0\.registry \(from --registry\) must match/ })
  t.throws(() => load(['--registry', `${PROD}=prod`, '--registry', `${PROD}=other`]), { message: /^invalid configuration: registries\.1\.registry \(from --registry\) names the same registry as registries\[0\]/ })
})
