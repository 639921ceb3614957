import { execFileSync } from 'node:child_process'
import t from 'tap'
import { request } from 'undici'
import { CLI, startCli } from './helpers/cli-process.js'
import { startEcrApi } from './helpers/ecr-api.js'
import { startEcrRegistry } from './helpers/ecr-registry.js'
import { TokenAuthority } from './helpers/token-authority.js'

async function getJson (url: string): Promise<{ status: number, body: Record<string, unknown> }> {
  const res = await request(url)
  return { status: res.statusCode, body: await res.body.json() as Record<string, unknown> }
}

t.test('--help and --version', async (t) => {
  const help = execFileSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' })
  t.match(help, /^Usage: ecr-auth-proxy \[options\]/)
  t.match(help, '--registry-id')
  t.match(execFileSync(process.execPath, [CLI, '--version'], { encoding: 'utf8' }), /^\d+\.\d+\.\d+\n$/)
  t.equal(execFileSync(process.execPath, [CLI, '-h'], { encoding: 'utf8' }), help, '-h is --help')
  t.match(help, /^ {2}-h, --help /m, 'and says so')
  t.equal(execFileSync(process.execPath, [CLI, '-v'], { encoding: 'utf8' }), execFileSync(process.execPath, [CLI, '--version'], { encoding: 'utf8' }), '-v is --version')
  t.match(help, /^ {2}-v, --version /m)
})

t.test('a bad flag exits 2 with a message naming it', async (t) => {
  const proxy = await startCli(t, ['--port', 'eighty'], {})
  t.equal(await proxy.exited, 2)
  t.equal(proxy.stderr(), 'ecr-auth-proxy: invalid configuration: port (from --port) must be a number, got "eighty"\n')
})

t.test('a port already in use exits 1 and says so', async (t) => {
  const first = await startCli(t, ['--region', 'us-east-2'], {})
  await first.waitFor(/Server listening/)
  const port = new URL(first.url).port
  const second = await startCli(t, ['--region', 'us-east-2', '--port', port], {})
  t.equal(await second.exited, 1)
  t.match(second.stdout(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: listen EADDRINUSE`))
})

t.test('with no AWS credentials it stays up, not ready, and says what is missing', async (t) => {
  const proxy = await startCli(t, ['--region', 'us-east-2'], {})
  await proxy.waitFor(/ECR token refresh failed/)
  const line = proxy.stdout().split('\n').find((l) => l.includes('ECR token refresh failed')) ?? ''
  t.match(JSON.parse(line).msg, /^ECR token refresh failed: no AWS credentials found/)
  const ready = await getJson(`${proxy.url}/readyz`)
  t.equal(ready.status, 503)
  t.equal(ready.body.ready, false)
  const health = await getJson(`${proxy.url}/healthz`)
  t.equal(health.status, 200)
  const api = await getJson(`${proxy.url}/v2/`)
  t.equal(api.status, 503)
  t.match((api.body.errors as Array<{ message: string }>)[0]?.message, /no AWS credentials found/)
  t.equal(proxy.child.exitCode, null, 'still running')
  // On Node 20 the AWS SDK prints a 9-line NodeVersionSupportWarning at every start.
  const supported = Number(process.versions.node.split('.')[0]) >= 22
  t.equal(proxy.stderr(), '', 'a quiet start: nothing on stderr', { skip: supported ? false : `Node ${process.version} is not supported` })
})

t.test('the SDK endpoint setting, and the upstream from proxyEndpoint', async (t) => {
  const authority = new TokenAuthority()
  const registry = await startEcrRegistry({ authority })
  t.teardown(() => registry.close())
  const api = await startEcrApi({ authority, proxyEndpoint: registry.url })
  t.teardown(() => api.close())
  const proxy = await startCli(t, [], {
    AWS_ENDPOINT_URL_ECR: api.url,
    AWS_REGION: 'us-east-2',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'secret'
  })
  await proxy.waitFor(/ECR token refreshed/)
  const ready = await getJson(`${proxy.url}/readyz`)
  t.equal(ready.status, 200)
  t.match(ready.body, { ready: true, upstreams: [{ origin: registry.url, ready: true }] })
  t.notOk(JSON.stringify(ready.body).includes(authority.issued[0]?.authorizationToken ?? '-'), 'readyz never shows the token')
  const ping = await request(`${proxy.url}/v2/`)
  t.equal(ping.statusCode, 200)
  await ping.body.dump()
  t.match(api.calls[0]?.headers.authorization, /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/us-east-2\/ecr\/aws4_request/, 'signed by the real SDK')
  t.equal(registry.requests.at(-1)?.headers.authorization, `Basic ${authority.issued[0]?.authorizationToken ?? ''}`)
  for (const token of authority.issued) t.notOk(proxy.stdout().includes(token.password) || proxy.stderr().includes(token.password))

  proxy.child.kill('SIGTERM')
  t.equal(await proxy.exited, 0, 'SIGTERM shuts down cleanly')
  t.match(proxy.stdout(), /"msg":"shutting down"/)
})
