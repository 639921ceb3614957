import { execFile } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import bcrypt from 'bcryptjs'
import t from 'tap'
import { request } from 'undici'
import { AuthenticatorBusyError, ClientAuthenticator } from '../../src/access/client-auth.js'
import { parseHtpasswd } from '../../src/access/htpasswd.js'
import { parseTokenFile } from '../../src/access/tokens.js'
import { startStack, type Stack } from '../helpers/stack.js'
import { logSink } from '../helpers/log-sink.js'
import { eventually, replaceFile, tempDir } from '../security/support.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const ALICE_PW = 'alice-Secret-Pw-1'
const BOB_PW = 'bob-Secret-Pw-2'
const TOKEN = 'tok_3f9a8c1d2e4b5a6f7081'
const TOKEN2 = 'tok_next_a1b2c3d4e5f60718'

function basic (user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
}

function htpasswdLine (user: string, password: string, cost = 4): string {
  return `${user}:${bcrypt.hashSync(password, cost).replace(/^\$2b\$/, '$2y$')}\n`
}

function thrown (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    return (err as Error).message
  }
  return 'nothing thrown'
}

async function call (stack: Stack, path: string, headers: Record<string, string> = {}) {
  const res = await request(`${stack.url}${path}`, { dispatcher: stack.client, headers })
  const body = await res.body.text()
  return { status: res.statusCode, headers: res.headers, body }
}

t.test('htpasswd and token files: bcrypt only, errors name lines, never secrets', async (t) => {
  const hash = bcrypt.hashSync('pw', 4)
  t.same([...parseHtpasswd(`# comment\n\nalice:${hash}\r\nbob:${hash.replace('$2b$', '$2y$')}\n`, 'f')], [['alice', hash], ['bob', hash.replace('$2b$', '$2y$')]])
  t.throws(() => parseHtpasswd('carol:$apr1$abcdefgh$0123456789abcdefghijkl\n', 'f'), /f line 1: the entry for "carol" is not a bcrypt hash; only bcrypt entries are accepted \(create them with htpasswd -B\)/)
  t.throws(() => parseHtpasswd('dave:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n', 'f'), /not a bcrypt hash/)
  t.notMatch(thrown(() => parseHtpasswd('erin:plaintext\n', 'f')), 'plaintext', 'the hash is never shown')
  t.throws(() => parseHtpasswd(`a:${hash}\na:${hash}\n`, 'f'), /f line 2: "a" appears more than once/)
  t.throws(() => parseHtpasswd('nocolon\n', 'f'), /expected user:bcrypt-hash/)
  t.same(parseTokenFile(`# ci\n${TOKEN}\n\n  ${TOKEN2}  \r\n`, 'f'), [TOKEN, TOKEN2])
  t.equal(thrown(() => parseTokenFile('shorty\n', 'f')), 'f line 1: the token is shorter than 16 characters', 'the token is never shown')
  t.throws(() => parseTokenFile('has a space in the middle\n', 'f'), /line 1: the token holds characters other than printable ASCII/)
  t.throws(() => new ClientAuthenticator({ tokens: ['tiny'], log: logSink().logger }), /bearer token 1 of ECR_PROXY_BEARER_TOKENS is shorter than 16 characters/)
  t.throws(() => new ClientAuthenticator({ htpasswdFile: '/nonexistent/htpasswd', log: logSink().logger }), /cannot read \/nonexistent\/htpasswd: ENOENT/, 'a missing file stops the start')
  t.equal(new ClientAuthenticator({ log: logSink().logger }).enabled, false, 'nothing configured: off')
})

t.test('the authenticator: constant-time tokens, bcrypt cached under a hash of the credential, bounded work', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'htpasswd')
  writeFileSync(file, htpasswdLine('alice', ALICE_PW, 9))
  let now = 1_000_000
  const auth = new ClientAuthenticator({ htpasswdFile: file, tokens: [TOKEN], log: logSink().logger, now: () => now, cacheTtlMs: 60_000 })
  t.teardown(() => auth.close())
  t.equal(auth.enabled, true)

  const first = process.hrtime.bigint()
  t.same(await auth.authenticate(basic('alice', ALICE_PW)), { kind: 'htpasswd', name: 'alice' })
  const bcryptNs = Number(process.hrtime.bigint() - first)
  const second = process.hrtime.bigint()
  t.same(await auth.authenticate(basic('alice', ALICE_PW)), { kind: 'htpasswd', name: 'alice' })
  const cachedNs = Number(process.hrtime.bigint() - second)
  t.ok(cachedNs * 10 < bcryptNs, `a cached verification (${cachedNs} ns) skips bcrypt (${bcryptNs} ns)`)
  now += 61_000
  const third = process.hrtime.bigint()
  await auth.authenticate(basic('alice', ALICE_PW))
  t.ok(Number(process.hrtime.bigint() - third) * 10 > bcryptNs, 'after the TTL bcrypt runs again')

  t.equal(await auth.authenticate(basic('alice', 'wrong')), undefined)
  t.equal(await auth.authenticate(basic('mallory', ALICE_PW)), undefined, 'unknown user')
  t.same(await auth.authenticate(`Bearer ${TOKEN}`), { kind: 'token', name: 'env:1' })
  t.same(await auth.authenticate(`bearer ${TOKEN}`), { kind: 'token', name: 'env:1' }, 'scheme is case-insensitive')
  t.same(await auth.authenticate(basic('anyone', TOKEN)), { kind: 'token', name: 'env:1' }, 'a token works as a docker login password')
  t.equal(await auth.authenticate(`Bearer ${TOKEN}x`), undefined)
  t.equal(await auth.authenticate(`Bearer ${TOKEN.slice(0, -1)}`), undefined)
  t.equal(await auth.authenticate('Digest abc'), undefined)
  t.equal(await auth.authenticate('Basic !!!notbase64'), undefined)
  t.equal(await auth.authenticate('Basic'), undefined)
  t.equal(await auth.authenticate(undefined), undefined)
  t.equal(await auth.authenticate(basic('alice', `${ALICE_PW}${'x'.repeat(80)}`)), undefined, 'bcrypt would only read 72 bytes: refused')

  // Verifications beyond the queue are refused instead of piling up.
  const busy = new ClientAuthenticator({ htpasswdFile: file, log: logSink().logger, maxConcurrentVerifications: 1, maxQueuedVerifications: 1 })
  const attempts = [1, 2, 3].map(async (i) => await busy.authenticate(basic('alice', `guess-${i}`)))
  const settled = await Promise.allSettled(attempts)
  t.same(settled.map((s) => s.status), ['fulfilled', 'fulfilled', 'rejected'])
  t.ok((settled[2] as PromiseRejectedResult).reason instanceof AuthenticatorBusyError)
})

t.test('client auth on the wire: 401 + challenge, htpasswd and tokens pass, credentials never forwarded, files reloaded', async (t) => {
  const dir = tempDir(t)
  const htpasswd = join(dir, 'htpasswd')
  const tokens = join(dir, 'tokens')
  writeFileSync(htpasswd, htpasswdLine('alice', ALICE_PW))
  writeFileSync(tokens, `# CI\n${TOKEN}\n`)
  const stack = await startStack(t, { argv: ['--htpasswd', htpasswd, '--bearer-tokens-file', tokens] })

  const anonymous = await call(stack, '/v2/')
  t.equal(anonymous.status, 401)
  t.equal(anonymous.headers['www-authenticate'], 'Basic realm="ecr-auth-proxy"')
  t.equal(anonymous.headers['docker-distribution-api-version'], 'registry/2.0')
  t.equal(JSON.parse(anonymous.body).errors[0].code, 'UNAUTHORIZED')
  const wrong = await call(stack, '/v2/team/app/tags/list', { authorization: basic('alice', 'nope') })
  t.equal(wrong.status, 401)
  t.equal(wrong.headers['www-authenticate'], 'Basic realm="ecr-auth-proxy"')
  t.equal((await call(stack, '/v2/', { authorization: `Bearer ${TOKEN}nope` })).status, 401)
  t.equal((await call(stack, '/nothing-here')).status, 401, 'unknown paths tell nothing before login')
  t.same(stack.upstreamRequests, [], 'nothing unauthenticated reached the registry')

  t.equal((await call(stack, '/healthz')).status, 200, '/healthz stays open')
  t.equal((await call(stack, '/readyz')).status, 200, '/readyz stays open')
  t.equal((await call(stack, '/metrics')).status, 401, '/metrics does not')

  t.equal((await call(stack, '/v2/', { authorization: basic('alice', ALICE_PW) })).status, 200, 'htpasswd Basic')
  t.equal((await call(stack, '/v2/', { authorization: `Bearer ${TOKEN}` })).status, 200, 'Bearer token')
  t.equal((await call(stack, '/v2/', { authorization: basic('ci', TOKEN) })).status, 200, 'token as a Basic password')
  const ecrToken = `Basic ${stack.authority.issued[0]?.authorizationToken ?? ''}`
  t.equal(stack.upstreamRequests.length, 3)
  for (const r of stack.upstreamRequests) t.equal(r.headers.authorization, ecrToken, 'the registry saw the ECR token, never the client credential')

  // htpasswd replaced: alice out, bob in. A bad version keeps the previous users.
  replaceFile(htpasswd, htpasswdLine('bob', BOB_PW))
  t.ok(await eventually(async () => (await call(stack, '/v2/', { authorization: basic('bob', BOB_PW) })).status === 200), 'bob admitted after the reload')
  t.equal((await call(stack, '/v2/', { authorization: basic('alice', ALICE_PW) })).status, 401, 'alice refused, cached verification dropped')
  replaceFile(htpasswd, 'bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n')
  t.ok(await eventually(() => stack.logs.text().includes('reloading client credentials failed')), 'a bad reload is logged')
  t.match(stack.logs.lines.find((l) => String(l.msg).includes('reloading client credentials failed')), { level: 50, msg: /not a bcrypt hash; only bcrypt entries are accepted/ })
  t.equal((await call(stack, '/v2/', { authorization: basic('bob', BOB_PW) })).status, 200, 'the previous users stay in force')

  replaceFile(tokens, `${TOKEN2}\n`)
  t.ok(await eventually(async () => (await call(stack, '/v2/', { authorization: `Bearer ${TOKEN2}` })).status === 200), 'new token admitted')
  t.equal((await call(stack, '/v2/', { authorization: `Bearer ${TOKEN}` })).status, 401, 'old token refused')

  const logs = stack.logs.text()
  for (const secret of [ALICE_PW, BOB_PW, TOKEN, TOKEN2, ...stack.authority.issued.map((i) => i.password)]) {
    t.notOk(logs.includes(secret), 'no credential in the logs')
  }
  t.match(stack.logs.lines.find((l) => l.msg === 'client authentication failed'), { scheme: 'Basic', level: 40 })
  t.ok(stack.logs.lines.some((l) => l.msg === 'request' && l.client === 'alice' && l.status === 200), 'the access log names the client')
  t.ok(stack.logs.lines.some((l) => l.msg === 'request' && l.client === 'bearer-tokens-file:1'), 'or the token by its source and line')
})

t.test('tokens from the environment', async (t) => {
  const { buildApp } = await import('../../src/app.js')
  const { loadConfig, parseCommandLine } = await import('../../src/config/index.js')
  const config = loadConfig(parseCommandLine(['--upstream', 'http://127.0.0.1:9']), { ECR_PROXY_BEARER_TOKENS: `${TOKEN}, ${TOKEN2}` })
  const built = await buildApp(config, { fetchToken: async () => ({ token: 'QVdTOng=', expiresAt: new Date(Date.now() + 3_600_000) }), logger: logSink().logger })
  t.teardown(() => built.app.close())
  t.equal((await built.app.inject({ url: '/v2/_catalog' })).statusCode, 401)
  const ok = await built.app.inject({ url: '/healthz', headers: { authorization: `Bearer ${TOKEN2}` } })
  t.equal(ok.statusCode, 200)
  t.throws(() => loadConfig(parseCommandLine(['--bearer-tokens', TOKEN]), {}), /Unknown option '--bearer-tokens'/, 'no flag takes a secret')
})

const skopeo = ['/usr/bin/skopeo', '/usr/local/bin/skopeo'].find((p) => existsSync(p))
t.test('skopeo logs in with --creds; without them it is told to authenticate', { skip: skopeo === undefined ? 'skopeo is not installed' : false }, async (t) => {
  const dir = tempDir(t)
  const htpasswd = join(dir, 'htpasswd')
  writeFileSync(htpasswd, htpasswdLine('alice', ALICE_PW))
  const stack = await startStack(t, { argv: ['--htpasswd', htpasswd] })
  const config = Buffer.from('{}')
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: stack.registry.putBlob('team/app', config), size: 2 }, layers: [] }))
  stack.registry.putManifest('team/app', '1.2', manifest, OCI_MANIFEST)
  const ref = `docker://${new URL(stack.url).host}/team/app`
  const run = promisify(execFile)
  const env = { PATH: process.env.PATH ?? '', HOME: dir, REGISTRY_AUTH_FILE: join(dir, 'auth.json') }
  const listed = await run(skopeo as string, ['list-tags', '--tls-verify=false', '--creds', `alice:${ALICE_PW}`, ref], { env })
  t.same(JSON.parse(listed.stdout).Tags, ['1.2'])
  const refused = await run(skopeo as string, ['list-tags', '--tls-verify=false', ref], { env }).then(() => undefined, (err: { stderr: string }) => err.stderr)
  t.match(refused, /authentication required|unauthorized/i)
})
