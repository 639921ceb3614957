import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import t from 'tap'
import { request } from 'undici'
import { buildApp } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config/index.js'
import { defaultRedirectHosts } from '../../src/upstream/redirects.js'
import { regionOfRegistry } from '../../src/routing/endpoint.js'
import { closeServer, listen } from '../helpers/listen.js'
import { logSink } from '../helpers/log-sink.js'
import { startStack, type Stack } from '../helpers/stack.js'

function sha256 (data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

async function get (stack: Stack, path: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await request(`${stack.url}${path}`, { method: method as 'GET', dispatcher: stack.client, headers })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

t.test('the default redirect allowlist is the S3 endpoints of the registry\'s region', async (t) => {
  t.equal(regionOfRegistry('https://600423610423.dkr.ecr.us-east-2.amazonaws.com'), 'us-east-2')
  t.equal(regionOfRegistry('https://600423610423.dkr.ecr-fips.us-gov-west-1.amazonaws.com'), 'us-gov-west-1')
  t.equal(regionOfRegistry('https://600423610423.dkr-ecr.eu-west-1.on.aws'), 'eu-west-1')
  t.equal(regionOfRegistry('https://600423610423.dkr.ecr.cn-north-1.amazonaws.com.cn'), 'cn-north-1')
  t.equal(regionOfRegistry('http://127.0.0.1:5001'), undefined)
  const hosts = defaultRedirectHosts('us-east-2')
  for (const expected of ['*.s3.us-east-2.amazonaws.com', 's3.us-east-2.amazonaws.com', '*.s3.dualstack.us-east-2.amazonaws.com', '*.s3-fips.us-east-2.amazonaws.com', '*.s3.us-east-2.amazonaws.com.cn']) {
    t.ok(hosts.includes(expected), expected)
  }
})

t.test('follow mode: the proxy fetches the blob from storage and streams it, Range honoured, no credential sent', async (t) => {
  const stack = await startStack(t, { argv: ['--redirects', 'follow', '--redirect-allowed-hosts', '127.0.0.1:*'] })
  const layer = Buffer.alloc(300_000)
  for (let i = 0; i < layer.length; i++) layer[i] = (i * 31) & 0xff
  const digest = stack.registry.putBlob('team/app', layer)

  const whole = await get(stack, `/v2/team/app/blobs/${digest}`, { authorization: 'Basic Y2xpZW50OnNlY3JldA==', cookie: 'a=b', 'x-client': 'y', accept: 'application/octet-stream' })
  t.equal(whole.status, 200, 'the client sees the blob, not the redirect')
  t.equal(whole.headers.location, undefined)
  t.equal(whole.headers['content-length'], String(layer.length))
  t.equal(whole.headers['content-type'], 'application/octet-stream')
  t.match(whole.headers.etag, /^"[0-9a-f]{32}"$/)
  t.equal(whole.headers['docker-distribution-api-version'], 'registry/2.0')
  t.equal(sha256(whole.body), digest, 'every byte')

  const part = await get(stack, `/v2/team/app/blobs/${digest}`, { range: 'bytes=1000-1999' })
  t.equal(part.status, 206)
  t.equal(part.headers['content-range'], `bytes 1000-1999/${layer.length}`)
  t.equal(part.headers['content-length'], '1000')
  t.same(part.body, layer.subarray(1000, 2000))

  const beyond = await get(stack, `/v2/team/app/blobs/${digest}`, { range: `bytes=${layer.length + 10}-` })
  t.equal(beyond.status, 416)
  t.equal(JSON.parse(beyond.body.toString()).errors[0].code, 'UNSUPPORTED')

  const s3 = stack.registry.s3.requests
  t.equal(s3.length, 3, 'storage was asked three times, by the proxy')
  for (const r of s3) {
    t.equal(r.headers.authorization, undefined, 'no Authorization reached storage')
    t.same(Object.keys(r.headers).filter((h) => !['host', 'connection', 'range', 'accept'].includes(h)), [], `only Range and Accept of the client: ${Object.keys(r.headers).join(',')}`)
  }
  t.equal(s3[0]?.headers.accept, 'application/octet-stream')
  t.equal(s3[1]?.headers.range, 'bytes=1000-1999')
  t.equal(stack.upstreamRequests.filter((r) => r.url.includes('/blobs/')).length, 3, 'the registry gave the redirect each time')
  t.notOk(stack.logs.text().includes('X-Amz-Signature'), 'presigned URLs are never logged')
  t.ok(stack.logs.lines.some((l) => l.msg === 'blob redirect followed' && l.redirectHost === new URL(stack.registry.s3.url).host && String(l.redirectPath) === `/${encodeURIComponent(digest)}`), 'host and path are')
})

t.test('follow mode refuses a redirect to a host off the allowlist', async (t) => {
  // The default allowlist: the S3 endpoints of us-east-2, which the loopback stand-in is not.
  const stack = await startStack(t, { argv: ['--redirects', 'follow'] })
  const digest = stack.registry.putBlob('team/app', Buffer.from('layer'))
  const res = await get(stack, `/v2/team/app/blobs/${digest}`)
  t.equal(res.status, 502)
  const error = JSON.parse(res.body.toString()).errors[0]
  t.equal(error.code, 'UNAVAILABLE')
  t.equal(error.message, `the registry redirected to ${new URL(stack.registry.s3.url).host}, which is not an allowed redirect host (--redirect-allowed-hosts)`)
  t.notMatch(res.body.toString(), /X-Amz|Signature|Credential/, 'the presigned query is not shown')
  t.same(stack.registry.s3.requests, [], 'storage was not contacted')

  // An allowlist entry without a port admits the default port only.
  const strict = await startStack(t, { argv: ['--redirects', 'follow', '--redirect-allowed-hosts', '127.0.0.1'] })
  const other = strict.registry.putBlob('team/app', Buffer.from('layer'))
  t.equal((await get(strict, `/v2/team/app/blobs/${other}`)).status, 502)
  t.same(strict.registry.s3.requests, [])
})

t.test('follow mode: an https registry is never followed to http, and a redirect chain is checked at every hop', async (t) => {
  const hops: string[] = []
  const storage = createServer((req, res) => {
    hops.push(req.url ?? '')
    if (req.url === '/first') res.writeHead(307, { location: 'http://evil.invalid/next' }).end()
    else res.writeHead(200, { 'content-length': 2 }).end('ok')
  })
  const storageUrl = await listen(storage)
  t.teardown(() => closeServer(storage))
  const registry = createServer((req, res) => {
    res.writeHead(307, { location: `${storageUrl}/first`, 'docker-distribution-api-version': 'registry/2.0' }).end()
  })
  const registryUrl = await listen(registry)
  t.teardown(() => closeServer(registry))
  const config = loadConfig(parseCommandLine(['--upstream', registryUrl, '--redirects', 'follow', '--redirect-allowed-hosts', '127.0.0.1:*']), {})
  const built = await buildApp(config, { fetchToken: async () => ({ token: 'QVdTOng=', expiresAt: new Date(Date.now() + 3_600_000) }), logger: logSink().logger })
  t.teardown(() => built.app.close())
  const res = await built.app.inject({ url: `/v2/team/app/blobs/sha256:${'a'.repeat(64)}` })
  t.equal(res.statusCode, 502)
  t.match(res.json().errors[0].message, /redirected to evil\.invalid, which is not an allowed redirect host/)
  t.same(hops, ['/first'], 'the second hop was refused before any connection')
})

t.test('follow mode: storage failures, chains, HEAD and odd redirects get clear answers', async (t) => {
  let storageStatus = 200
  const storage = createServer((req, res) => {
    if (req.url === '/hop') {
      res.writeHead(302, { location: '/final' }).end()
      return
    }
    if (storageStatus !== 200) {
      res.writeHead(storageStatus, { 'content-type': 'application/xml' }).end('<Error><Code>AccessDenied</Code></Error>')
      return
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 5, etag: '"e"', 'x-amz-request-id': 'r' }).end(req.method === 'HEAD' ? undefined : 'bytes')
  })
  const storageUrl = await listen(storage)
  t.teardown(() => closeServer(storage))
  let location: string | undefined = `${storageUrl}/final?X-Amz-Signature=secret`
  const registry = createServer((_req, res) => {
    res.writeHead(307, { ...(location === undefined ? {} : { location }), 'docker-content-digest': `sha256:${'a'.repeat(64)}` }).end()
  })
  const registryUrl = await listen(registry)
  t.teardown(() => closeServer(registry))
  const deps = { fetchToken: async () => ({ token: 'QVdTOng=', expiresAt: new Date(Date.now() + 3_600_000) }), logger: logSink().logger }
  const build = async (argv: string[]) => {
    const built = await buildApp(loadConfig(parseCommandLine(['--upstream', registryUrl, '--redirects', 'follow', ...argv]), {}), deps)
    t.teardown(() => built.app.close())
    return built.app
  }
  const app = await build(['--redirect-allowed-hosts', '127.0.0.1:*'])
  const blob = `/v2/team/app/blobs/sha256:${'a'.repeat(64)}`

  const ok = await app.inject({ url: blob })
  t.equal(ok.statusCode, 200)
  t.equal(ok.body, 'bytes')
  t.equal(ok.headers['docker-content-digest'], `sha256:${'a'.repeat(64)}`, 'the registry\'s digest header is kept')
  t.equal(ok.headers['x-amz-request-id'], undefined, 'storage headers beyond the listed ones are not passed on')
  const head = await app.inject({ method: 'HEAD', url: blob })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-length'], '5')
  t.equal(head.body, '')

  location = `${storageUrl}/hop`
  const chained = await app.inject({ url: blob })
  t.equal(chained.statusCode, 200, 'a relative redirect from storage is followed (allowlist checked again)')
  t.equal(chained.body, 'bytes')

  location = `${storageUrl}/final?X-Amz-Signature=secret`
  storageStatus = 403
  const denied = await app.inject({ url: blob })
  t.equal(denied.statusCode, 502)
  t.same(denied.json().errors[0], { code: 'UNAVAILABLE', message: `blob storage at ${new URL(storageUrl).host} answered 403` })
  storageStatus = 200

  location = undefined
  t.equal((await app.inject({ url: blob })).json().errors[0].message, 'the registry answered a redirect without a Location')
  location = 'http://[bad'
  t.equal((await app.inject({ url: blob })).json().errors[0].message, 'the registry redirected to an invalid URL')
  location = 'https://user:pw@127.0.0.1:1/x'
  t.match((await app.inject({ url: blob })).json().errors[0].message, /with credentials in the URL; not followed/)

  location = `${storageUrl}/final`
  await new Promise<void>((resolve) => { storage.close(() => resolve()); storage.closeAllConnections() })
  const unreachable = await app.inject({ url: blob })
  t.equal(unreachable.statusCode, 502)
  t.match(unreachable.json().errors[0].message, new RegExp(`^blob storage at ${new URL(storageUrl).host} could not be reached \\(ECONNREFUSED\\)$`))

  const noRegion = await build([])
  const refused = await noRegion.inject({ url: blob })
  t.equal(refused.statusCode, 502)
  t.match(refused.json().errors[0].message, /its region is unknown: set --region or --redirect-allowed-hosts/)
  const byRegion = await build(['--region', 'us-east-2'])
  t.match((await byRegion.inject({ url: blob })).json().errors[0].message, /not an allowed redirect host/, 'with a region, its S3 endpoints are the allowlist')
})
