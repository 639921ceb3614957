import t, { type Test } from 'tap'
import { sha256Digest } from '../helpers/digest.js'
import { startEcrRegistry, type EcrRegistry } from '../helpers/ecr-registry.js'
import { descriptor, imageManifest, MEDIA_TYPE } from '../helpers/oci-image.js'
import { basicAuth, rawRequest, type RawResponse } from '../helpers/raw-http.js'
import { TokenAuthority } from '../helpers/token-authority.js'

const REPO = 'team/app'
const LINK = /^<([^>]+)>; rel="next"$/

async function setup (t: Test, tags: string[] = []): Promise<{ registry: EcrRegistry, auth: Record<string, string> }> {
  const authority = new TokenAuthority()
  const registry = await startEcrRegistry({ authority, publicOrigin: 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com' })
  t.teardown(() => registry.close())
  const manifest = Buffer.from('{"schemaVersion":2}')
  for (const tag of tags) registry.putManifest(REPO, tag, manifest, MEDIA_TYPE.ociManifest)
  return { registry, auth: basicAuth(authority.issue().authorizationToken) }
}

function tagsOf (res: RawResponse): string[] {
  return (JSON.parse(res.body.toString()) as { tags: string[] }).tags
}

/** Follows an absolute Link of the public origin to the same path and query on the test server. */
function local (registry: EcrRegistry, link: string): string {
  return registry.url + link.slice(registry.publicOrigin.length)
}

t.test('tags/list pagination round trip: absolute Link, opaque percent-encoded last=', async (t) => {
  const tags = ['v1', 'v10', 'v2', 'latest', 'alpha', 'beta', 'rc']
  const { registry, auth } = await setup(t, tags)
  const seen: string[] = []
  let url = `${registry.url}/v2/${REPO}/tags/list?n=3`
  const links: string[] = []
  for (let page = 0; page < 10; page++) {
    const res = await rawRequest(url, { headers: auth })
    t.equal(res.status, 200)
    seen.push(...tagsOf(res))
    const link = res.headers.link
    if (link === undefined) break
    const target = LINK.exec(link)?.[1] as string
    links.push(target)
    url = local(registry, target)
  }
  t.same(seen, [...tags].sort(), 'every tag once, sorted')
  t.equal(links.length, 2)
  for (const link of links) {
    t.match(link, /^https:\/\/600423610423\.dkr\.ecr\.us-east-2\.amazonaws\.com\/v2\/team\/app\/tags\/list\?last=[A-Za-z0-9%]+&n=3$/)
    t.match(link, /%2B/)
    t.match(link, /%2F/)
    t.match(link, /%3D/)
    t.notMatch(link, /last=[^&]*(?:latest|beta|alpha)/, 'the last tag is not readable in the token')
  }
})

t.test('a re-encoded or decoded last= is rejected', async (t) => {
  const { registry, auth } = await setup(t, ['a', 'b', 'c'])
  const first = await rawRequest(`${registry.url}/v2/${REPO}/tags/list?n=1`, { headers: auth })
  const next = local(registry, LINK.exec(first.headers.link as string)?.[1] as string)
  const decoded = next.replace(/last=([^&]+)/, (_m, v: string) => `last=${decodeURIComponent(v)}`)
  const doubled = next.replace(/last=([^&]+)/, (_m, v: string) => `last=${encodeURIComponent(v)}`)
  for (const [label, url] of [['decoded', decoded], ['double-encoded', doubled]] as const) {
    const res = await rawRequest(url, { headers: auth })
    t.equal(res.status, 400, label)
    t.equal((JSON.parse(res.body.toString()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNSUPPORTED', label)
  }
  t.same(tagsOf(await rawRequest(next, { headers: auth })), ['b'], 'the token as given still works')

  const otherRepo = await rawRequest(next.replace(`/v2/${REPO}/`, '/v2/other/'), { headers: auth })
  t.equal(otherRepo.status, 404, 'NAME_UNKNOWN before the token is even read')
})

t.test('n: ECR pages at 100 without it, rejects more than 1000', async (t) => {
  const tags = Array.from({ length: 150 }, (_, i) => `t${String(i).padStart(3, '0')}`)
  const { registry, auth } = await setup(t, tags)
  const first = await rawRequest(`${registry.url}/v2/${REPO}/tags/list`, { headers: auth })
  t.equal(tagsOf(first).length, 100)
  const link = LINK.exec(first.headers.link as string)?.[1] as string
  t.notMatch(link, /[?&]n=/, 'no n= when the client gave none')
  const rest = await rawRequest(local(registry, link), { headers: auth })
  t.same(tagsOf(rest), tags.slice(100))
  t.equal(rest.headers.link, undefined)

  const all = await rawRequest(`${registry.url}/v2/${REPO}/tags/list?n=1000`, { headers: auth })
  t.equal(tagsOf(all).length, 150)
  t.equal(all.headers.link, undefined)

  const tooMany = await rawRequest(`${registry.url}/v2/${REPO}/tags/list?n=10000`, { headers: auth })
  t.equal(tooMany.status, 400)
  t.same(JSON.parse(tooMany.body.toString()), {
    errors: [{ code: 'UNSUPPORTED', message: "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value less than or equal to 1000'" }],
  })
})

t.test('_catalog lists repositories with the same paging', async (t) => {
  const { registry, auth } = await setup(t)
  for (const name of ['b/one', 'a/two', 'c']) registry.putBlob(name, Buffer.from(name))
  const first = await rawRequest(`${registry.url}/v2/_catalog?n=2`, { headers: auth })
  t.equal(first.status, 200)
  t.same(JSON.parse(first.body.toString()), { repositories: ['a/two', 'b/one'] })
  const next = await rawRequest(local(registry, LINK.exec(first.headers.link as string)?.[1] as string), { headers: auth })
  t.same(JSON.parse(next.body.toString()), { repositories: ['c'] })
})

t.test('referrers: an OCI index of the manifests whose subject is the digest, artifactType filter', async (t) => {
  const { registry, auth } = await setup(t)
  const config = Buffer.from('{}')
  registry.putBlob(REPO, config)
  const image = imageManifest(descriptor(MEDIA_TYPE.ociConfig, config), [])
  const imageDigest = registry.putManifest(REPO, 'v1', image, MEDIA_TYPE.ociManifest)
  const subject = descriptor(MEDIA_TYPE.ociManifest, image)
  const sig = imageManifest(descriptor(MEDIA_TYPE.ociConfig, config), [], { artifactType: 'application/vnd.example.sig', subject, annotations: { kind: 'sig' } })
  const sbom = imageManifest(descriptor(MEDIA_TYPE.ociConfig, config), [], { artifactType: 'application/vnd.example.sbom', subject })
  for (const body of [sig, sbom]) {
    const res = await rawRequest(`${registry.url}/v2/${REPO}/manifests/${sha256Digest(body)}`, { method: 'PUT', headers: { ...auth, 'content-type': MEDIA_TYPE.ociManifest }, body })
    t.equal(res.status, 201)
  }

  const all = await rawRequest(`${registry.url}/v2/${REPO}/referrers/${imageDigest}`, { headers: auth })
  t.equal(all.status, 200)
  t.equal(all.headers['content-type'], MEDIA_TYPE.ociIndex)
  t.equal(all.headers['oci-filters-applied'], undefined)
  const index = JSON.parse(all.body.toString()) as { schemaVersion: number, mediaType: string, manifests: Array<{ digest: string, artifactType: string, size: number }> }
  t.equal(index.schemaVersion, 2)
  t.equal(index.mediaType, MEDIA_TYPE.ociIndex)
  t.same(index.manifests.map((m) => m.digest).sort(), [sha256Digest(sig), sha256Digest(sbom)].sort())

  const filtered = await rawRequest(`${registry.url}/v2/${REPO}/referrers/${imageDigest}?artifactType=application/vnd.example.sig`, { headers: auth })
  t.equal(filtered.headers['oci-filters-applied'], 'artifactType')
  t.same(JSON.parse(filtered.body.toString()).manifests, [
    { mediaType: MEDIA_TYPE.ociManifest, digest: sha256Digest(sig), size: sig.length, artifactType: 'application/vnd.example.sig', annotations: { kind: 'sig' } },
  ])

  const none = await rawRequest(`${registry.url}/v2/${REPO}/referrers/${sha256Digest('none')}`, { headers: auth })
  t.same(JSON.parse(none.body.toString()).manifests, [], 'an unknown subject has an empty index')
})
