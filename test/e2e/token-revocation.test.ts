/**
 * A token revoked before it expires (gone from the registry's htpasswd at once): the registry
 * refuses it, the proxy fetches a new one and replays, and the client's pull succeeds.
 */
import { join } from 'node:path'
import t from 'tap'
import { Skopeo } from './harness/clients.js'
import { seedDirect } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { skopeoPull } from './harness/pulls.js'
import { RegistryHttp } from './harness/registry-http.js'
import { registryRequests } from './harness/registry.js'
import { startStack } from './harness/stack.js'
import { tempDir } from './harness/util.js'

const stack = await startStack(t)
const dir = tempDir(t, 'revocation')
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const stored = await seedDirect(stack, skopeo, images, 'e2e/revoked')

t.test('a revoked token: the next pull still succeeds', async (t) => {
  const v2s2 = stored.get('v2s2')
  if (v2s2 === undefined) throw new Error('seeding failed')
  const image = `${stack.proxy.host}/e2e/revoked:v2s2`
  await skopeoPull(skopeo, dir, image, v2s2)
  const revoked = stack.tokens.current()
  if (revoked === undefined) throw new Error('the proxy pulled without a token the registry knows')
  const issuedBefore = stack.tokens.issued.length

  stack.tokens.revoke(revoked)
  const asRevoked = await new RegistryHttp(stack.registry.url, { user: 'AWS', password: revoked.password }).request('GET', '/v2/')
  t.equal(asRevoked.status, 401, 'the registry refuses the revoked token')
  const refusedBefore = registryRequests(stack.registry).filter((line) => line.status === 401).length

  await skopeoPull(skopeo, dir, image, v2s2)
  t.pass('skopeo pulled through the proxy after the revocation')
  t.equal(stack.tokens.issued.length, issuedBefore + 1, 'the proxy fetched exactly one new token')
  const replacement = stack.tokens.current()
  t.ok(replacement !== undefined && replacement !== revoked, 'and the registry accepts the new one')
  const refused = registryRequests(stack.registry).filter((line) => line.status === 401).slice(refusedBefore)
  t.ok(refused.length >= 1, `the registry did refuse the revoked token on the way (${refused.map((line) => `${line.method} ${line.uri}`).join(', ')})`)

  await skopeoPull(skopeo, dir, `${stack.proxy.host}/e2e/revoked:index`, stored.get('index') ?? v2s2)
  t.pass('and later pulls go on with the new token')
})
