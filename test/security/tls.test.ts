import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect as connectTls } from 'node:tls'
import t from 'tap'
import { Agent, request } from 'undici'
import { startStack } from '../helpers/stack.js'
import { eventually, rawExchange, replaceFile, selfSigned, tempDir } from './support.js'

/** The CN of the certificate a new TLS connection is served. */
async function servedCn (origin: string, ca: Buffer[]): Promise<string> {
  const url = new URL(origin)
  return await new Promise((resolve, reject) => {
    const socket = connectTls({ host: url.hostname, port: Number(url.port), ca, servername: 'localhost' }, () => {
      const cn = socket.getPeerCertificate().subject?.CN
      socket.end()
      resolve(String(cn))
    })
    socket.on('error', reject)
  })
}

t.test('the TLS listener serves the registry API and reloads a changed certificate', async (t) => {
  const dir = tempDir(t)
  const certFile = join(dir, 'tls.crt')
  const keyFile = join(dir, 'tls.key')
  const first = selfSigned('proxy-first')
  const second = selfSigned('proxy-second')
  const third = selfSigned('proxy-third')
  writeFileSync(certFile, first.cert)
  writeFileSync(keyFile, first.key)

  const stack = await startStack(t, { argv: ['--tls-cert', certFile, '--tls-key', keyFile] })
  const origin = stack.url.replace(/^http:/, 'https:')
  const ca = [first.cert, second.cert, third.cert]
  const client = new Agent({ connect: { ca, servername: 'localhost' } })
  t.teardown(() => client.close())

  t.equal(await servedCn(origin, ca), 'proxy-first')
  const ping = await request(`${origin}/v2/`, { dispatcher: client })
  t.equal(ping.statusCode, 200, 'registry API over TLS')
  await ping.body.dump()
  t.equal(stack.upstreamRequests.length, 1)
  const plain = await rawExchange(stack.url, 'GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 2000 })
  t.not(plain.status, 200, 'plain HTTP is not served on the TLS port')
  const bad = await rawExchange(origin, 'GET /v2/%2e%2e/ HTTP/1.1\r\nHost: x\r\n\r\n', { tls: { ca } })
  t.equal(bad.status, 400, 'the same request checks over TLS')

  // The certificate rotates: key first, then the chain, each renamed into place.
  replaceFile(keyFile, second.key)
  replaceFile(certFile, second.cert)
  t.ok(await eventually(async () => await servedCn(origin, ca) === 'proxy-second'), 'new connections get the new certificate')
  t.ok(stack.logs.lines.some((l) => l.msg === 'TLS certificate reloaded'))
  const strict = new Agent({ connect: { ca: [second.cert], servername: 'localhost' } })
  t.teardown(() => strict.close())
  const after = await request(`${origin}/healthz`, { dispatcher: strict })
  t.equal(after.statusCode, 200)
  await after.body.dump()

  // A certificate without its key is not taken: the previous pair stays.
  replaceFile(certFile, third.cert)
  t.ok(await eventually(() => stack.logs.text().includes('reloading the TLS certificate failed')), 'the mismatch is logged')
  t.match(stack.logs.lines.find((l) => String(l.msg).startsWith('reloading the TLS certificate failed'))?.msg, /keeping the previous one: .* are not a usable certificate and key/)
  t.equal(await servedCn(origin, ca), 'proxy-second', 'still the last good certificate')
  t.notOk(stack.logs.text().includes('PRIVATE KEY'), 'no key material in the logs')
  replaceFile(keyFile, third.key)
  t.ok(await eventually(async () => await servedCn(origin, ca) === 'proxy-third'), 'the matching key completes the rotation')
})

t.test('a missing or unusable certificate stops the start', async (t) => {
  const dir = tempDir(t)
  const { buildApp } = await import('../../src/app.js')
  const { loadConfig, parseCommandLine, ConfigError } = await import('../../src/config/index.js')
  const pair = selfSigned('x')
  const other = selfSigned('y')
  writeFileSync(join(dir, 'a.crt'), pair.cert)
  writeFileSync(join(dir, 'b.key'), other.key)
  t.throws(() => loadConfig(parseCommandLine(['--tls-cert', join(dir, 'a.crt')]), {}), new ConfigError('invalid configuration: tlsCert and tlsKey go together (--tls-cert FILE --tls-key FILE)'))
  const config = (cert: string, key: string) => loadConfig(parseCommandLine(['--upstream', 'http://127.0.0.1:9', '--tls-cert', cert, '--tls-key', key]), {})
  const deps = { fetchToken: async () => ({ token: 'QVdTOng=', expiresAt: new Date(Date.now() + 60_000) }) }
  await t.rejects(buildApp(config(join(dir, 'a.crt'), join(dir, 'missing.key')), deps), /cannot read the TLS certificate or key/)
  await t.rejects(buildApp(config(join(dir, 'a.crt'), join(dir, 'b.key')), deps), /are not a usable certificate and key/)
})
