import { createHash } from 'node:crypto'
import t from 'tap'
import { request } from 'undici'
import { createPolicy } from '../../src/access/policy.js'
import { startStack, type Stack } from '../helpers/stack.js'

const D = `sha256:${'a'.repeat(64)}`

function sha256 (data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

async function call (stack: Stack, method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}) {
  const res = await request(`${stack.url}${path}`, { method: method as 'GET', dispatcher: stack.client, body, headers })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, body: text, code: text.startsWith('{') ? (JSON.parse(text) as { errors?: Array<{ code: string }> }).errors?.[0]?.code : undefined }
}

t.test('the policy decides on method, repository and mount source', async (t) => {
  const readOnly = createPolicy({ readOnly: true, allowRepositories: [], denyRepositories: [] })
  t.equal(readOnly('GET', { kind: 'manifest', name: 'a', reference: 'x' }, {}), undefined)
  t.equal(readOnly('HEAD', { kind: 'blob', name: 'a', digest: D }, {}), undefined)
  t.match(readOnly('PUT', { kind: 'manifest', name: 'a', reference: 'x' }, {}), { status: 403, code: 'DENIED', message: /read-only/ })
  t.match(readOnly('DELETE', { kind: 'blob', name: 'a', digest: D }, {}), { status: 403, code: 'DENIED' })
  t.match(readOnly('POST', { kind: 'upload', name: 'a', uploadId: '' }, {}), { status: 403 })
  t.match(readOnly('GET', { kind: 'upload', name: 'a', uploadId: 'u' }, {}), { status: 403 }, 'upload status too')

  const scoped = createPolicy({ readOnly: false, allowRepositories: ['team/**', 'base'], denyRepositories: ['team/secret*', '**/private'] })
  t.equal(scoped('GET', { kind: 'ping' }, {}), undefined)
  t.equal(scoped('GET', { kind: 'tags', name: 'team' }, {}), undefined, 'team/** covers team itself')
  t.equal(scoped('GET', { kind: 'tags', name: 'team/a/b' }, {}), undefined)
  t.equal(scoped('GET', { kind: 'tags', name: 'base' }, {}), undefined)
  t.match(scoped('GET', { kind: 'tags', name: 'base/x' }, {}), { status: 403, code: 'DENIED' })
  t.match(scoped('GET', { kind: 'tags', name: 'other' }, {}), { status: 403, message: /repository "other" is not allowed/ })
  t.match(scoped('GET', { kind: 'tags', name: 'team/secret-keys' }, {}), { status: 403 }, 'deny wins')
  t.match(scoped('GET', { kind: 'tags', name: 'team/x/private' }, {}), { status: 403 })
  t.match(scoped('GET', { kind: 'catalog' }, {}), { status: 403, message: /catalog/ })
  t.equal(scoped('POST', { kind: 'upload', name: 'team/a', uploadId: '' }, { mount: D, from: 'team/b' }), undefined)
  t.match(scoped('POST', { kind: 'upload', name: 'team/a', uploadId: '' }, { mount: D, from: 'other' }), { status: 403, message: /mounting from repository "other"/ })
  t.match(scoped('POST', { kind: 'upload', name: 'team/a', uploadId: '' }, { mount: D }), { status: 403, message: /needs from=/ })

  const open = createPolicy({ readOnly: false, allowRepositories: [], denyRepositories: [] })
  t.equal(open('GET', { kind: 'catalog' }, {}), undefined)
  t.equal(open('POST', { kind: 'upload', name: 'a', uploadId: '' }, { mount: D }), undefined, 'no patterns: a mount without from passes')
})

t.test('--read-only: pushes, deletes and uploads get 403 DENIED and nothing reaches the registry', async (t) => {
  const stack = await startStack(t, { argv: ['--read-only'] })
  const layer = Buffer.from('layer')
  const digest = stack.registry.putBlob('team/app', layer)
  const blocked: Array<[string, string, Buffer | string | undefined]> = [
    ['POST', '/v2/team/app/blobs/uploads/', undefined],
    ['POST', `/v2/team/app/blobs/uploads/?digest=${sha256('x')}`, 'x'],
    ['POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=team/other`, undefined],
    ['PATCH', '/v2/team/app/blobs/uploads/0f9e7a2c-1b2d-4c5e-8f90-123456789abc', Buffer.alloc(1024, 1)],
    ['PUT', `/v2/team/app/blobs/uploads/0f9e7a2c-1b2d-4c5e-8f90-123456789abc?digest=${digest}`, layer],
    ['GET', '/v2/team/app/blobs/uploads/0f9e7a2c-1b2d-4c5e-8f90-123456789abc', undefined],
    ['DELETE', '/v2/team/app/blobs/uploads/0f9e7a2c-1b2d-4c5e-8f90-123456789abc', undefined],
    ['PUT', '/v2/team/app/manifests/v1', '{"schemaVersion":2}'],
    ['DELETE', '/v2/team/app/manifests/v1', undefined],
    ['DELETE', `/v2/team/app/blobs/${digest}`, undefined]
  ]
  for (const [method, path, body] of blocked) {
    const res = await call(stack, method, path, body, body === undefined ? {} : { 'content-type': 'application/octet-stream' })
    t.equal(res.status, 403, `${method} ${path}`)
    t.equal(res.code, 'DENIED')
    t.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
  }
  t.same(stack.upstreamRequests, [], 'no push request was sent upstream')
  const pull = await call(stack, 'HEAD', `/v2/team/app/blobs/${digest}`)
  t.equal(pull.status, 200, 'reads still work')
  t.equal(stack.upstreamRequests.length, 1)
})

t.test('repository patterns apply to every route, the mount source included', async (t) => {
  const stack = await startStack(t, { argv: ['--allow-repositories', 'team/**,shared', '--deny-repositories', 'team/secret*'], registry: { blobMounting: true } })
  const layer = Buffer.from('shared layer')
  const digest = stack.registry.putBlob('team/lib', layer)
  stack.registry.putBlob('other/app', layer)

  const refused: Array<[string, string]> = [
    ['GET', '/v2/other/app/tags/list'],
    ['GET', '/v2/other/app/manifests/latest'],
    ['HEAD', `/v2/other/app/blobs/${digest}`],
    ['GET', `/v2/other/app/referrers/${digest}`],
    ['POST', '/v2/other/app/blobs/uploads/'],
    ['GET', '/v2/team/secret-keys/tags/list'],
    ['GET', '/v2/_catalog'],
    ['POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=other/app`],
    ['POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=other%2Fapp`],
    ['POST', `/v2/team/app/blobs/uploads/?from=team/secret-keys&mount=${digest}`],
    ['POST', `/v2/team/app/blobs/uploads/?mount=${digest}`]
  ]
  for (const [method, path] of refused) {
    const res = await call(stack, method, path)
    t.equal(res.status, 403, `${method} ${path}`)
    if (method !== 'HEAD') t.equal(res.code, 'DENIED')
  }
  t.same(stack.upstreamRequests, [], 'nothing refused reached the registry')

  const mounted = await call(stack, 'POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=team/lib`)
  t.equal(mounted.status, 201, 'a mount between allowed repositories is forwarded')
  t.equal(mounted.headers['docker-content-digest'], digest)
  const listed = await call(stack, 'GET', '/v2/shared/tags/list')
  t.equal(listed.status, 404, 'an allowed repository reaches the registry (which does not know it)')
  t.equal(stack.upstreamRequests.length, 2)
})

t.test('patterns may name the registry by hostname or alias; deny on any name wins', async (t) => {
  const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
  const names = [PROD, 'prod']
  const policy = createPolicy({ readOnly: false, allowRepositories: [`${PROD}/team/*`, 'tools/ci/*', 'shared/*'], denyRepositories: ['prod/team/secret'] })
  t.equal(policy('GET', { kind: 'tags', name: 'team/app' }, {}, names), undefined, 'by hostname')
  t.equal(policy('GET', { kind: 'tags', name: 'ci/runner' }, {}, ['111122223333.dkr.ecr.us-east-2.amazonaws.com', 'tools']), undefined, 'by alias')
  t.equal(policy('GET', { kind: 'tags', name: 'shared/base' }, {}, names), undefined, 'a bare pattern names the repository on every registry')
  t.match(policy('GET', { kind: 'tags', name: 'team/app' }, {}, ['111122223333.dkr.ecr.us-east-2.amazonaws.com', 'tools']), { status: 403 }, 'another registry\'s team/app is not allowed')
  t.match(policy('GET', { kind: 'tags', name: 'team/secret' }, {}, names), { status: 403 }, 'denied under the alias, so denied under the hostname too')
  t.match(policy('POST', { kind: 'upload', name: 'team/app', uploadId: '' }, { mount: D, from: 'team/secret' }, names), { status: 403, message: /mounting from repository "team\/secret"/ })
})
