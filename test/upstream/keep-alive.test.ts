import { createServer } from 'node:http'
import t from 'tap'
import { Agent, request } from 'undici'
import { buildApp } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config.js'
import { closeServer, listen } from '../helpers/listen.js'
import { logSink } from '../helpers/log-sink.js'

t.test('HEAD and GET reuse upstream connections (no new TLS handshake per HEAD)', async (t) => {
  let connections = 0
  const upstream = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': '2', 'docker-content-digest': `sha256:${'b'.repeat(64)}` })
    res.end(req.method === 'HEAD' ? undefined : '{}')
  })
  upstream.on('connection', () => { connections += 1 })
  const url = await listen(upstream)
  t.teardown(() => closeServer(upstream))
  const { app } = await buildApp(loadConfig(parseCommandLine(['--upstream', url]), {}), {
    fetchToken: async () => ({ token: 'QVdTOnB3', expiresAt: new Date(Date.now() + 3_600_000) }),
    logger: logSink('silent').logger
  })
  t.teardown(() => app.close())
  const proxy = await app.listen({ host: '127.0.0.1', port: 0 })
  const client = new Agent({ connections: 1 })
  t.teardown(() => client.close())

  for (let i = 0; i < 100; i++) {
    const method = i % 2 === 0 ? 'HEAD' : 'GET'
    const res = await request(`${proxy}/v2/team/app/manifests/1.2`, { method, dispatcher: client })
    t.equal(res.statusCode, 200)
    await res.body.dump()
  }
  t.equal(connections, 1, '100 sequential HEADs and GETs over one upstream connection')
})
