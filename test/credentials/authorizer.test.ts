import t from 'tap'
import { EcrBasicAuthorizer } from '../../src/credentials/authorizer.js'
import { CredentialPool } from '../../src/credentials/pool.js'
import { TokenRefresher } from '../../src/credentials/refresher.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { logSink } from '../helpers/log-sink.js'

function pool (clock: FakeClock): { pool: CredentialPool, fetches: string[] } {
  const fetches: string[] = []
  let n = 0
  const created = new CredentialPool((key) => new TokenRefresher({
    fetchToken: async () => {
      fetches.push(key.id)
      n++
      return { token: `token-${n}`, expiresAt: new Date(clock.now() + 3_600_000) }
    },
    log: logSink().logger,
    clock,
    rejectedIntervalMs: 0
  }))
  return { pool: created, fetches }
}

const key = { id: 'ecr:us-east-2', region: 'us-east-2' }

t.test('the pool creates one refresher per credential, lazily, and starts late ones', async (t) => {
  const clock = new FakeClock()
  const { pool: credentials, fetches } = pool(clock)
  const seen: string[] = []
  credentials.onCreated((id) => seen.push(id))
  t.equal(credentials.get(key), credentials.get({ ...key }), 'the same key, the same refresher')
  t.same(fetches, [], 'nothing fetched before start')
  credentials.start()
  await clock.tick(0)
  t.same(fetches, ['ecr:us-east-2'])
  credentials.get({ id: 'ecr:eu-west-1', region: 'eu-west-1' })
  await clock.tick(0)
  t.same(fetches, ['ecr:us-east-2', 'ecr:eu-west-1'], 'created after start: started at once')
  t.same(seen, ['ecr:us-east-2', 'ecr:eu-west-1'])
  t.same([...credentials.entries()].map(([id]) => id), ['ecr:us-east-2', 'ecr:eu-west-1'])
  credentials.stop()
})

t.test('ECR Basic: the header, and which 401/403 answers are a rejected token', async (t) => {
  const clock = new FakeClock()
  const { pool: credentials } = pool(clock)
  const authorizer = new EcrBasicAuthorizer(credentials)
  const used = await authorizer.authorize(key)
  t.same(used, { header: 'Basic token-1', token: 'token-1' })
  const held = await authorizer.authorize(key)
  t.equal(await authorizer.authorize(key), held, 'the same header for every request with the held token, not a copy each (docs/performance.md, finding 9)')
  const denied = Buffer.from('{"errors":[{"code":"DENIED","message":"Your authorization token has expired."}]}')
  const challenge = (status: number, method: string, body: Buffer | undefined) => ({ status, method, headers: {}, body })

  t.same(await authorizer.onChallenge(key, used, challenge(401, 'GET', Buffer.from(''))), { rejected: true, replacement: { header: 'Basic token-2', token: 'token-2' } }, '401: replaced')
  t.same(await authorizer.onChallenge(key, { header: 'Basic token-2', token: 'token-2' }, challenge(403, 'GET', denied)), { rejected: true, replacement: { header: 'Basic token-3', token: 'token-3' } }, '403 DENIED: replaced')
  t.same(await authorizer.onChallenge(key, used, challenge(403, 'HEAD', undefined)), { rejected: true, replacement: { header: 'Basic token-3', token: 'token-3' } }, 'HEAD 403 carries no body: may be an expired token; a token already replaced is not fetched again')
  t.same(await authorizer.onChallenge(key, used, challenge(403, 'GET', Buffer.from('{"errors":[{"code":"UNAUTHORIZED"}]}'))), { rejected: false }, 'another 403: the answer stands')
  t.same(await authorizer.onChallenge(key, used, challenge(403, 'GET', undefined)), { rejected: false }, 'a 403 too large to read: the answer stands')
  t.same(await authorizer.onChallenge(key, used, challenge(403, 'GET', Buffer.from('not json'))), { rejected: false })
  const permission = Buffer.from('{"errors":[{"code":"DENIED","message":"User: arn:aws:sts::600423610423:assumed-role/dev/x is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-2:111122223333:repository/team/app because no resource-based policy allows the ecr:BatchGetImage action"}]}')
  t.same(await authorizer.onChallenge(key, used, challenge(403, 'GET', permission)), { rejected: false }, 'a permission denial on one repository leaves the shared token alone')
})
