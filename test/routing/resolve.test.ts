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

const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const EU = '600423610423.dkr.ecr.eu-west-1.amazonaws.com'

function several (options: { withDefault?: boolean, anyEcr?: boolean } = {}): { router: Router, prod: Registry, eu: Registry } {
  const prod = new Registry({ host: PROD, origin: `https://${PROD}`, credential: { id: 'ecr:us-east-2' }, alias: 'prod', isDefault: options.withDefault ?? true })
  const eu = new Registry({ host: EU, origin: `https://${EU}`, credential: { id: 'ecr:eu-west-1' } })
  const router = new Router([prod, eu], options.anyEcr === true ? { anyEcrRegistry: (host) => new Registry({ host, origin: `https://${host}`, credential: { id: 'ecr:x' } }) } : {})
  return { router, prod, eu }
}

t.test('the routing table: ns, then host, then alias, then the default', async (t) => {
  const { router, prod, eu } = several()
  const cases: Array<[string, string, Registry, string, string, string]> = [
    // path, query, registry, upstream name, client name, addressing
    ['team/app/manifests/1', `ns=${EU}`, eu, 'team/app', 'team/app', 'ns'],
    ['team/app/manifests/1', `ns=${EU.replace(/\./g, '%2E')}`, eu, 'team/app', 'team/app', 'ns'],
    ['team/app/manifests/1', `ns=${EU.toUpperCase()}`, eu, 'team/app', 'team/app', 'ns'],
    [`${EU}/team/app/manifests/1`, '', eu, 'team/app', `${EU}/team/app`, 'host'],
    [`${PROD}/team/app/blobs/uploads/`, '', prod, 'team/app', `${PROD}/team/app`, 'host'],
    ['prod/team/app/tags/list', '', prod, 'team/app', 'prod/team/app', 'alias'],
    ['team/app/manifests/1', '', prod, 'team/app', 'team/app', 'default'],
    ['my.team/app/manifests/1', '', prod, 'my.team/app', 'my.team/app', 'default'],
    // ns wins over a host in the path: containerd names the registry; the path is the repository.
    [`${PROD}/team/app/manifests/1`, `ns=${EU}`, eu, `${PROD}/team/app`, `${PROD}/team/app`, 'ns']
  ]
  for (const [path, query, registry, upstreamName, clientName, addressing] of cases) {
    const target = router.resolve(request(path), query)
    t.equal(target.registry, registry, `${path}?${query}: registry`)
    t.same([target.upstreamName, target.clientName, target.addressing], [upstreamName, clientName, addressing], `${path}?${query}: names`)
  }
})

t.test('refusals: an unconfigured ns or ECR hostname, and no default for a bare name', async (t) => {
  const { router } = several()
  t.throws(() => router.resolve(request('x/manifests/1'), 'ns=registry.example.com'), { name: 'NoRegistryError', message: /^\?ns=registry\.example\.com is not a registry this proxy serves/ })
  t.throws(() => router.resolve(request('999999999999.dkr.ecr.ap-south-1.amazonaws.com/x/manifests/1'), ''), { name: 'NoRegistryError', message: /^999999999999\.dkr\.ecr\.ap-south-1\.amazonaws\.com is not a registry/ })
  t.throws(() => router.resolve(request('999999999999.dkr.ecr-fips.us-east-1.amazonaws.com/x/manifests/1'), ''), { name: 'NoRegistryError' }, 'FIPS form too')
  t.throws(() => router.resolve(request('1.dkr.ecr.x.amazonaws.com/x/manifests/1'), ''), { name: 'NoRegistryError' }, 'a look-alike of the grammar is refused, never taken as a repository')
  const { router: noDefault } = several({ withDefault: false })
  t.throws(() => noDefault.resolve(request('team/app/manifests/1'), ''), { name: 'NoRegistryError', message: /^"team\/app" names no configured registry: registries are addressed by/ })
  t.throws(() => noDefault.resolve(request(''), ''), { name: 'NoRegistryError', message: /^this request names no configured registry/ })
  t.equal(noDefault.resolve(request('prod/team/app/manifests/1'), '').upstreamName, 'team/app', 'an alias still works')
})

t.test('anyEcrRegistry: exact ECR hostnames are served on first use, once', async (t) => {
  const { router } = several({ anyEcr: true })
  const host = '444455556666.dkr.ecr.eu-central-1.amazonaws.com'
  const first = router.resolve(request(`${host}/team/app/manifests/1`), '')
  t.equal(first.registry.host, host)
  t.equal(router.resolve(request('team/app/manifests/1'), `ns=${host}`).registry, first.registry, 'the same registry for ns')
  t.equal(router.registries.length, 3)
  t.equal(router.find(host), first.registry)
  t.throws(() => router.resolve(request('x/manifests/1'), 'ns=registry.example.com'), { name: 'NoRegistryError' })
})

t.test('the query sent upstream: ns dropped, a mount\'s from= named as the registry knows it', async (t) => {
  const { router } = several()
  const digest = `sha256:${'b'.repeat(64)}`
  const byHost = router.resolve(request(`${EU}/team/app/blobs/uploads/`), '')
  t.equal(router.upstreamQuery(byHost, `mount=${digest}&from=${EU}/team/base`), `mount=${digest}&from=team/base`)
  t.equal(router.upstreamQuery(byHost, `mount=${digest}&from=prod/team/base`), '', 'a mount from another registry becomes a plain upload')
  const byAlias = router.resolve(request('prod/team/app/blobs/uploads/'), '')
  t.equal(router.upstreamQuery(byAlias, `mount=${digest}&from=team/base`), `mount=${digest}&from=team/base`, 'a bare from= names the default registry, the same one')
  t.equal(router.upstreamQuery(byAlias, `from=prod%2Fteam%2Fbase&mount=${digest}`), `from=team/base&mount=${digest}`)
  t.equal(router.upstreamQuery(byAlias, 'n=10&last=abc'), 'n=10&last=abc', 'anything else untouched, byte for byte')
  const ns = router.resolve(request('team/app/manifests/1'), `ns=${EU}`)
  t.equal(router.upstreamQuery(ns, `ns=${EU}`), '')
  t.equal(router.upstreamQuery(ns, `x=1&ns=${EU}&y=2`), 'x=1&y=2')
})

t.test('a lone registry is the default without saying so only when no mirrors are configured', async (t) => {
  const { configuredRegistries } = await import('../../src/routing/registries.js')
  const entry = { registry: PROD, fips: false, dualStack: false }
  const region = async () => undefined
  t.equal((await configuredRegistries([entry], region))[0]?.isDefault, true)
  t.equal((await configuredRegistries([entry], region, { mirrors: true }))[0]?.isDefault, false, 'with mirrors, bare names may be Docker Hub names')
  t.equal((await configuredRegistries([{ ...entry, default: true }], region, { mirrors: true }))[0]?.isDefault, true, 'unless it says default: true')
  const router = new Router(await configuredRegistries([entry], region, { mirrors: true }))
  t.equal(router.defaultRegistry, undefined)
})
