import { ECRClient, GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr'
import t, { type Test } from 'tap'
import { startEcrApi, type EcrApi, type EcrApiFailure } from '../helpers/ecr-api.js'
import { rawRequest } from '../helpers/raw-http.js'
import { TokenAuthority } from '../helpers/token-authority.js'

const PROXY_ENDPOINT = 'https://600423610423.dkr.ecr.us-east-2.amazonaws.com'

async function setup (t: Test, proxyEndpoint: string | (() => string) = PROXY_ENDPOINT): Promise<EcrApi> {
  const authority = new TokenAuthority()
  const api = await startEcrApi({ authority, proxyEndpoint })
  t.teardown(() => api.close())
  return api
}

function client (t: Test, api: EcrApi, maxAttempts = 1): ECRClient {
  const ecr = new ECRClient({
    region: 'us-east-2',
    endpoint: api.url,
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
    maxAttempts,
  })
  t.teardown(() => ecr.destroy())
  return ecr
}

t.test('the real SDK gets a token: same token, expiresAt as a Date equal to the authority\'s expiry', async (t) => {
  const api = await setup(t)
  const out = await client(t, api).send(new GetAuthorizationTokenCommand({}))

  const issued = api.authority.issued
  t.equal(issued.length, 1)
  const data = out.authorizationData?.[0]
  t.equal(data?.authorizationToken, issued[0]?.authorizationToken)
  t.ok(data?.expiresAt instanceof Date)
  t.equal(data?.expiresAt?.getTime(), issued[0]?.expiresAt)
  t.equal(data?.proxyEndpoint, PROXY_ENDPOINT)

  t.equal(api.calls.length, 1)
  const call = api.calls[0]
  t.equal(call?.target, 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken')
  t.equal(call?.headers['content-type'], 'application/x-amz-json-1.1')
  t.match(call?.headers.authorization, /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/us-east-2\/ecr\/aws4_request, SignedHeaders=[^,]*host[^,]*, Signature=[0-9a-f]{64}$/)
  t.same(call?.body, {})
})

t.test('every call issues a new token; proxyEndpoint may be computed per call', async (t) => {
  let endpoint = 'https://first.example'
  const api = await setup(t, () => endpoint)
  const ecr = client(t, api)
  const first = await ecr.send(new GetAuthorizationTokenCommand({}))
  endpoint = 'https://second.example'
  const second = await ecr.send(new GetAuthorizationTokenCommand({}))

  t.not(first.authorizationData?.[0]?.authorizationToken, second.authorizationData?.[0]?.authorizationToken)
  t.equal(first.authorizationData?.[0]?.proxyEndpoint, 'https://first.example')
  t.equal(second.authorizationData?.[0]?.proxyEndpoint, 'https://second.example')
  t.equal(api.authority.issued.length, 2)
})

t.test('each failure kind surfaces as the SDK error of that name', async (t) => {
  const expected: Record<EcrApiFailure, { status: number, message: RegExp }> = {
    AccessDeniedException: { status: 400, message: /^User: arn:aws:iam::600423610423:user\/dev is not authorized to perform: ecr:GetAuthorizationToken/ },
    ThrottlingException: { status: 400, message: /Rate exceeded/ },
    ServerException: { status: 500, message: /internal error/ },
    UnrecognizedClientException: { status: 400, message: /security token included in the request is invalid/ },
  }
  const api = await setup(t)
  const ecr = client(t, api)
  for (const [failure, want] of Object.entries(expected) as Array<[EcrApiFailure, typeof expected[EcrApiFailure]]>) {
    api.failNext(failure)
    const err = await ecr.send(new GetAuthorizationTokenCommand({})).then(() => undefined, (e: unknown) => e as Error & { $metadata: { httpStatusCode?: number } })
    t.equal(err?.name, failure, `${failure}: error name`)
    t.match(err?.message, want.message, `${failure}: message`)
    t.equal(err?.$metadata.httpStatusCode, want.status, `${failure}: status`)
  }
  t.equal(api.authority.issued.length, 0, 'no token issued for a failed call')
  await t.resolves(ecr.send(new GetAuthorizationTokenCommand({})), 'the failures were used up')
})

t.test('failNext(kind, times) fails exactly that many calls', async (t) => {
  const api = await setup(t)
  const ecr = client(t, api)
  api.failNext('AccessDeniedException', 2)
  await t.rejects(ecr.send(new GetAuthorizationTokenCommand({})), { name: 'AccessDeniedException' })
  await t.rejects(ecr.send(new GetAuthorizationTokenCommand({})), { name: 'AccessDeniedException' })
  await t.resolves(ecr.send(new GetAuthorizationTokenCommand({})))
})

t.test('the SDK\'s own retry retries a ThrottlingException when maxAttempts > 1', async (t) => {
  const api = await setup(t)
  api.failNext('ThrottlingException')
  const out = await client(t, api, 2).send(new GetAuthorizationTokenCommand({}))

  t.equal(out.authorizationData?.[0]?.authorizationToken, api.authority.issued[0]?.authorizationToken)
  t.equal(api.calls.length, 2, 'one throttled call, one retry')
  t.match(api.calls[1]?.headers['amz-sdk-request'], /attempt=2/)
})

t.test('setDown: connections are dropped without an answer, and it comes back', async (t) => {
  const api = await setup(t)
  const ecr = client(t, api)
  await ecr.send(new GetAuthorizationTokenCommand({}))
  api.setDown(true)
  const err = await ecr.send(new GetAuthorizationTokenCommand({})).then(() => undefined, (e: unknown) => e as Error & { $metadata?: { httpStatusCode?: number } })
  t.ok(err instanceof Error, 'the call fails')
  t.equal(err?.$metadata?.httpStatusCode, undefined, 'no HTTP status: nothing answered')
  t.equal(api.calls.length, 1, 'the request never reached the handler')
  api.setDown(false)
  await t.resolves(ecr.send(new GetAuthorizationTokenCommand({})))
})

t.test('requests that are not signed, or name another operation, fail the AWS JSON way', async (t) => {
  const api = await setup(t)
  const json = { 'content-type': 'application/x-amz-json-1.1' }
  const unsigned = await rawRequest(api.url, {
    method: 'POST',
    headers: { ...json, 'x-amz-target': 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken' },
    body: '{}',
  })
  t.equal(unsigned.status, 400)
  t.equal(unsigned.headers['x-amzn-errortype'], 'MissingAuthenticationTokenException')
  t.same(JSON.parse(unsigned.body.toString()), { __type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' })

  const signature = `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-2/ecr/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`
  const other = await rawRequest(api.url, {
    method: 'POST',
    headers: { ...json, 'x-amz-target': 'AmazonEC2ContainerRegistry_V20150921.DescribeRepositories', 'x-amz-date': '20260101T000000Z', authorization: signature },
    body: '{}',
  })
  t.equal(other.status, 400)
  t.equal(other.headers['x-amzn-errortype'], 'UnknownOperationException')
  t.ok(other.headers['x-amzn-requestid'])

  const wrongService = await rawRequest(api.url, {
    method: 'POST',
    headers: { ...json, 'x-amz-target': 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken', 'x-amz-date': '20260101T000000Z', authorization: signature.replace('/ecr/', '/s3/') },
    body: '{}',
  })
  t.equal(wrongService.headers['x-amzn-errortype'], 'InvalidSignatureException')
  t.equal(api.authority.issued.length, 0)
})
