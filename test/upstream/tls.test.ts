import { createServer } from 'node:https'
import t from 'tap'
import { buildApp } from '../../src/app.js'
import { createUpstreamAgents, destroyUpstreamAgents } from '../../src/upstream/transport/agents.js'
import { loadConfig, parseCommandLine } from '../../src/config/index.js'
import { closeServer } from '../helpers/listen.js'
import { logSink } from '../helpers/log-sink.js'
import { selfSigned } from '../helpers/self-signed.js'

t.test('the upstream certificate is verified', async (t) => {
  const { key, cert } = selfSigned()
  const seen: Array<string | undefined> = []
  const server = createServer({ key, cert }, (req, res) => {
    seen.push(req.headers.authorization)
    res.writeHead(200, { 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0' }).end('{}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => closeServer(server as never))
  const address = server.address()
  const upstream = `https://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  const config = loadConfig(parseCommandLine(['--upstream', upstream]), {})
  const fetchToken = async () => ({ token: 'QVdTOnNlY3JldA==', expiresAt: new Date(Date.now() + 3_600_000) })

  const strict = await buildApp(config, { fetchToken, logger: logSink().logger })
  t.teardown(() => strict.app.close())
  const refused = await strict.app.inject({ method: 'GET', url: '/v2/' })
  t.equal(refused.statusCode, 502)
  t.equal(refused.json().errors[0].code, 'UNAVAILABLE')
  t.match(refused.json().errors[0].message, new RegExp(`^${upstream} could not be reached: .*self-signed certificate`))
  t.same(seen, [], 'no request, and so no token, reached an unverified server')

  // Trusting the certificate (as NODE_EXTRA_CA_CERTS does for the CLI) makes it work.
  const agents = createUpstreamAgents(config.forwarding, { ca: cert })
  const trusting = await buildApp(config, { fetchToken, logger: logSink().logger, agents })
  t.teardown(() => { destroyUpstreamAgents(agents) })
  t.teardown(() => trusting.app.close())
  const ok = await trusting.app.inject({ method: 'GET', url: '/v2/' })
  t.equal(ok.statusCode, 200)
  t.same(seen, ['Basic QVdTOnNlY3JldA=='])
})
