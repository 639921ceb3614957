import t from 'tap'
import { clientResponseHeaders, rewriteLink, rewriteLocation, upstreamRequestHeaders } from '../../src/upstream/headers.js'
import { registryOrigin, toOrigin } from '../../src/routing/endpoint.js'

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

t.test('response headers: hop-by-hop dropped, challenge dropped, rest kept', async (t) => {
  const headers = clientResponseHeaders({
    connection: 'keep-alive, x-upstream-hop',
    'keep-alive': 'timeout=5',
    'x-upstream-hop': '1',
    'transfer-encoding': 'chunked',
    'www-authenticate': `Basic realm="${ECR}/",service="ecr.amazonaws.com"`,
    'docker-content-digest': 'sha256:aa',
    'content-length': '12',
    location: `${ECR}/v2/app/blobs/uploads/u`,
    link: [`<${ECR}/v2/a/tags/list?last=x&n=1>; rel="next"`]
  }, ECR)
  t.same(headers, {
    'docker-content-digest': 'sha256:aa',
    'content-length': '12',
    location: '/v2/app/blobs/uploads/u',
    link: ['</v2/a/tags/list?last=x&n=1>; rel="next"']
  })
})

t.test('request headers: the client\'s credentials and hop-by-hop fields never go upstream', async (t) => {
  const headers = upstreamRequestHeaders({
    authorization: 'Basic Y2xpZW50',
    'proxy-authorization': 'Basic eA==',
    cookie: 'session=1',
    connection: 'keep-alive, x-private',
    'x-private': 'secret',
    te: 'trailers',
    expect: '100-continue',
    host: 'localhost:5000',
    accept: 'application/vnd.oci.image.manifest.v1+json',
    range: 'bytes=0-99',
    'content-length': '100',
    'user-agent': 'docker/27'
  }, 'Basic ZWNy')
  t.same(headers, {
    accept: 'application/vnd.oci.image.manifest.v1+json',
    range: 'bytes=0-99',
    'content-length': '100',
    'user-agent': 'docker/27',
    authorization: 'Basic ZWNy'
  })
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
