import { createServer } from 'node:http'
import t from 'tap'
import { request } from 'undici'
import { buildApp } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config.js'
import { closeServer, listen } from '../helpers/listen.js'
import { logSink } from '../helpers/log-sink.js'

t.test('a 403 too large to inspect is still passed on whole', async (t) => {
  const body = Buffer.alloc(100 * 1024, 'x')
  const upstream = createServer((_req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain', 'content-length': String(body.length) })
    res.end(body)
  })
  const url = await listen(upstream)
  t.teardown(() => closeServer(upstream))
  const { app } = await buildApp(loadConfig(parseCommandLine(['--upstream', url]), {}), {
    fetchToken: async () => ({ token: 'QVdTOnB3', expiresAt: new Date(Date.now() + 3_600_000) }),
    logger: logSink('silent').logger
  })
  t.teardown(() => app.close())
  const proxy = await app.listen({ host: '127.0.0.1', port: 0 })
  const res = await request(`${proxy}/v2/team/app/manifests/1.2`, { headersTimeout: 5000, bodyTimeout: 5000 })
  t.equal(res.statusCode, 403)
  t.equal(res.headers['content-length'], String(body.length))
  t.same(Buffer.from(await res.body.arrayBuffer()), body, 'every byte of the registry\'s answer')
})
