import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { rawRequest } from '../helpers/raw-http.js'
import { startS3, type S3StandIn } from '../helpers/s3.js'

const OBJECT = Buffer.from('0123456789abcdefghij')

async function setup (t: Test, now: () => number = Date.now): Promise<{ s3: S3StandIn, opened: Array<[number, number]> }> {
  const opened: Array<[number, number]> = []
  const s3 = await startS3({
    now,
    readBlob: (key) => {
      if (key !== 'layers/sha256:aa') return undefined
      return {
        size: OBJECT.length,
        open: (start, end) => {
          opened.push([start, end])
          return Readable.from([OBJECT.subarray(start, end + 1)])
        },
      }
    },
  })
  t.teardown(() => s3.close())
  return { s3, opened }
}

function xmlCode (body: Buffer): string | undefined {
  return /<Code>([^<]+)<\/Code>/.exec(body.toString())?.[1]
}

t.test('presign: a SigV4 query-signed URL on the stand-in\'s own origin', async (t) => {
  const { s3 } = await setup(t)
  const url = s3.presign('layers/sha256:aa')
  t.match(url, new RegExp(`^${s3.url}/layers/sha256%3Aaa\\?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[A-Z0-9]+%2F\\d{8}%2Fus-east-2%2Fs3%2Faws4_request&X-Amz-Date=\\d{8}T\\d{6}Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=[0-9a-f]{64}$`))
})

t.test('GET and HEAD with a presigned URL: whole object, ETag, length, octet-stream', async (t) => {
  const { s3 } = await setup(t)
  const url = s3.presign('layers/sha256:aa')
  const get = await rawRequest(url)
  t.equal(get.status, 200)
  t.same(get.body, OBJECT)
  t.equal(get.headers['content-length'], String(OBJECT.length))
  t.equal(get.headers['content-type'], 'application/octet-stream')
  t.match(get.headers.etag, /^"[0-9a-f]{32}"$/)
  t.equal(get.headers['accept-ranges'], 'bytes')

  const head = await rawRequest(url, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.body.length, 0)
  t.equal(head.headers['content-length'], String(OBJECT.length))
  t.equal(head.headers.etag, get.headers.etag)
  t.equal(s3.requests.length, 2)
  t.equal(s3.requests[0]?.method, 'GET')
})

t.test('Range: bytes=a-b, bytes=a-, bytes=-n give 206 with Content-Range; past the end gives 416', async (t) => {
  const { s3, opened } = await setup(t)
  const url = s3.presign('layers/sha256:aa')
  const cases: Array<[string, number, number]> = [['bytes=2-5', 2, 5], ['bytes=15-', 15, 19], ['bytes=-4', 16, 19], ['bytes=10-999', 10, 19]]
  for (const [range, start, end] of cases) {
    const res = await rawRequest(url, { headers: { range } })
    t.equal(res.status, 206, range)
    t.same(res.body, OBJECT.subarray(start, end + 1), `${range}: bytes`)
    t.equal(res.headers['content-range'], `bytes ${start}-${end}/${OBJECT.length}`, `${range}: Content-Range`)
    t.equal(res.headers['content-length'], String(end - start + 1), `${range}: Content-Length`)
  }
  t.same(opened, cases.map(([, start, end]) => [start, end]), 'only the requested bytes were read from the source')

  const past = await rawRequest(url, { headers: { range: 'bytes=20-' } })
  t.equal(past.status, 416)
  t.equal(xmlCode(past.body), 'InvalidRange')
  t.equal(past.headers['content-range'], `bytes */${OBJECT.length}`)
})

t.test('any Authorization header: 400 InvalidArgument, as S3 answers a redirected registry credential', async (t) => {
  const { s3 } = await setup(t)
  const res = await rawRequest(s3.presign('layers/sha256:aa'), { headers: { authorization: 'Basic QVdTOnNlY3JldA==' } })
  t.equal(res.status, 400)
  t.equal(res.headers['content-type'], 'application/xml')
  t.match(res.body.toString(), /^<\?xml version="1.0" encoding="UTF-8"\?>\n<Error><Code>InvalidArgument<\/Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified<\/Message>/)
})

t.test('signatures are checked: tampered, unsigned, another key, another Host, expired', async (t) => {
  let now = Date.UTC(2026, 5, 1)
  const { s3 } = await setup(t, () => now)
  const url = s3.presign('layers/sha256:aa')

  const tampered = await rawRequest(url.replace(/X-Amz-Signature=([0-9a-f])/, (_m, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`))
  t.equal(tampered.status, 403)
  t.equal(xmlCode(tampered.body), 'SignatureDoesNotMatch')

  const unsigned = await rawRequest(`${s3.url}/layers/sha256:aa`)
  t.equal(unsigned.status, 403)
  t.equal(xmlCode(unsigned.body), 'AccessDenied')

  const otherKey = await rawRequest(url.replace('/layers/', '/other/'))
  t.equal(xmlCode(otherKey.body), 'SignatureDoesNotMatch', 'a signature is only good for its own key')

  const otherHost = await rawRequest(url, { headers: { host: 'prod-us-east-2-starport-layer-bucket.s3.us-east-2.amazonaws.com' } })
  t.equal(xmlCode(otherHost.body), 'SignatureDoesNotMatch', 'SignedHeaders=host')

  now += 3600 * 1000 + 1
  const expired = await rawRequest(url)
  t.equal(expired.status, 403)
  t.match(expired.body.toString(), /<Code>AccessDenied<\/Code><Message>Request has expired<\/Message>/)
})

t.test('unknown key: 404 NoSuchKey; writes: 405', async (t) => {
  const { s3 } = await setup(t)
  const missing = await rawRequest(s3.presign('layers/sha256:bb'))
  t.equal(missing.status, 404)
  t.equal(xmlCode(missing.body), 'NoSuchKey')
  const put = await rawRequest(s3.presign('layers/sha256:aa'), { method: 'PUT', body: 'x' })
  t.equal(put.status, 405)
  t.equal(xmlCode(put.body), 'MethodNotAllowed')
})
