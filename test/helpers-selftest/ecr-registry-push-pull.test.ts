import t, { type Test } from 'tap'
import { sha256Digest } from '../helpers/digest.js'
import { startEcrRegistry, type EcrRegistry } from '../helpers/ecr-registry.js'
import { descriptor, imageManifest, MEDIA_TYPE } from '../helpers/oci-image.js'
import { basicAuth, rawRequest, type RawResponse } from '../helpers/raw-http.js'
import { TokenAuthority } from '../helpers/token-authority.js'

const REPO = 'team/app'

async function setup (t: Test, publicOrigin?: string): Promise<{ registry: EcrRegistry, auth: Record<string, string> }> {
  const authority = new TokenAuthority()
  const registry = await startEcrRegistry({ authority, ...(publicOrigin === undefined ? {} : { publicOrigin }) })
  t.teardown(() => registry.close())
  return { registry, auth: basicAuth(authority.issue().authorizationToken) }
}

function json (res: RawResponse): unknown {
  return JSON.parse(res.body.toString('utf8'))
}

t.test('push a 2-layer image with plain HTTP, pull it back through the 307 to S3', async (t) => {
  const { registry, auth } = await setup(t)
  const v2 = `${registry.url}/v2/${REPO}`
  const layer1 = Buffer.from('layer one '.repeat(1000))
  const layer2 = Buffer.from('layer two '.repeat(700))
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))

  // layer 1: POST, one PATCH, PUT without a body
  const started = await rawRequest(`${v2}/blobs/uploads/`, { method: 'POST', headers: auth })
  t.equal(started.status, 202)
  t.match(started.headers.location, new RegExp(`^${registry.url}/v2/${REPO}/blobs/uploads/[0-9a-f-]{36}$`), 'absolute Location, id last')
  t.notOk('docker-upload-uuid' in started.headers, 'no Docker-Upload-UUID (ECR)')
  t.notOk('range' in started.headers)
  const patched = await rawRequest(started.headers.location as string, { method: 'PATCH', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: layer1 })
  t.equal(patched.status, 201, 'ECR answers PATCH with 201')
  t.equal(patched.headers.range, `0-${layer1.length - 1}`)
  t.equal(patched.headers.location, started.headers.location)
  const digest1 = sha256Digest(layer1)
  const committed = await rawRequest(`${patched.headers.location}?digest=${digest1}`, { method: 'PUT', headers: auth })
  t.equal(committed.status, 201)
  t.equal(committed.headers.location, `${registry.url}/v2/${REPO}/blobs/${digest1}`)
  t.equal(committed.headers['docker-content-digest'], digest1)

  // layer 2: POST, then PUT carrying the whole body
  const started2 = await rawRequest(`${v2}/blobs/uploads/`, { method: 'POST', headers: auth })
  const digest2 = sha256Digest(layer2)
  const put2 = await rawRequest(`${started2.headers.location}?digest=${digest2}`, { method: 'PUT', headers: auth, body: layer2 })
  t.equal(put2.status, 201)

  // config: monolithic POST ?digest=
  const configDigest = sha256Digest(config)
  const mono = await rawRequest(`${v2}/blobs/uploads/?digest=${configDigest}`, { method: 'POST', headers: auth, body: config })
  t.equal(mono.status, 201)
  t.equal(mono.headers['docker-content-digest'], configDigest)

  const manifest = imageManifest(descriptor(MEDIA_TYPE.ociConfig, config), [descriptor(MEDIA_TYPE.ociLayer, layer1), descriptor(MEDIA_TYPE.ociLayer, layer2)])
  const pushed = await rawRequest(`${v2}/manifests/v1`, { method: 'PUT', headers: { ...auth, 'content-type': MEDIA_TYPE.ociManifest }, body: manifest })
  t.equal(pushed.status, 201)
  t.equal(pushed.headers['docker-content-digest'], sha256Digest(manifest))
  t.notOk('location' in pushed.headers, 'ECR sends no Location on manifest PUT')

  // pull
  const pulled = await rawRequest(`${v2}/manifests/v1`, { headers: { ...auth, accept: MEDIA_TYPE.ociManifest } })
  t.equal(pulled.status, 200)
  t.equal(pulled.headers['content-type'], MEDIA_TYPE.ociManifest)
  t.equal(pulled.headers['docker-content-digest'], sha256Digest(manifest))
  t.equal(sha256Digest(pulled.body), sha256Digest(manifest))
  const byDigest = await rawRequest(`${v2}/manifests/${sha256Digest(manifest)}`, { method: 'HEAD', headers: auth })
  t.equal(byDigest.status, 200)
  t.equal(byDigest.headers['content-length'], String(manifest.length))
  t.equal(byDigest.body.length, 0)

  const parsed = json(pulled) as { config: { digest: string }, layers: Array<{ digest: string, size: number }> }
  for (const blob of [parsed.config, ...parsed.layers]) {
    const head = await rawRequest(`${v2}/blobs/${blob.digest}`, { method: 'HEAD', headers: auth })
    t.equal(head.status, 200)
    t.equal(head.headers['docker-content-digest'], blob.digest)
    const redirect = await rawRequest(`${v2}/blobs/${blob.digest}`, { headers: auth })
    t.equal(redirect.status, 307)
    t.equal(redirect.body.length, 0, 'a redirect has no body')
    const location = redirect.headers.location as string
    t.ok(location.startsWith(`${registry.s3.url}/`), 'Location is on the S3 host')
    const bytes = await rawRequest(location)
    t.equal(bytes.status, 200)
    t.equal(sha256Digest(bytes.body), blob.digest, 'S3 serves the blob\'s bytes')
    const leaked = await rawRequest(location, { headers: auth })
    t.equal(leaked.status, 400, 'carrying the registry credential to S3 fails')
  }

  const tags = await rawRequest(`${v2}/tags/list`, { headers: auth })
  t.same(json(tags), { name: REPO, tags: ['v1'] })

  const upload = registry.requests.find((r) => r.method === 'PATCH')
  t.equal(upload?.bodyBytes, layer1.length, 'recorded body size')
  t.equal(upload?.headers.authorization, auth.authorization, 'recorded as received')
})

t.test('publicOrigin: absolute Locations, Links and the realm use it', async (t) => {
  const origin = 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com'
  const { registry, auth } = await setup(t, origin)
  t.equal(registry.publicOrigin, origin)
  const started = await rawRequest(`${registry.url}/v2/${REPO}/blobs/uploads/`, { method: 'POST', headers: auth })
  t.match(started.headers.location, new RegExp(`^${origin}/v2/${REPO}/blobs/uploads/[0-9a-f-]{36}$`))
  const challenge = await rawRequest(`${registry.url}/v2/`)
  t.equal(challenge.headers['www-authenticate'], `Basic realm="${origin}/",service="ecr.amazonaws.com"`)
})

t.test('manifests: blobs must exist in this repository; bad JSON; digest references; subject; delete', async (t) => {
  const { registry, auth } = await setup(t)
  const v2 = `${registry.url}/v2/${REPO}`
  const config = Buffer.from('{}')
  const layer = Buffer.from('layer')
  const manifest = imageManifest(descriptor(MEDIA_TYPE.ociConfig, config), [descriptor(MEDIA_TYPE.ociLayer, layer)])
  const put = async (reference: string, body: Buffer, type: string = MEDIA_TYPE.ociManifest): Promise<RawResponse> =>
    await rawRequest(`${v2}/manifests/${reference}`, { method: 'PUT', headers: { ...auth, 'content-type': type }, body })

  registry.putBlob('other/repo', config)
  registry.putBlob('other/repo', layer)
  const missing = await put('v1', manifest)
  t.equal(missing.status, 400)
  const errors = (json(missing) as { errors: Array<{ code: string, message: string, detail: { digests: string[] } }> }).errors
  t.equal(errors[0]?.code, 'MANIFEST_BLOB_UNKNOWN', 'blobs of another repository do not count')
  t.same(errors[0]?.detail.digests, [sha256Digest(config), sha256Digest(layer)])

  registry.putBlob(REPO, config)
  registry.putBlob(REPO, layer)
  t.equal((await put('v1', manifest)).status, 201)

  const invalid = await put('bad', Buffer.from('{not json'))
  t.equal(invalid.status, 400)
  t.equal((json(invalid) as { errors: Array<{ code: string }> }).errors[0]?.code, 'MANIFEST_INVALID')

  const wrongDigest = await put(sha256Digest('something else'), manifest)
  t.equal((json(wrongDigest) as { errors: Array<{ code: string }> }).errors[0]?.code, 'DIGEST_INVALID')

  const signature = imageManifest(descriptor(MEDIA_TYPE.ociConfig, config), [descriptor(MEDIA_TYPE.ociLayer, layer)], {
    artifactType: 'application/vnd.example.signature',
    subject: descriptor(MEDIA_TYPE.ociManifest, manifest),
  })
  const withSubject = await put(sha256Digest(signature), signature)
  t.equal(withSubject.status, 201)
  t.equal(withSubject.headers['oci-subject'], sha256Digest(manifest))

  const unknown = await rawRequest(`${v2}/manifests/nope`, { headers: auth })
  t.equal(unknown.status, 404)
  t.same(json(unknown), { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'Requested image not found' }] })

  const deleted = await rawRequest(`${v2}/manifests/${sha256Digest(manifest)}`, { method: 'DELETE', headers: auth })
  t.equal(deleted.status, 202)
  t.equal((await rawRequest(`${v2}/manifests/v1`, { headers: auth })).status, 404, 'its tag went with it')
})

t.test('blobs and repositories that do not exist; blobs cannot be deleted', async (t) => {
  const { registry, auth } = await setup(t)
  const digest = registry.putBlob(REPO, Buffer.from('x'))
  const absent = sha256Digest('absent')

  const unknownRepo = await rawRequest(`${registry.url}/v2/no/such/repo/manifests/latest`, { headers: auth })
  t.equal(unknownRepo.status, 404)
  t.same(json(unknownRepo), { errors: [{ code: 'NAME_UNKNOWN', message: "The repository with name 'no/such/repo' does not exist in the registry with id '600423610423'" }] })

  const unknownBlob = await rawRequest(`${registry.url}/v2/${REPO}/blobs/${absent}`, { headers: auth })
  t.equal(unknownBlob.status, 404)
  t.same(json(unknownBlob), { errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry', detail: { digest: absent } }] })

  const headUnknown = await rawRequest(`${registry.url}/v2/${REPO}/blobs/${absent}`, { method: 'HEAD', headers: auth })
  t.equal(headUnknown.status, 404)
  t.equal(headUnknown.body.length, 0)

  const deleted = await rawRequest(`${registry.url}/v2/${REPO}/blobs/${digest}`, { method: 'DELETE', headers: auth })
  t.equal(deleted.status, 405)
  t.equal((json(deleted) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNSUPPORTED')

  const badName = await rawRequest(`${registry.url}/v2/Team/App/tags/list`, { headers: auth })
  t.equal(badName.status, 400)
  t.equal((json(badName) as { errors: Array<{ code: string }> }).errors[0]?.code, 'NAME_INVALID')

  const other = await rawRequest(`${registry.url}/v2/${REPO}/whatever`, { headers: auth })
  t.equal(other.status, 404)
  t.equal(other.headers['docker-distribution-api-version'], 'registry/2.0')
  t.ok(Array.isArray((json(other) as { errors: unknown[] }).errors), 'in the error envelope')
})
