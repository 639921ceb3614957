import { createServer } from 'node:http'
import t from 'tap'
import { request } from 'undici'
import { closeServer, listen } from '../helpers/listen.js'
import { proxyFor } from '../helpers/proxy-for.js'

t.test('a 403 too large to inspect is still passed on whole', async (t) => {
  const body = Buffer.alloc(100 * 1024, 'x')
  const upstream = createServer((_req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain', 'content-length': String(body.length) })
    res.end(body)
  })
  const url = await listen(upstream)
  t.teardown(() => closeServer(upstream))
  const proxy = await proxyFor(t, url)
  const res = await request(`${proxy}/v2/team/app/manifests/1.2`, { headersTimeout: 5000, bodyTimeout: 5000 })
  t.equal(res.statusCode, 403)
  t.equal(res.headers['content-length'], String(body.length))
  t.same(Buffer.from(await res.body.arrayBuffer()), body, 'every byte of the registry\'s answer')
})
