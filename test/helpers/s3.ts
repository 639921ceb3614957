import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { closeServer, listen } from './listen.js'

export interface S3Blob { size: number, open: (start: number, end: number) => Readable }

export interface S3StandIn {
  url: string
  requests: Array<{ method: string, url: string, headers: IncomingHttpHeaders }>
  presign (key: string): string
  close (): Promise<void>
}

export interface S3Options {
  readBlob: (key: string) => S3Blob | undefined
  /** Clock used to date presigned URLs and check their expiry; Date.now by default. */
  now?: () => number
  host?: string
  port?: number
}

const ALGORITHM = 'AWS4-HMAC-SHA256'
const ACCESS_KEY_ID = 'ASIAS3STANDINEXAMPLE'
const REGION = 'us-east-2'
const EXPIRES_SECONDS = 3600

interface S3Error { status: number, code: string, message: string }

const ONLY_ONE_AUTH: S3Error = {
  status: 400,
  code: 'InvalidArgument',
  message: 'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified',
}
const ACCESS_DENIED: S3Error = { status: 403, code: 'AccessDenied', message: 'Access Denied' }
const EXPIRED: S3Error = { status: 403, code: 'AccessDenied', message: 'Request has expired' }
const SIGNATURE_MISMATCH: S3Error = {
  status: 403,
  code: 'SignatureDoesNotMatch',
  message: 'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
}
const NO_SUCH_KEY: S3Error = { status: 404, code: 'NoSuchKey', message: 'The specified key does not exist.' }
const METHOD_NOT_ALLOWED: S3Error = { status: 405, code: 'MethodNotAllowed', message: 'The specified method is not allowed against this resource.' }
const INVALID_RANGE: S3Error = { status: 416, code: 'InvalidRange', message: 'The requested range is not satisfiable' }

/** 20240102T030405Z, the X-Amz-Date form. */
function amzDate (ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')
}

function parseAmzDate (value: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value)
  if (m === null) return Number.NaN
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]))
}

function encodeKey (key: string): string {
  return key.split('/').map(encodeURIComponent).join('/')
}

function safeDecode (path: string): string | undefined {
  try {
    return decodeURIComponent(path)
  } catch {
    return undefined
  }
}

type ByteRange = { start: number, end: number } | 'unsatisfiable' | undefined

/** Parses a single `bytes=` range; S3 ignores multi-range and malformed headers (full object). */
function parseRange (header: string | undefined, size: number): ByteRange {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? '')
  if (m === null || (m[1] === '' && m[2] === '')) return undefined
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (m[2] !== '' && Number(m[2]) < start) return undefined
  if (start >= size) return 'unsatisfiable'
  return { start, end }
}

function sendS3Error (req: IncomingMessage, res: ServerResponse, error: S3Error, extra: Record<string, string> = {}): void {
  const requestId = randomUUID().replace(/-/g, '').slice(0, 16).toUpperCase()
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${error.code}</Code><Message>${error.message}</Message>` +
    `<RequestId>${requestId}</RequestId><HostId>${randomBytes(48).toString('base64')}</HostId></Error>`
  res.writeHead(error.status, {
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
    'x-amz-request-id': requestId,
    server: 'AmazonS3',
    ...extra,
  })
  res.end(req.method === 'HEAD' ? undefined : body)
}

/**
 * The S3 bucket ECR redirects blob downloads to: serves objects only through URLs made by
 * `presign`, rejects any Authorization header the way S3 does, honours Range, streams.
 */
export async function startS3 (opts: S3Options): Promise<S3StandIn> {
  const now = opts.now ?? Date.now
  const secret = randomBytes(32)
  const requests: S3StandIn['requests'] = []
  let origin = ''

  const sign = (key: string, credential: string, date: string, expires: string): string =>
    createHmac('sha256', secret)
      .update([ALGORITHM, key, credential, date, expires, 'host', new URL(origin).host].join('\n'))
      .digest('hex')

  function presign (key: string): string {
    const date = amzDate(now())
    const credential = `${ACCESS_KEY_ID}/${date.slice(0, 8)}/${REGION}/s3/aws4_request`
    const expires = String(EXPIRES_SECONDS)
    const query = new URLSearchParams({
      'X-Amz-Algorithm': ALGORITHM,
      'X-Amz-Credential': credential,
      'X-Amz-Date': date,
      'X-Amz-Expires': expires,
      'X-Amz-SignedHeaders': 'host',
      'X-Amz-Signature': sign(key, credential, date, expires),
    })
    return `${origin}/${encodeKey(key)}?${query.toString()}`
  }

  /** Checks the presigned query; returns the object key when the request may proceed. */
  function authorize (req: IncomingMessage, url: URL): string | S3Error {
    if (req.headers.authorization !== undefined) return ONLY_ONE_AUTH
    if (req.method !== 'GET' && req.method !== 'HEAD') return METHOD_NOT_ALLOWED
    const q = url.searchParams
    const [algorithm, credential, date, expires, signedHeaders, signature] =
      ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature'].map((name) => q.get(name))
    if (algorithm == null || credential == null || date == null || expires == null || signature == null) return ACCESS_DENIED
    if (now() > parseAmzDate(date) + Number(expires) * 1000) return EXPIRED
    const key = safeDecode(url.pathname.slice(1))
    if (key === undefined) return SIGNATURE_MISMATCH
    // SignedHeaders=host: a request that reaches us under another Host fails, as it would on S3.
    const expected = Buffer.from(sign(key, credential, date, expires))
    const given = Buffer.from(signature)
    const hostMatches = req.headers.host === new URL(origin).host
    if (algorithm !== ALGORITHM || signedHeaders !== 'host' || !hostMatches ||
      given.length !== expected.length || !timingSafeEqual(given, expected)) return SIGNATURE_MISMATCH
    return key
  }

  async function serveObject (req: IncomingMessage, res: ServerResponse, key: string): Promise<void> {
    const blob = opts.readBlob(key)
    if (blob === undefined) return sendS3Error(req, res, NO_SUCH_KEY)
    const range = parseRange(req.headers.range, blob.size)
    if (range === 'unsatisfiable') return sendS3Error(req, res, INVALID_RANGE, { 'content-range': `bytes */${blob.size}` })
    const start = range?.start ?? 0
    const end = range?.end ?? blob.size - 1
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'content-length': end - start + 1,
      etag: `"${createHash('md5').update(key).digest('hex')}"`,
      'accept-ranges': 'bytes',
      'last-modified': new Date(0).toUTCString(),
      'x-amz-request-id': randomUUID(),
      server: 'AmazonS3',
    }
    if (range !== undefined) headers['content-range'] = `bytes ${start}-${end}/${blob.size}`
    res.writeHead(range === undefined ? 200 : 206, headers)
    if (req.method === 'HEAD' || blob.size === 0) {
      res.end()
      return
    }
    await pipeline(blob.open(start, end), res)
  }

  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    const url = new URL(req.url ?? '/', origin)
    const authorized = authorize(req, url)
    if (typeof authorized !== 'string') return sendS3Error(req, res, authorized)
    serveObject(req, res, authorized).catch(() => res.destroy())
  })
  origin = await listen(server, opts.host, opts.port)

  return {
    url: origin,
    requests,
    presign,
    close: async () => await closeServer(server),
  }
}
