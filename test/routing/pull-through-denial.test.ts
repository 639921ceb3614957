import t from 'tap'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { buildApp } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config/index.js'
import { logSink } from '../helpers/log-sink.js'

const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const DENIAL = 'User: arn:aws:sts::600423610423:assumed-role/node/i-0abc is not authorized to perform: ecr:BatchImportUpstreamImage on resource: arn:aws:ecr:us-east-2:600423610423:repository/docker-hub/library/nginx because no identity-based policy allows the ecr:BatchImportUpstreamImage action'

t.test('a 403 from the pull-through cache: passed on whole, one warning naming the permission, registry and prefix', async (t) => {
  const received: Array<{ method: string, url: string, headers: IncomingHttpHeaders }> = []
  const body = JSON.stringify({ errors: [{ code: 'DENIED', message: DENIAL }] })
  const registry = createServer((req, res) => {
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    if (req.url?.startsWith('/v2/docker-hub/library/nginx/')) {
      // ECR's 403 to a HEAD has no body: the permission cannot be read from it.
      res.writeHead(403, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) })
      res.end(req.method === 'HEAD' ? undefined : body)
      return
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')
  })
  await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { registry.close() })
  const address = registry.address() as { port: number }
  const file = join(mkdtempSync(join(tmpdir(), 'ecr-proxy-denial-')), 'proxy.yaml')
  writeFileSync(file, [
    'registries:',
    `  - { registry: ${PROD}, upstream: "http://127.0.0.1:${address.port}", alias: prod }`,
    'mirrors:',
    '  docker.io: { registry: prod, prefix: docker-hub }',
    ''
  ].join('\n'))
  const logs = logSink('info')
  const { app } = await buildApp(loadConfig(parseCommandLine(['--config', file]), {}), {
    fetchToken: async () => ({ token: 'QVdTOnB3', expiresAt: new Date(Date.now() + 3_600_000) }),
    logger: logs.logger
  })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })

  const res = await request(`${url}/v2/library/nginx/manifests/latest?ns=docker.io`)
  t.equal(res.statusCode, 403)
  t.equal(await res.body.text(), body, 'the registry\'s answer, byte for byte')
  t.same(received.map((r) => `${r.method} ${r.url}`), ['GET /v2/docker-hub/library/nginx/manifests/latest'], 'a permission denial is not replayed')
  t.equal(received[0]?.headers.authorization, 'Basic QVdTOnB3')
  const warnings = logs.lines.filter((l) => l.level === 40)
  t.same(warnings.map((l) => ({ ...l, time: 0, pid: 0, hostname: '', reqId: '' })), [{
    level: 40,
    time: 0,
    pid: 0,
    hostname: '',
    reqId: '',
    registry: PROD,
    mirror: 'docker.io',
    prefix: 'docker-hub',
    upstreamRepository: 'docker-hub/library/nginx',
    permission: 'ecr:BatchImportUpstreamImage',
    msg: `the pull-through cache of ${PROD} refused a docker.io pull under prefix docker-hub: its identity likely lacks ecr:BatchImportUpstreamImage (a first pull imports the image and may create the repository)`
  }])

  const head = await request(`${url}/v2/library/nginx/manifests/latest?ns=docker.io`, { method: 'HEAD' })
  t.equal(head.statusCode, 403)
  await head.body.dump()
  const headWarning = logs.lines.filter((l) => l.level === 40).at(-1)
  t.match(headWarning, { permission: 'ecr:BatchImportUpstreamImage or ecr:CreateRepository', registry: PROD, prefix: 'docker-hub' }, 'no body to read: both permissions a first pull needs')

  const before = logs.lines.filter((l) => l.level === 40).length
  const own = await request(`${url}/v2/prod/team/app/manifests/1`)
  t.equal(own.statusCode, 404)
  await own.body.dump()
  t.equal(logs.lines.filter((l) => l.level === 40).length, before, 'no warning for names that are not mirrored')
})
