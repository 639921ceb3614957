import t from 'tap'
import { TokenAuthority, type IssuedToken } from '../helpers/token-authority.js'

const HOUR = 3_600_000

t.test('issue: an ECR-shaped token, valid 12 hours by default, announced through onIssue', async (t) => {
  let now = Date.UTC(2026, 0, 1)
  const authority = new TokenAuthority({ now: () => now })
  const announced: IssuedToken[] = []
  authority.onIssue = (token) => announced.push(token)

  const token = authority.issue()

  t.equal(Buffer.from(token.authorizationToken, 'base64').toString('utf8'), `AWS:${token.password}`)
  t.match(token.password, /^[A-Za-z0-9_-]{3500}$/)
  t.ok(token.authorizationToken.length > 4600 && token.authorizationToken.length < 4900, `token is ${token.authorizationToken.length} chars, like ECR's ~4.8 KB`)
  t.equal(token.issuedAt, now)
  t.equal(token.expiresAt, now + 12 * HOUR)
  t.same(authority.issued, [token])
  t.same(announced, [token])

  now += HOUR
  const second = authority.issue()
  t.not(second.authorizationToken, token.authorizationToken, 'every issue is a new token')
  t.equal(second.issuedAt, now)
})

t.test('check: missing, invalid, ok, expired, revoked', async (t) => {
  let now = 1_000_000
  const authority = new TokenAuthority({ lifetimeMs: 10_000, now: () => now })
  const token = authority.issue()
  const header = `Basic ${token.authorizationToken}`

  t.equal(authority.check(undefined), 'missing')
  t.equal(authority.check(''), 'missing')
  t.equal(authority.check(`Bearer ${token.authorizationToken}`), 'invalid')
  t.equal(authority.check('Basic ' + Buffer.from('AWS:guess').toString('base64')), 'invalid')
  t.equal(authority.check(header), 'ok')
  t.equal(authority.check(`basic ${token.authorizationToken}`), 'ok', 'the scheme is case-insensitive')

  now += 9_999
  t.equal(authority.check(header), 'ok', 'still valid one millisecond before expiry')
  now += 1
  t.equal(authority.check(header), 'expired', 'expired at expiresAt, no real time passed')

  const fresh = authority.issue()
  authority.revoke(fresh.authorizationToken)
  t.equal(authority.check(`Basic ${fresh.authorizationToken}`), 'revoked')
})

t.test('lifetimeMs is mutable and applies to the next issue', async (t) => {
  const authority = new TokenAuthority({ now: () => 0 })
  authority.lifetimeMs = 5
  t.equal(authority.issue().expiresAt, 5)
})
