import t from 'tap'
import { classify, type RegistryRequest } from '../../src/oci/grammar.js'
import { Registry } from '../../src/routing/registry.js'
import { Router } from '../../src/routing/resolve.js'

const request = (path: string): RegistryRequest => {
  const classified = classify(path)
  if (!classified.ok) throw new Error(classified.message)
  return classified.request
}

t.test('one registry: every name reaches it, under the name the client used', async (t) => {
  const registry = new Registry({ origin: 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com', credential: { id: 'ecr:us-east-2', region: 'us-east-2' } })
  const router = new Router([registry])
  const target = router.resolve(request('team/app/manifests/1.2'), '')
  t.equal(target.registry, registry)
  t.equal(target.upstreamName, 'team/app')
  t.equal(target.clientName, 'team/app')
  t.equal(router.upstreamPath(target, '/v2/team/app/manifests/1.2'), '/v2/team/app/manifests/1.2')
  const ping = router.resolve(request(''), '')
  t.equal(ping.upstreamName, undefined)
  t.equal(router.upstreamPath(ping, '/v2/'), '/v2/')
})

t.test('a target under another name is sent under the registry\'s name', async (t) => {
  const registry = new Registry({ origin: 'http://127.0.0.1:5001', credential: { id: 'x' } })
  const router = new Router([registry])
  const target = { registry, upstreamName: 'docker-hub/library/nginx', clientName: 'library/nginx' }
  t.equal(router.upstreamPath(target, '/v2/library/nginx/blobs/uploads/'), '/v2/docker-hub/library/nginx/blobs/uploads/')
})

t.test('a router needs a registry; a registry learns its origin once', async (t) => {
  t.throws(() => new Router([]), { message: 'no registry configured' })
  const registry = new Registry({ credential: { id: 'ecr:us-east-2' } })
  t.equal(registry.name, 'pending')
  t.equal(registry.redirectsBlobs, false)
  t.equal(registry.learnOrigin('https://600423610423.dkr.ecr.us-east-2.amazonaws.com'), true)
  t.equal(registry.learnOrigin('https://111111111111.dkr.ecr.us-east-2.amazonaws.com'), false, 'never changes after')
  t.equal(registry.origin, 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com')
})
