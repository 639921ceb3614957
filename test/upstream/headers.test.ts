import t from 'tap'
import { clientResponseHeaders, upstreamRequestHeaders } from '../../src/upstream/headers.js'
import { nameMapping } from '../../src/routing/names.js'
import { Registry } from '../../src/routing/registry.js'

const ECR = 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com'
const target = { registry: new Registry({ origin: ECR, credential: { id: 'ecr:us-east-2' } }), upstreamName: 'app', clientName: 'app' }

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
  }, nameMapping(target, ECR))
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
