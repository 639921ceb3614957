/**
 * The first hour of a user, through the built CLI: configuration mistakes end in one line naming
 * the key and where it came from (exit 2); risky set-ups and unknown regions are warned about; the
 * start says where requests go; a fatal start-up error is the last thing printed.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { loadConfig, parseCommandLine } from '../src/config/index.js'
import { closestRegions, configWarnings, isKnownRegion } from '../src/config/warnings.js'
import { startCli } from './helpers/cli-process.js'

const dir = mkdtempSync(join(tmpdir(), 'ecr-proxy-startup-'))
const file = (name: string, text: string) => { const path = join(dir, name); writeFileSync(path, text); return path }
const load = (argv: string[], env: NodeJS.ProcessEnv = {}) => loadConfig(parseCommandLine(argv), env)

t.test('one coercion rule for file, environment and flags', async (t) => {
  const config = load(['--config', file('coerce.yaml', 'registryId: 600423610423\nregion: us-east-2\nport: "5001"\nfips: "yes"\nreadOnly: "no"\nrefresh: { fraction: "0.25" }\n')])
  t.equal(config.registries[0]?.registryId, '600423610423', 'an unquoted account id is read losslessly')
  t.equal(config.listener.port, 5001, 'a number in quotes is a number')
  t.equal(config.registries[0]?.fips, true, 'yes is true, in the file as in the environment')
  t.equal(config.access.readOnly, false)
  t.equal(config.credentials.refresh.fraction, 0.25)
  t.throws(() => load(['--config', file('zero.yaml', 'registryId: 012345678901\nregion: us-east-2\n')]), { message: /^invalid configuration: registryId \(from config file .*zero\.yaml\) must match \^\[0-9\]\{12\}\$, got "12345678901" \(the file gave a number: write it in quotes, so that no leading zero is lost\)$/ })
  t.throws(() => load(['--config', file('maybe.yaml', 'fips: maybe\n')]), { message: /^invalid configuration: fips \(from config file .*maybe\.yaml\) must be true or false \(or yes\/no, 1\/0\), got "maybe"$/ })
})

t.test('bounds in plain English; a negative number is a value, not a flag', async (t) => {
  t.throws(() => load(['--port', '99999']), { message: 'invalid configuration: port (from --port) must be a whole number, at least 0 and at most 65535, got 99999' })
  t.throws(() => load(['--port', '-1']), { message: 'invalid configuration: port (from --port) must be a whole number, at least 0 and at most 65535, got -1' })
  t.throws(() => load(['--refresh-fraction', '0']), { message: 'invalid configuration: refresh.fraction (from --refresh-fraction) must be a number, more than 0 and at most 0.9, got 0' })
})

t.test('unusable files and a missing region: one line naming the setting, exit 2', async (t) => {
  const empty = file('empty.htpasswd', '')
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--htpasswd', join(dir, 'missing.htpasswd')], {}, /^ecr-auth-proxy: invalid configuration: htpasswd \(from --htpasswd\): cannot read .*missing\.htpasswd: ENOENT \(no such file\)\n$/],
    [['--htpasswd', empty], {}, /^ecr-auth-proxy: invalid configuration: htpasswd \(from --htpasswd\): .*empty\.htpasswd has no entries: every client would be locked out \(add one with htpasswd -B\)\n$/],
    [[], { ECR_PROXY_BEARER_TOKENS_FILE: dir }, /^ecr-auth-proxy: invalid configuration: bearerTokensFile \(from ECR_PROXY_BEARER_TOKENS_FILE\): cannot read .*: EISDIR \(a directory, not a file\)\n$/],
    [['--tls-cert', join(dir, 'missing.crt'), '--tls-key', join(dir, 'missing.key')], {}, /^ecr-auth-proxy: invalid configuration: tlsCert \(from --tls-cert\): cannot read the TLS certificate or key: ENOENT/],
    [['--registry-id', '600423610423'], {}, /(?:^|\n)ecr-auth-proxy: invalid configuration: registryId \(from --registry-id\): needs a region: set --region, ECR_PROXY_REGION or AWS_REGION\n$/]
  ]
  for (const [args, env, expected] of cases) {
    const proxy = await startCli(t, args, env)
    t.equal(await proxy.exited, 2, args.join(' ') || JSON.stringify(env))
    t.match(proxy.stderr(), expected)
    t.equal(proxy.stdout(), '', 'no JSON fatal line')
  }
})

t.test('warnings for an unknown region and risky set-ups', async (t) => {
  t.ok(isKnownRegion('us-east-2'))
  t.notOk(isKnownRegion('us-esat-2'))
  t.same(closestRegions('us-esat-2'), ['us-east-2'])
  t.same(closestRegions('eu-west-11'), ['eu-west-1'])
  t.same(configWarnings(load(['--region', 'us-esat-2'])), ['region (from --region): "us-esat-2" is not a region the AWS SDK knows; did you mean us-east-2?'])
  t.same(configWarnings(load(['--region', 'us-east-2'])), [])
  t.match(configWarnings(load(['--host', '0.0.0.0', '--allow-unauthenticated'])), [/^listening on 0\.0\.0\.0 without client authentication/])
  const htpasswd = file('one.htpasswd', 'alice:$2y$05$abcdefghijklmnopqrstuuJ6d3Ar6s9Z8QHbWUXGO5nnC3NGDb7Ce\n')
  t.match(configWarnings(load(['--host', '0.0.0.0', '--htpasswd', htpasswd])), [/^client passwords and tokens are accepted over plain HTTP on 0\.0\.0\.0/])
  t.same(configWarnings(load(['--htpasswd', htpasswd])), [], 'on loopback: no warning')
})

t.test('the start says where requests go; refused-for-no-token requests keep their kind', async (t) => {
  const proxy = await startCli(t, ['--registry', '600423610423.dkr.ecr.us-east-2.amazonaws.com=prod'], {})
  await proxy.waitFor(/"msg":"forwarding /)
  const line = JSON.parse(proxy.stdout().split('\n').find((l) => l.includes('"msg":"forwarding ')) ?? '{}') as Record<string, unknown>
  t.equal(line.level, 30, 'at info')
  t.equal(line.msg, `forwarding ${proxy.url} to https://600423610423.dkr.ecr.us-east-2.amazonaws.com`)
  t.same(line.registries, [{ registry: '600423610423.dkr.ecr.us-east-2.amazonaws.com', origin: 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com', alias: 'prod', default: true, credential: 'ecr:us-east-2' }])
  await proxy.waitFor(/ECR token refresh failed/)
  const res = await request(`${proxy.url}/v2/team/app/manifests/1.2`)
  t.equal(res.statusCode, 503)
  await res.body.dump()
  await proxy.waitFor(/"msg":"request"/)
  const logged = JSON.parse(proxy.stdout().split('\n').find((l) => l.includes('"msg":"request"')) ?? '{}') as Record<string, unknown>
  t.match(logged, { kind: 'manifest', repository: 'team/app', registry: '600423610423.dkr.ecr.us-east-2.amazonaws.com', status: 503 })
  const metrics = await (await request(`${proxy.url}/metrics`)).body.text()
  t.match(metrics, /ecr_proxy_requests_total\{method="GET",kind="manifest",status="503",registry="600423610423\.dkr\.ecr\.us-east-2\.amazonaws\.com"\} 1/)
})

t.test('a fatal start-up error is the last thing printed', async (t) => {
  const first = await startCli(t, ['--region', 'us-east-2'], {})
  await first.waitFor(/Server listening/)
  const port = new URL(first.url).port
  const second = await startCli(t, ['--region', 'us-east-2', '--port', port], {})
  t.equal(await second.exited, 1)
  const lines = second.stdout().trim().split('\n')
  t.match(JSON.parse(lines.at(-1) ?? '{}'), { level: 60, msg: new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`) }, 'nothing after the cause')
  t.notOk(second.stdout().includes('ECR token refresh failed'), 'no token error to mislead')
})

t.test('--docker-hub-mirror-port: its address at start; a port in use is fatal, named as that setting', async (t) => {
  const args = ['--registry', '600423610423.dkr.ecr.us-east-2.amazonaws.com=prod', '--mirror', 'docker.io=prod/docker-hub']
  const first = await startCli(t, [...args, '--docker-hub-mirror-port', '0'], {})
  await first.waitFor(/"msg":"serving Docker Hub's mirror/)
  const line = JSON.parse(first.stdout().split('\n').find((l) => l.includes('"dockerHubMirror"')) ?? '{}') as Record<string, unknown>
  const hub = String(line.dockerHubMirror)
  t.match(hub, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.not(hub, first.url)
  t.equal(line.msg, `serving Docker Hub's mirror (docker.io) on ${hub}: daemon.json "registry-mirrors": ["${hub}"]`)
  const ping = await request(`${hub}/v2/`)
  t.equal(ping.statusCode, 503, 'served by the proxy: the registry has no token yet')
  t.match(await ping.body.json(), { errors: [{ code: 'UNAVAILABLE' }] })

  const port = new URL(hub).port
  const second = await startCli(t, [...args, '--port', '0', '--docker-hub-mirror-port', port], {})
  t.equal(await second.exited, 1)
  const lines = second.stdout().trim().split('\n')
  t.match(JSON.parse(lines.at(-1) ?? '{}'), { level: 60, msg: new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port} \\(--docker-hub-mirror-port\\): listen EADDRINUSE`) }, 'nothing after the cause')
})
