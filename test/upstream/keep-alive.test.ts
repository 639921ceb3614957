import { createServer } from 'node:http'
import net from 'node:net'
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

t.test('a kept-alive connection the registry drops as a GET arrives: the GET is sent once more on a new one', async (t) => {
  // Raw HTTP: the first connection answers once, then drops the next request unanswered, as a
  // registry closing an idle connection at the moment it is reused.
  let connections = 0
  const requests: string[] = []
  const upstream = net.createServer((socket) => {
    const connection = ++connections
    let answered = 0
    let buffered = ''
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1')
      while (buffered.includes('\r\n\r\n')) {
        const end = buffered.indexOf('\r\n\r\n') + 4
        requests.push(`${connection}: ${buffered.slice(0, buffered.indexOf('\r\n'))}`)
        buffered = buffered.slice(end)
        if (connection === 1 && answered === 1) {
          socket.destroy()
          return
        }
        answered++
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nDocker-Distribution-API-Version: registry/2.0\r\n\r\n{}')
      }
    })
  })
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => upstream.close(resolve)))
  const proxy = await proxyFor(t, `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}`)

  for (const tag of ['first', 'second']) {
    const res = await request(`${proxy}/v2/team/app/manifests/${tag}`)
    t.equal(res.statusCode, 200, `${tag}: answered`)
    t.equal(await res.body.text(), '{}')
  }
  t.same(requests, [
    '1: GET /v2/team/app/manifests/first HTTP/1.1',
    '1: GET /v2/team/app/manifests/second HTTP/1.1',
    '2: GET /v2/team/app/manifests/second HTTP/1.1'
  ], 'the dropped GET went again, on a new connection')
})
