import t from 'tap'
import { nameMapping, renameTagList, rewriteLink, rewriteLocation } from '../../src/routing/names.js'
import { registryOrigin, toOrigin } from '../../src/routing/endpoint.js'
import { Registry } from '../../src/routing/registry.js'

const ECR = 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com'

t.test('rewriteLocation', async (t) => {
  t.equal(rewriteLocation(`${ECR}/v2/app/blobs/uploads/0f9e7a2c-1b2d-4c5e-8f90-123456789abc`, ECR), '/v2/app/blobs/uploads/0f9e7a2c-1b2d-4c5e-8f90-123456789abc', 'UUID stays the last segment')
  t.equal(rewriteLocation(`${ECR}/v2/app/blobs/uploads/u?_state=a%2Bb%3D&x=1`, ECR), '/v2/app/blobs/uploads/u?_state=a%2Bb%3D&x=1', 'query byte for byte')
  t.equal(rewriteLocation(`${ECR}:443/v2/app/blobs/sha256:ab`, ECR), '/v2/app/blobs/sha256:ab', 'explicit default port is the same origin')
  t.equal(rewriteLocation('HTTPS://600423610423.DKR.ECR.US-EAST-2.AMAZONAWS.COM/v2/x', ECR), '/v2/x', 'host case does not matter')
  t.equal(rewriteLocation('/v2/app/blobs/uploads/u', ECR), '/v2/app/blobs/uploads/u', 'relative stays')
  const s3 = 'https://prod-us-east-2-starport-layer-bucket.s3.us-east-2.amazonaws.com/a/b?X-Amz-Signature=abc'
  t.equal(rewriteLocation(s3, ECR), s3, 'S3 redirects pass through unchanged')
  t.equal(rewriteLocation(`${ECR}.evil.example/v2/x`, ECR), `${ECR}.evil.example/v2/x`, 'a look-alike host is not ours')
  t.equal(rewriteLocation(ECR, ECR), '/')
  t.equal(rewriteLocation(`${ECR}?x`, ECR), '?x')
  t.equal(rewriteLocation('not a url', ECR), 'not a url')
})

t.test('rewriteLink keeps rel and the opaque cursor', async (t) => {
  t.equal(rewriteLink(`<${ECR}/v2/app/tags/list?last=ukD72mdD%2FmC8b5xV3susmJzzaTgp3hKwR9nRUW1yZZ6dLc5kfZtSFatmTlbNySh8oi6WxdvBB7ZQ%3D&n=2>; rel="next"`, ECR),
    '</v2/app/tags/list?last=ukD72mdD%2FmC8b5xV3susmJzzaTgp3hKwR9nRUW1yZZ6dLc5kfZtSFatmTlbNySh8oi6WxdvBB7ZQ%3D&n=2>; rel="next"')
  t.equal(rewriteLink('</v2/app/tags/list?n=2&last=b>; rel="next"', ECR), '</v2/app/tags/list?n=2&last=b>; rel="next"')
})

t.test('a target under another name maps Location, Link and the tags/list name back', async (t) => {
  const registry = new Registry({ origin: ECR, credential: { id: 'ecr:us-east-2', region: 'us-east-2' } })
  const target = { registry, upstreamName: 'docker-hub/library/nginx', clientName: 'library/nginx' }
  const names = nameMapping(target, ECR)
  t.equal(names.location(`${ECR}/v2/docker-hub/library/nginx/blobs/uploads/u?_state=x`), '/v2/library/nginx/blobs/uploads/u?_state=x')
  t.equal(names.location('/v2/other/blobs/uploads/u'), '/v2/other/blobs/uploads/u', 'another repository is left alone')
  t.equal(names.link(`<${ECR}/v2/docker-hub/library/nginx/tags/list?last=a&n=1>; rel="next"`), '</v2/library/nginx/tags/list?last=a&n=1>; rel="next"')
  t.same(JSON.parse(String(renameTagList(Buffer.from('{"name":"docker-hub/library/nginx","tags":["1"]}'), target))), { name: 'library/nginx', tags: ['1'] })
  t.equal(renameTagList(Buffer.from('not json'), target), undefined, 'a body that is not a listing passes as it is')
  t.equal(renameTagList(Buffer.from('{"name":"docker-hub/library/nginx"}'), { ...target, clientName: target.upstreamName }), undefined, 'same name: untouched')
  t.equal(registry.name, '600423610423.dkr.ecr.us-east-2.amazonaws.com')
  t.equal(registry.redirectsBlobs, true, 'ECR sends blobs to S3')
  t.equal(new Registry({ origin: 'http://127.0.0.1:5001', credential: { id: 'x' } }).redirectsBlobs, false, 'a local registry may send the bytes')
})

t.test('registry origins for every partition and endpoint flavour', async (t) => {
  t.equal(registryOrigin({ registryId: '600423610423', region: 'us-east-2' }), ECR)
  t.equal(registryOrigin({ registryId: '600423610423', region: 'us-east-2', fips: true }), 'https://600423610423.dkr.ecr-fips.us-east-2.amazonaws.com')
  t.equal(registryOrigin({ registryId: '600423610423', region: 'us-east-2', dualStack: true }), 'https://600423610423.dkr-ecr.us-east-2.on.aws')
  t.equal(registryOrigin({ registryId: '600423610423', region: 'us-gov-west-1', dualStack: true, fips: true }), 'https://600423610423.dkr-ecr-fips.us-gov-west-1.on.aws')
  t.equal(registryOrigin({ registryId: '600423610423', region: 'cn-north-1' }), 'https://600423610423.dkr.ecr.cn-north-1.amazonaws.com.cn')
  t.equal(registryOrigin({ registryId: '600423610423', region: 'cn-northwest-1', dualStack: true }), 'https://600423610423.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn')
  t.throws(() => registryOrigin({ registryId: '600423610423', region: 'cn-north-1', fips: true }), { message: 'ECR has no FIPS endpoint in cn-north-1' })
  t.equal(toOrigin('https://600423610423.dkr.ecr.us-east-2.amazonaws.com/'), ECR)
  t.equal(toOrigin('http://127.0.0.1:5001'), 'http://127.0.0.1:5001')
  t.throws(() => toOrigin('ftp://x'), { message: 'registry URL must be http:// or https://, got ftp:' })
})
