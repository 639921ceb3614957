import t from 'tap'
import { request } from 'undici'
import { startStack } from './helpers/stack.js'

t.test('one log line per request; no token or Authorization anywhere in the logs', async (t) => {
  const stack = await startStack(t)
  const clientSecret = 'Basic Y2xpZW50LXVzZXI6Y2xpZW50LXBhc3N3b3Jk'
  const ping = await request(`${stack.url}/v2/`, { dispatcher: stack.client, headers: { authorization: clientSecret } })
  await ping.body.dump()
  const missing = await request(`${stack.url}/v2/team/app/manifests/1.2`, { dispatcher: stack.client, headers: { authorization: clientSecret } })
  await missing.body.dump()
  const upload = await request(`${stack.url}/v2/team/app/blobs/uploads/`, { method: 'POST', dispatcher: stack.client, body: 'abc', headers: { 'content-type': 'application/octet-stream' } })
  await upload.body.dump()
  // Force a token refresh through a rejection, so refresh logging is covered too.
  stack.authority.revoke(stack.authority.issued[0]?.authorizationToken ?? '')
  const replayed = await request(`${stack.url}/v2/`, { dispatcher: stack.client })
  await replayed.body.dump()

  const requestLines = stack.logs.lines.filter((l) => l.msg === 'request')
  t.equal(requestLines.length, 4)
  t.match(requestLines[0], { method: 'GET', path: '/v2/', kind: 'ping', repository: null, status: 200 })
  t.match(requestLines[1], { method: 'GET', path: '/v2/team/app/manifests/1.2', kind: 'manifest', repository: 'team/app', status: 404 })
  t.match(requestLines[2], { method: 'POST', path: '/v2/team/app/blobs/uploads/', kind: 'upload', repository: 'team/app', status: 202 })
  t.match(requestLines[3], { kind: 'ping', status: 200, replayed: true })
  for (const line of requestLines) {
    t.type(line.durationMs, 'number')
    t.type(line.reqId, 'string')
  }
  t.ok((requestLines[2]?.bytesIn as number) > 3, 'bytes received on the wire are logged (headers and body)')
  t.ok((requestLines[1]?.bytesOut as number) > 0, 'bytes sent are logged')

  const refreshes = stack.logs.lines.filter((l) => l.msg === 'ECR token refreshed')
  t.equal(refreshes.length, 2)
  for (const line of refreshes) {
    t.match(line.expiresAt, /^\d{4}-\d\d-\d\dT/, 'expiry is logged')
    t.match(line.refreshAt, /^\d{4}-\d\d-\d\dT/)
  }

  const text = stack.logs.text()
  for (const issued of stack.authority.issued) {
    t.notOk(text.includes(issued.authorizationToken), 'the ECR token never appears')
    t.notOk(text.includes(issued.password), 'nor its password')
  }
  t.notOk(text.includes(clientSecret.slice(6)), 'the client\'s Authorization never appears')
})

t.test('redaction catches credentials even where code logs a header object', async (t) => {
  const stack = await startStack(t)
  stack.proxy.app.log.info({ req: { headers: { authorization: 'Basic c2VjcmV0' } }, headers: { authorization: 'Basic c2VjcmV0' }, token: 'c2VjcmV0' }, 'careless')
  const line = stack.logs.lines.find((l) => l.msg === 'careless')
  t.equal(JSON.stringify(line?.req).includes('c2VjcmV0'), false, 'a logged request carries no headers')
  t.same(line?.headers, { authorization: '[redacted]' })
  t.equal(line?.token, '[redacted]')
  t.notOk(stack.logs.text().includes('c2VjcmV0'))
})
