import t from 'tap'
import { Readable, Writable } from 'node:stream'
import type { Authorizer } from '../../src/credentials/authorizer.js'
import { TokenUnavailableError } from '../../src/credentials/refresher.js'
import { Registry } from '../../src/routing/registry.js'
import { OriginUnknownError, Upstream, type UpstreamRequest } from '../../src/upstream/fetch.js'
import { UpstreamError } from '../../src/upstream/errors.js'
import { streamBody } from '../../src/upstream/transport/agents.js'
import type { Transport, TransportRequest } from '../../src/upstream/transport/types.js'
import { logSink } from '../helpers/log-sink.js'

const ORIGIN = 'http://127.0.0.1:5001'
const credential = { id: 'ecr:us-east-2' }
const target = { registry: new Registry({ origin: ORIGIN, credential }), upstreamName: 'team/app', clientName: 'team/app' }

/** An authorizer that hands out token-1, then token-2 after a rejection. */
function authorizer (): Authorizer & { challenges: number } {
  let current = 1
  const a = {
    challenges: 0,
    authorize: async () => ({ header: `Basic token-${current}`, token: `token-${current}` }),
    onChallenge: async (_key: unknown, used: { token: string }, challenge: { status: number }) => {
      a.challenges++
      if (challenge.status !== 401) return { rejected: false as const }
      if (used.token === `token-${current}`) current++
      return { rejected: true as const, replacement: { header: `Basic token-${current}`, token: `token-${current}` } }
    }
  }
  return a
}

/** A transport answering from a script, recording what it was sent. */
function scripted (answers: Array<{ status: number, body?: string } | Error>): Transport & { sent: TransportRequest[] } {
  const sent: TransportRequest[] = []
  return {
    sent,
    async request (request) {
      sent.push(request)
      const answer = answers.shift()
      if (answer === undefined) throw new Error('no answer scripted')
      if (answer instanceof Error) throw answer
      return { statusCode: answer.status, headers: { 'content-type': 'application/json' }, body: streamBody(Readable.from([Buffer.from(answer.body ?? '')])), pooled: false }
    }
  }
}

const get = (over: Partial<UpstreamRequest> = {}): UpstreamRequest => ({ method: 'GET', kind: 'manifest', path: '/v2/team/app/manifests/1.2', headers: { authorization: 'Basic Y2xpZW50', accept: 'application/json' }, log: logSink().logger, ...over })

async function collect (body: { pipeTo: (d: Writable) => Promise<void> }): Promise<string> {
  const chunks: Buffer[] = []
  await body.pipeTo(new Writable({ write (chunk: Buffer, _e, cb) { chunks.push(chunk); cb() } }))
  return Buffer.concat(chunks).toString()
}

t.test('the answer comes back as a value any consumer can read, not as a reply', async (t) => {
  const transport = scripted([{ status: 200, body: '{"schemaVersion":2}' }])
  const upstream = new Upstream({ transport, authorizers: { ecr: authorizer() } })
  const response = await upstream.fetch(target, get())
  t.equal(response.statusCode, 200)
  t.equal(response.replayed, false)
  t.equal(await collect(response.body), '{"schemaVersion":2}')
  t.equal(transport.sent[0]?.headers.authorization, 'Basic token-1', 'the proxy\'s credential, never the client\'s')
  t.equal(transport.sent[0]?.origin, ORIGIN)
})

t.test('a rejected credential: a GET is sent again once with the replacement', async (t) => {
  const transport = scripted([{ status: 401, body: '{"errors":[]}' }, { status: 200, body: 'ok' }])
  const observed: string[] = []
  const upstream = new Upstream({ transport, authorizers: { ecr: authorizer() }, observe: (kind) => observed.push(kind) })
  const response = await upstream.fetch(target, get())
  t.equal(response.statusCode, 200)
  t.equal(response.replayed, true)
  t.same(transport.sent.map((r) => r.headers.authorization), ['Basic token-1', 'Basic token-2'])
  t.same(observed, ['token_rejected'])
})

t.test('never twice, and never a request with a body: the client gets the registry\'s answer whole', async (t) => {
  const twice = scripted([{ status: 401, body: 'first' }, { status: 401, body: 'second' }])
  const response = await new Upstream({ transport: twice, authorizers: { ecr: authorizer() } }).fetch(target, get())
  t.equal(response.statusCode, 401)
  t.equal(await collect(response.body), 'second')
  t.equal(twice.sent.length, 2)

  const upload = scripted([{ status: 401, body: 'denied' }])
  const put = await new Upstream({ transport: upload, authorizers: { ecr: authorizer() } }).fetch(target, get({ method: 'PUT', body: Readable.from([Buffer.from('x')]) }))
  t.equal(put.statusCode, 401)
  t.equal(await collect(put.body), 'denied')
  t.equal(upload.sent.length, 1)

  const forbidden = scripted([{ status: 403, body: '{"errors":[{"code":"DENIED"}]}' }])
  const denial = await new Upstream({ transport: forbidden, authorizers: { ecr: authorizer() } }).fetch(target, get())
  t.equal(denial.statusCode, 403, 'not a rejected credential (this authorizer says): passed as it is')
  t.equal(forbidden.sent.length, 1)
})

t.test('failures are UpstreamErrors in one vocabulary, counted by kind', async (t) => {
  const observed: string[] = []
  const refused = scripted([Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })])
  const upstream = new Upstream({ transport: refused, authorizers: { ecr: authorizer() }, observe: (kind) => observed.push(kind) })
  await t.rejects(upstream.fetch(target, get()), new UpstreamError(`${ORIGIN} could not be reached: connect ECONNREFUSED (ECONNREFUSED)`, 'connect', 'ECONNREFUSED'))
  const slow = scripted([Object.assign(new Error('no response'), { code: 'EHEADERS_TIMEOUT' })])
  const error = await new Upstream({ transport: slow, authorizers: { ecr: authorizer() }, observe: (kind) => observed.push(kind) }).fetch(target, get()).catch((err: unknown) => err)
  t.match(error, { name: 'UpstreamError', kind: 'timeout', status: 504, message: `${ORIGIN} did not answer in time` })
  t.same(observed, ['connect', 'timeout'])
})

t.test('no credential or no origin: nothing is sent', async (t) => {
  const transport = scripted([])
  const noToken: Authorizer = { authorize: async () => { throw new TokenUnavailableError('no ECR token: test') }, onChallenge: async () => ({ rejected: false }) }
  await t.rejects(new Upstream({ transport, authorizers: { ecr: noToken } }).fetch(target, get()), { name: 'TokenUnavailableError' })
  const pending = { ...target, registry: new Registry({ credential }) }
  await t.rejects(new Upstream({ transport, authorizers: { ecr: authorizer() } }).fetch(pending, get()), new OriginUnknownError('the registry address is not known yet'))
  t.equal(transport.sent.length, 0)
})

t.test('blob GETs take the blob transport only where the bytes pass through', async (t) => {
  const agents = scripted([{ status: 307 }, { status: 200 }])
  const blobs = scripted([{ status: 200, body: 'bytes' }])
  const upstream = new Upstream({ transport: agents, blobTransport: blobs, authorizers: { ecr: authorizer() } })
  const blob = get({ kind: 'blob', path: `/v2/team/app/blobs/sha256:${'a'.repeat(64)}` })
  await upstream.fetch(target, blob)
  t.equal(blobs.sent.length, 1, 'a local registry may send the bytes: blob client')
  const ecr = { ...target, registry: new Registry({ origin: 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com', credential }) }
  const redirect = await upstream.fetch(ecr, blob)
  t.equal(redirect.statusCode, 307, 'ECR redirects blobs to S3: the agents carry the small answer')
  await upstream.fetch(target, get({ kind: 'blob', method: 'HEAD' }))
  t.equal(agents.sent.length, 2)
  t.equal(blobs.sent.length, 1)
})
