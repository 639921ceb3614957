import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { ConfigError, loadConfig, parseCommandLine } from '../../src/config/index.js'
import { exposureRefusal, isLoopbackAddress } from '../../src/http/exposure.js'
import { CLI, startCli } from '../helpers/cli-process.js'
import { selfSigned, tempDir } from './support.js'

/** Documentation address (RFC 5737): on no interface here, so binding it fails and sends nothing. */
const NOT_LOOPBACK = '192.0.2.1'

t.test('what counts as loopback', async (t) => {
  for (const address of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1']) t.ok(isLoopbackAddress(address), address)
  for (const address of ['0.0.0.0', '::', '10.0.0.1', '192.0.2.1', '::ffff:10.0.0.1', 'fe80::1', 'localhost', '128.0.0.1']) t.notOk(isLoopbackAddress(address), address)

  const settings = { allowUnauthenticated: false }
  t.equal(await exposureRefusal({ ...settings, host: '127.0.0.1' }), undefined)
  t.equal(await exposureRefusal({ ...settings, host: '::1' }), undefined)
  t.equal(await exposureRefusal({ ...settings, host: 'box' }, async () => ['127.0.0.1', '::1']), undefined, 'a name resolving only to loopback')
  t.match(await exposureRefusal({ ...settings, host: 'box' }, async () => ['127.0.0.1', '10.1.2.3']), /^refusing to listen on box/, 'a name with one non-loopback address')
  t.match(await exposureRefusal({ ...settings, host: 'box' }, async () => { throw new Error('ENOTFOUND') }), /^refusing/, 'an unresolvable name')
  t.match(await exposureRefusal({ ...settings, host: '0.0.0.0' }), /^refusing to listen on 0\.0\.0\.0 without client authentication/)
  t.match(await exposureRefusal({ ...settings, host: '::' }), /^refusing/)
  t.equal(await exposureRefusal({ ...settings, host: '0.0.0.0', htpasswd: '/f' }), undefined)
  t.equal(await exposureRefusal({ ...settings, host: '0.0.0.0', bearerTokensFile: '/f' }), undefined)
  t.equal(await exposureRefusal({ ...settings, host: '0.0.0.0', bearerTokens: ['x'.repeat(16)] }), undefined)
  t.equal(await exposureRefusal({ host: '0.0.0.0', allowUnauthenticated: true }), undefined)
  t.equal(await exposureRefusal({ ...settings, host: 'localhost' }), undefined, 'localhost through the system resolver')
})

t.test('the CLI refuses a non-loopback listener without client auth, and says how to fix it', async (t) => {
  const dir = tempDir(t)
  const { cert, key } = selfSigned('x')
  writeFileSync(join(dir, 'c.pem'), cert)
  writeFileSync(join(dir, 'k.pem'), key)
  for (const args of [['--host', NOT_LOOPBACK], ['--host', '0.0.0.0'], ['--host', '::'], ['--host', '0.0.0.0', '--tls-cert', join(dir, 'c.pem'), '--tls-key', join(dir, 'k.pem')]]) {
    const proxy = await startCli(t, ['--region', 'us-east-2', ...args], {})
    t.equal(await proxy.exited, 2, `${args.join(' ')}: exit 2`)
    const message = proxy.stderr()
    t.match(message, new RegExp(`^ecr-auth-proxy: refusing to listen on ${args[1] as string} without client authentication`))
    t.match(message, /--htpasswd FILE/)
    t.match(message, /--bearer-tokens-file FILE/)
    t.match(message, /--allow-unauthenticated/)
    t.equal(proxy.stdout(), '', 'refused before anything started')
  }

  // Accepting the risk (flag or environment), or turning client auth on, passes the rule: the
  // proxy goes on to bind, which fails here only because the address is on no interface.
  writeFileSync(join(dir, 'tokens'), 'exposure-token-0123456789\n')
  const passing: Array<[string[], Record<string, string>]> = [
    [['--allow-unauthenticated'], {}],
    [[], { ECR_PROXY_ALLOW_UNAUTHENTICATED: 'true' }],
    [['--bearer-tokens-file', join(dir, 'tokens')], {}],
    [[], { ECR_PROXY_BEARER_TOKENS: 'exposure-token-0123456789' }]
  ]
  for (const [args, env] of passing) {
    const proxy = await startCli(t, ['--region', 'us-east-2', '--host', NOT_LOOPBACK, ...args], env)
    await proxy.waitFor(new RegExp(`cannot listen on ${NOT_LOOPBACK.replace(/\./g, '\\.')}`))
    t.notMatch(proxy.stderr(), /refusing/, `${args.join(' ')} ${Object.keys(env).join(' ')}: past the exposure rule`)
    proxy.child.kill('SIGKILL')
  }

  const local = await startCli(t, ['--region', 'us-east-2', '--host', 'localhost'], {})
  await local.waitFor(/Server listening/)
  const health = await request(`${local.url}/healthz`)
  t.equal(health.statusCode, 200, 'localhost (loopback only) starts without client auth')
  await health.body.dump()
})

t.test('no flag takes a secret; --help lists every new setting', async (t) => {
  const help = execFileSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' })
  for (const flag of ['--allow-unauthenticated', '--htpasswd VALUE', '--bearer-tokens-file VALUE', '--read-only', '--allow-repositories LIST',
    '--deny-repositories LIST', '--redirects VALUE', '--redirect-allowed-hosts LIST', '--tls-cert VALUE', '--tls-key VALUE', '--max-connections N',
    '--header-timeout-seconds N', '--idle-timeout-seconds N', '--keep-alive-timeout-seconds N', '--upstream-connect-timeout-seconds N',
    '--upstream-headers-timeout-seconds N', '--upstream-body-timeout-seconds N']) {
    t.ok(help.includes(flag), flag)
  }
  t.match(help, /\(no flag\)\s+ECR_PROXY_BEARER_TOKENS/)
  t.notMatch(help, /--bearer-tokens /)
  t.throws(() => parseCommandLine(['--bearer-tokens', 'abcdefghijklmnopqrstuvwxyz']), /Unknown option '--bearer-tokens'/)

  // A bad secret value is reported without the value.
  const dir = tempDir(t)
  const file = join(dir, 'config.yaml')
  writeFileSync(file, 'bearerTokens: supersecretvalue-0123456789\n')
  let message = ''
  try {
    loadConfig(parseCommandLine(['--config', file]), {})
  } catch (err) {
    t.ok(err instanceof ConfigError)
    message = (err as Error).message
  }
  t.match(message, /^invalid configuration: bearerTokens \(from config file .*\) must be a list$/)
  t.notMatch(message, /supersecretvalue/)
})
