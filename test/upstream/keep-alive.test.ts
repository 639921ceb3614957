import { createServer } from 'node:http'
import t from 'tap'
import { Agent, request } from 'undici'
import { closeServer, listen } from '../helpers/listen.js'
import { proxyFor } from '../helpers/proxy-for.js'

t.test('HEAD and GET reuse upstream connections (no new TLS handshake per HEAD)', async (t) => {
  let connections = 0
  const upstream = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': '2', 'docker-content-digest': `sha256:${'b'.repeat(64)}` })
    res.end(req.method === 'HEAD' ? undefined : '{}')
  })
  upstream.on('connection', () => { connections += 1 })
  const url = await listen(upstream)
  t.teardown(() => closeServer(upstream))
  const proxy = await proxyFor(t, url)
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
