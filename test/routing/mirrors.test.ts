import t from 'tap'
import { classify, type RegistryRequest } from '../../src/oci/grammar.js'
import { canonicalMirrorHost, mirroredName, pullOnlyRefusal, type Mirror } from '../../src/routing/mirrors.js'
import { nameMapping, renameTagList } from '../../src/routing/names.js'
import { Registry } from '../../src/routing/registry.js'
import { Router } from '../../src/routing/resolve.js'

const request = (path: string): RegistryRequest => {
  const classified = classify(path)
  if (!classified.ok) throw new Error(classified.message)
  return classified.request
}

const PROD = '600423610423.dkr.ecr.us-east-2.amazonaws.com'
const EU = '600423610423.dkr.ecr.eu-west-1.amazonaws.com'

function mirrored (options: { withDefault: boolean }): { router: Router, prod: Registry, eu: Registry } {
  const prod = new Registry({ host: PROD, origin: `https://${PROD}`, credential: { id: 'ecr:us-east-2' }, alias: 'prod', isDefault: options.withDefault })
  const eu = new Registry({ host: EU, origin: `https://${EU}`, credential: { id: 'ecr:eu-west-1' } })
  const mirrors: Mirror[] = [
    { host: 'docker.io', registry: prod, prefix: 'docker-hub' },
    { host: 'registry.k8s.io', registry: eu, prefix: 'k8s' },
    { host: 'quay.io', registry: prod, prefix: 'caches/quay' }
  ]
  return { router: new Router([prod, eu], { mirrors }), prod, eu }
}

t.test('Docker Hub\'s names: three hostnames, one registry; official images under library/', async (t) => {
  t.equal(canonicalMirrorHost('registry-1.docker.io'), 'docker.io')
  t.equal(canonicalMirrorHost('INDEX.docker.io'), 'docker.io')
  t.equal(canonicalMirrorHost('quay.io'), 'quay.io')
  const prod = new Registry({ host: PROD, credential: { id: 'x' } })
  t.equal(mirroredName({ host: 'docker.io', registry: prod, prefix: 'docker-hub' }, 'nginx'), 'docker-hub/library/nginx')
  t.equal(mirroredName({ host: 'docker.io', registry: prod, prefix: 'docker-hub' }, 'bitnami/redis'), 'docker-hub/bitnami/redis')
  t.equal(mirroredName({ host: 'quay.io', registry: prod, prefix: 'quay' }, 'nginx'), 'quay/nginx', 'library/ is Docker Hub\'s alone')
})

t.test('every form of a mirrored name reaches the cache prefix, under the name the client used', async (t) => {
  for (const withDefault of [true, false]) {
    const { router, prod, eu } = mirrored({ withDefault })
    const cases: Array<[string, string, Registry, string, string, string]> = [
      // path, query, registry, upstream name, client name, addressing
      ['library/busybox/manifests/1.36', 'ns=docker.io', prod, 'docker-hub/library/busybox', 'library/busybox', 'ns'],
      ['library/busybox/manifests/1.36', 'ns=registry-1.docker.io', prod, 'docker-hub/library/busybox', 'library/busybox', 'ns'],
      ['pause/manifests/3.9', 'ns=registry.k8s.io', eu, 'k8s/pause', 'pause', 'ns'],
      ['pause/blobs/sha256:' + 'a'.repeat(64), 'ns=REGISTRY.K8S.IO', eu, 'k8s/pause', 'pause', 'ns'],
      ['docker.io/library/nginx/manifests/latest', '', prod, 'docker-hub/library/nginx', 'docker.io/library/nginx', 'host'],
      ['docker.io/nginx/manifests/latest', '', prod, 'docker-hub/library/nginx', 'docker.io/nginx', 'host'],
      ['index.docker.io/nginx/tags/list', '', prod, 'docker-hub/library/nginx', 'index.docker.io/nginx', 'host'],
      ['quay.io/prometheus/node-exporter/manifests/v1', '', prod, 'caches/quay/prometheus/node-exporter', 'quay.io/prometheus/node-exporter', 'host'],
      // A configured registry's own names are untouched by the mirrors.
      [`${EU}/team/app/manifests/1`, '', eu, 'team/app', `${EU}/team/app`, 'host'],
      ['prod/team/app/manifests/1', '', prod, 'team/app', 'prod/team/app', 'alias'],
      ['team/app/manifests/1', `ns=${EU}`, eu, 'team/app', 'team/app', 'ns']
    ]
    for (const [path, query, registry, upstreamName, clientName, addressing] of cases) {
      const target = router.resolve(request(path), query)
      t.equal(target.registry, registry, `${path}?${query}: registry`)
      t.same([target.upstreamName, target.clientName, target.addressing], [upstreamName, clientName, addressing], `${path}?${query} (default: ${withDefault}): names`)
      t.equal(target.mirror !== undefined, !upstreamName.startsWith('team/'), `${path}: mirrored or not`)
    }
  }
})

t.test('no default registry and docker.io mirrored: bare names are Docker Hub names', async (t) => {
  const { router, prod } = mirrored({ withDefault: false })
  const target = router.resolve(request('library/nginx/manifests/latest'), '')
  t.same([target.registry, target.upstreamName, target.clientName, target.addressing], [prod, 'docker-hub/library/nginx', 'library/nginx', 'docker-hub'])
  t.equal(router.resolve(request('nginx/manifests/latest'), '').upstreamName, 'docker-hub/library/nginx')
  t.equal(router.upstreamPath(target, '/v2/library/nginx/manifests/latest'), '/v2/docker-hub/library/nginx/manifests/latest')
  t.throws(() => router.resolve(request(''), ''), { name: 'NoRegistryError' }, 'the ping is the proxy\'s own to answer')
  t.throws(() => router.resolve(request('_catalog'), ''), { name: 'NoRegistryError' }, 'no catalog of Docker Hub')
  t.throws(() => router.resolve(request('ghcr.io/org/app/manifests/1'), ''), { name: 'NoRegistryError', message: /^"ghcr\.io\/org\/app" names no configured registry/ }, 'an unmapped hostname is never a Docker Hub name')
  t.throws(() => router.resolve(request('localhost/app/manifests/1'), ''), { name: 'NoRegistryError' })
  t.throws(() => router.resolve(request('x/manifests/1'), 'ns=ghcr.io'), { name: 'NoRegistryError', message: /^\?ns=ghcr\.io is not a registry this proxy serves/ })
  t.equal(router.dockerHubMirror?.prefix, 'docker-hub')

  const { router: withDefault, prod: prodDefault } = mirrored({ withDefault: true })
  const bare = withDefault.resolve(request('library/nginx/manifests/latest'), '')
  t.same([bare.registry, bare.upstreamName, bare.mirror], [prodDefault, 'library/nginx', undefined], 'a default registry takes bare names; docker.io needs its own port then')
  t.equal(withDefault.dockerHubMirror, undefined)
  const hubOnly = withDefault.resolveDockerHub(request('library/nginx/manifests/latest'))
  t.same([hubOnly.registry, hubOnly.upstreamName, hubOnly.clientName, hubOnly.addressing], [prodDefault, 'docker-hub/library/nginx', 'library/nginx', 'docker-hub'])
  t.equal(withDefault.resolveDockerHub(request('')).upstreamName, undefined)
  t.throws(() => withDefault.resolveDockerHub(request('docker.io/library/nginx/manifests/latest')), { name: 'NoRegistryError', message: /^"docker\.io\/library\/nginx" names a registry host; this port serves only Docker Hub names/ }, 'on the hub port too, a hostname first is never a Docker Hub repository')
  t.equal(withDefault.resolveDockerHub(request('nginx/manifests/latest')).upstreamName, 'docker-hub/library/nginx', 'an official image name is still normalised')
  const noHub = new Router([prodDefault])
  t.throws(() => noHub.resolveDockerHub(request('library/nginx/manifests/latest')), { name: 'NoRegistryError', message: 'docker.io is not mirrored by this proxy' })
})

t.test('a lone registry with default: false leaves bare names to the docker.io mirror', async (t) => {
  const mirrorsOf = (registry: Registry): Mirror[] => [{ host: 'docker.io', registry, prefix: 'docker-hub' }]
  const refused = new Registry({ host: PROD, origin: `https://${PROD}`, credential: { id: 'ecr:us-east-2' }, alias: 'prod', isDefault: false })
  const router = new Router([refused], { mirrors: mirrorsOf(refused) })
  t.equal(router.defaultRegistry, undefined, 'no default registry')
  t.equal(router.dockerHubMirror?.prefix, 'docker-hub', 'bare names are Docker Hub names')
  const pull = router.resolve(request('library/busybox/manifests/1.36'), '')
  t.same([pull.registry, pull.upstreamName, pull.addressing], [refused, 'docker-hub/library/busybox', 'docker-hub'])
  const upload = router.resolve(request('library/x/blobs/uploads/'), '')
  t.match(pullOnlyRefusal('POST', request('library/x/blobs/uploads/'), upload.mirror), { status: 403, code: 'DENIED' }, 'a bare push is refused, not sent to the registry as library/x')
  t.equal(router.resolve(request('prod/team/app/manifests/1'), '').upstreamName, 'team/app', 'the registry by its alias still')

  // Unset, a lone registry is the default, as before.
  const unset = new Registry({ host: PROD, origin: `https://${PROD}`, credential: { id: 'ecr:us-east-2' } })
  const lone = new Router([unset], { mirrors: mirrorsOf(unset) })
  t.equal(lone.defaultRegistry, unset)
  t.same([lone.resolve(request('library/busybox/manifests/1.36'), '').upstreamName, lone.dockerHubMirror], ['library/busybox', undefined])
})

t.test('mirrored names are pull-only', async (t) => {
  const { router } = mirrored({ withDefault: false })
  const mirror = router.resolve(request('library/nginx/manifests/latest'), 'ns=docker.io').mirror
  t.equal(pullOnlyRefusal('GET', request('library/nginx/manifests/latest'), mirror), undefined)
  t.equal(pullOnlyRefusal('HEAD', request(`library/nginx/blobs/sha256:${'a'.repeat(64)}`), mirror), undefined)
  t.equal(pullOnlyRefusal('PUT', request('library/nginx/manifests/latest'), undefined), undefined, 'other names are not concerned')
  t.same(pullOnlyRefusal('PUT', request('library/nginx/manifests/latest'), mirror), { status: 403, code: 'DENIED', message: 'docker.io is served pull-only from a pull-through cache: PUT on a manifest is not allowed' })
  t.same(pullOnlyRefusal('DELETE', request(`library/nginx/blobs/sha256:${'a'.repeat(64)}`), mirror), { status: 403, code: 'DENIED', message: 'docker.io is served pull-only from a pull-through cache: DELETE on a blob is not allowed' })
  t.same(pullOnlyRefusal('GET', request('library/nginx/blobs/uploads/abc'), mirror)?.message, 'docker.io is served pull-only from a pull-through cache: blob uploads is not allowed')
})

t.test('Location, Link and tags/list come back without the prefix', async (t) => {
  const { router } = mirrored({ withDefault: false })
  const target = router.resolve(request('docker.io/nginx/tags/list'), '')
  const mapping = nameMapping(target, `https://${PROD}`)
  t.equal(mapping.location(`https://${PROD}/v2/docker-hub/library/nginx/blobs/sha256:${'b'.repeat(64)}`), `/v2/docker.io/nginx/blobs/sha256:${'b'.repeat(64)}`)
  t.equal(mapping.link(`<https://${PROD}/v2/docker-hub/library/nginx/tags/list?last=opaque%3D&n=2>; rel="next"`), '</v2/docker.io/nginx/tags/list?last=opaque%3D&n=2>; rel="next"')
  t.same(JSON.parse(String(renameTagList(Buffer.from('{"name":"docker-hub/library/nginx","tags":["1"]}'), target))), { name: 'docker.io/nginx', tags: ['1'] })
})
