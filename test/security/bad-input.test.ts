import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { startStack } from '../helpers/stack.js'
import { rawExchange, tempDir } from './support.js'

const D = `sha256:${'a'.repeat(64)}`
const D2 = `sha256:${'b'.repeat(64)}`
const UUID = '0f9e7a2c-1b2d-4c5e-8f90-123456789abc'

interface Case { name: string, bytes: string | Buffer }

/** A request with a Host header unless the test writes its own head. */
function req (method: string, target: string, headers: string[] = [], body = ''): string {
  return `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n${body}`
}
function get (target: string, headers: string[] = []): Case {
  return { name: `GET ${target.length > 80 ? `${target.slice(0, 80)}…` : target}${headers.length > 0 ? ` [${headers.join('; ').slice(0, 60)}]` : ''}`, bytes: req('GET', target, headers) }
}
function raw (name: string, bytes: string | Buffer): Case {
  return { name, bytes }
}

const badNames = [
  'Team/app', 'team//app', 'team/app/', '-team/app', 'team_/app', 'team..app', 'a'.repeat(256), `${'ab/'.repeat(90)}x`,
  'team/app%2Fx', 'team%2fapp', 'team/%2e%2e/app', 'team/./app', 'team/../app', '../team', 'team/app;x', 'team/app\\x',
  'team/app@x', 'team/app!', 'team/app~x', 'team/APP', 'team/app.', 'team/.app', 'team/app-', '%00team', 'team/app%20x',
  'team/app$', 'team/(app)', "team/app'", 'team/app*', 'team/app,x'
]
const badTags = ['-bad', '.bad', 't'.repeat(129), 'Bad:tag', 'bad+tag', 'bad%20tag', 'bad~tag', '..', '.', 'bad=tag']
const badDigests = [
  'sha256:xyz', `sha256:${'A'.repeat(64)}`, `sha256:${'a'.repeat(63)}`, `sha256:${'a'.repeat(65)}`, `sha512:${'a'.repeat(64)}`,
  `SHA256:${'a'.repeat(64)}`, 'sha256', ':abc', 'sha256::abc', 'sha256:abc%00', 'latest', `sha256:${'a'.repeat(64)}%0a`
]
const badUploadIds = ['..', '.', 'abc%00', 'a'.repeat(1025), 'abc;x', 'abc@x', 'abc%2Fdef', 'abc\\def']

const cases: Case[] = [
  // repository names, tags, digests, upload ids against the spec grammar
  ...badNames.map((name) => get(`/v2/${name}/manifests/latest`)),
  ...badTags.map((tag) => get(`/v2/team/app/manifests/${tag}`)),
  ...badDigests.map((digest) => get(`/v2/team/app/blobs/${digest}`)),
  ...badUploadIds.map((id) => get(`/v2/team/app/blobs/uploads/${id}`)),
  get('/v2/team/app/referrers/sha256:nothex'),
  // query parameters
  { name: 'POST ?digest=bad', bytes: req('POST', '/v2/team/app/blobs/uploads/?digest=sha256:xyz', ['Content-Length: 0']) },
  { name: 'POST two digests', bytes: req('POST', `/v2/team/app/blobs/uploads/?digest=${D}&digest=${D2}`, ['Content-Length: 0']) },
  { name: 'POST ?mount=bad', bytes: req('POST', '/v2/team/app/blobs/uploads/?mount=bad&from=team/other', ['Content-Length: 0']) },
  { name: 'POST mount from=Bad/Name', bytes: req('POST', `/v2/team/app/blobs/uploads/?mount=${D}&from=Bad/Name`, ['Content-Length: 0']) },
  { name: 'POST mount from with ..', bytes: req('POST', `/v2/team/app/blobs/uploads/?mount=${D}&from=team%2F..%2Fx`, ['Content-Length: 0']) },
  { name: 'POST from without mount', bytes: req('POST', '/v2/team/app/blobs/uploads/?from=team/other', ['Content-Length: 0']) },
  { name: 'POST two from=', bytes: req('POST', `/v2/team/app/blobs/uploads/?mount=${D}&from=a&from=b`, ['Content-Length: 0']) },
  { name: 'POST mount and digest', bytes: req('POST', `/v2/team/app/blobs/uploads/?mount=${D}&from=a&digest=${D}`, ['Content-Length: 0']) },
  { name: 'POST encoded parameter name twice', bytes: req('POST', `/v2/team/app/blobs/uploads/?mount=${D}&fr%6Fm=a&from=b`, ['Content-Length: 0']) },
  { name: 'PUT upload without digest', bytes: req('PUT', `/v2/team/app/blobs/uploads/${UUID}`, ['Content-Length: 0']) },
  { name: 'PUT upload ?digest=%zz', bytes: req('PUT', `/v2/team/app/blobs/uploads/${UUID}?digest=%zz`, ['Content-Length: 0']) },
  { name: 'PUT upload ?digest=%00', bytes: req('PUT', `/v2/team/app/blobs/uploads/${UUID}?digest=%00`, ['Content-Length: 0']) },
  get('/v2/team/app/tags/list?n=abc'),
  get('/v2/team/app/tags/list?n=-1'),
  get('/v2/team/app/tags/list?n=1&n=2'),
  get('/v2/team/app/tags/list?last=a&last=b'),
  get('/v2/_catalog?n=1e9'),
  get(`/v2/team/app/manifests/latest?digest=${D}`),
  get(`/v2/team/app/blobs/${D}?mount=${D}`),
  get('/v2/team/app/tags/list?x=%00'),
  get('/v2/team/app/tags/list?%01=1'),
  get('/v2/team/app/tags/list?x=%E0%A4%A'),
  // paths: dot segments, encoded slashes, empty segments, fragments, unknown endpoints
  get('/v2/%2e%2e/'), get('/v2/./'), get('/v2/../'), get('/v2/team/./app/manifests/x'), get('/v2/team/app/../b/manifests/x'),
  get('/v2//team/app/manifests/x'), get('/%2e%2e/v2/'), get('/v2/team/app/manifests/x#frag'), get('/v2/_catalog%3f'),
  get('/v2/team/app/manifests/latest%2F'), get('/v2/team/app/blobs/uploads/..'), get('/v3/'), get('/'), get('/v2/team/app/unknown/thing'),
  get('/v2%2F'), get('/v2/\\..\\'), get('/healthz/../v2/'), get('/v2/team/app/manifests/%2e%2e'),
  // methods outside the API
  raw('TRACE', req('TRACE', '/v2/')), raw('TRACE with Max-Forwards', req('TRACE', '/v2/', ['Max-Forwards: 0'])),
  raw('OPTIONS', req('OPTIONS', '/v2/')), raw('OPTIONS *', req('OPTIONS', '*')),
  raw('CONNECT authority-form', 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n'),
  raw('CONNECT to the registry', 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'),
  raw('PROPFIND', req('PROPFIND', '/v2/')), raw('MKCOL', req('MKCOL', '/v2/x/')), raw('PURGE', req('PURGE', '/v2/')),
  raw('SEARCH', req('SEARCH', '/v2/')), raw('LOCK', req('LOCK', '/v2/')), raw('unknown method FOO', req('FOO', '/v2/')),
  raw('lower-case get', req('get', '/v2/')), raw('PATCH ping', req('PATCH', '/v2/', ['Content-Length: 0'])),
  raw('PUT on a blob', req('PUT', `/v2/team/app/blobs/${D}`, ['Content-Length: 0'])),
  raw('POST on a manifest', req('POST', '/v2/team/app/manifests/x', ['Content-Length: 0'])),
  raw('DELETE tags', req('DELETE', '/v2/team/app/tags/list')), raw('GET upload start', req('GET', '/v2/team/app/blobs/uploads/')),
  raw('POST to an upload', req('POST', `/v2/team/app/blobs/uploads/${UUID}`, ['Content-Length: 0'])),
  raw('PATCH catalog', req('PATCH', '/v2/_catalog', ['Content-Length: 0'])),
  // request targets
  raw('absolute-form http', 'GET http://evil.example/v2/ HTTP/1.1\r\nHost: evil.example\r\n\r\n'),
  raw('absolute-form https to loopback', 'GET https://127.0.0.1/v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'),
  raw('absolute-form to the registry path', 'GET http://127.0.0.1:1/v2/team/app/manifests/latest HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'),
  raw('target without leading slash', 'GET v2/ HTTP/1.1\r\nHost: x\r\n\r\n'),
  raw('empty target', 'GET  HTTP/1.1\r\nHost: x\r\n\r\n'),
  // framing: lengths and transfer codings
  raw('duplicate Content-Length, same', req('POST', '/v2/team/app/blobs/uploads/', ['Content-Length: 0', 'Content-Length: 0'])),
  raw('duplicate Content-Length, different', req('POST', '/v2/team/app/blobs/uploads/', ['Content-Length: 0', 'Content-Length: 5'], 'hello')),
  raw('Content-Length list', req('POST', '/v2/team/app/blobs/uploads/', ['Content-Length: 5, 5'], 'hello')),
  raw('Content-Length and chunked', req('PATCH', `/v2/team/app/blobs/uploads/${UUID}`, ['Content-Length: 5', 'Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n')),
  raw('chunked and Content-Length', req('PATCH', `/v2/team/app/blobs/uploads/${UUID}`, ['Transfer-Encoding: chunked', 'Content-Length: 5'], '5\r\nhello\r\n0\r\n\r\n')),
  raw('gzip, chunked', req('PATCH', `/v2/team/app/blobs/uploads/${UUID}`, ['Transfer-Encoding: gzip, chunked'], '0\r\n\r\n')),
  raw('chunked, gzip', req('PATCH', `/v2/team/app/blobs/uploads/${UUID}`, ['Transfer-Encoding: chunked, gzip'], '0\r\n\r\n')),
  raw('identity', req('PATCH', `/v2/team/app/blobs/uploads/${UUID}`, ['Transfer-Encoding: identity'], '')),
  raw('two Transfer-Encoding headers', req('PATCH', `/v2/team/app/blobs/uploads/${UUID}`, ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], '0\r\n\r\n')),
  raw('Transfer-Encoding xchunked', req('PATCH', `/v2/team/app/blobs/uploads/${UUID}`, ['Transfer-Encoding: xchunked'], '0\r\n\r\n')),
  raw('Content-Length -1', req('POST', '/v2/team/app/blobs/uploads/', ['Content-Length: -1'])),
  raw('Content-Length abc', req('POST', '/v2/team/app/blobs/uploads/', ['Content-Length: abc'])),
  raw('Content-Length +5', req('POST', '/v2/team/app/blobs/uploads/', ['Content-Length: +5'], 'hello')),
  raw('Content-Length 1e3', req('POST', '/v2/team/app/blobs/uploads/', ['Content-Length: 1e3'])),
  raw('Content-Length huge', req('POST', '/v2/team/app/blobs/uploads/', ['Content-Length: 99999999999999999999999'])),
  raw('bad chunk size', req('PATCH', `/v2/team/app/blobs/uploads/${UUID}`, ['Transfer-Encoding: chunked'], 'zz\r\nhello\r\n0\r\n\r\n')),
  raw('space before colon', 'GET /v2/ HTTP/1.1\r\nHost : x\r\n\r\n'),
  raw('obs-fold', 'GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n'),
  raw('header without colon', 'GET /v2/ HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n'),
  raw('missing Host', 'GET /v2/ HTTP/1.1\r\n\r\n'),
  raw('two Host headers', 'GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'),
  raw('two Authorization headers', req('GET', '/v2/', ['Authorization: Basic YTpi', 'Authorization: Basic Yzpk'])),
  raw('two Range headers', req('GET', `/v2/team/app/blobs/${D}`, ['Range: bytes=0-1', 'Range: bytes=5-9'])),
  raw('unmet Expect', req('PUT', '/v2/team/app/manifests/x', ['Expect: teapot', 'Content-Length: 0'])),
  raw('HTTP/1.2', 'GET /v2/ HTTP/1.2\r\nHost: x\r\n\r\n'),
  raw('HTTP/2.0 on HTTP/1', 'GET /v2/ HTTP/2.0\r\nHost: x\r\n\r\n'),
  raw('HTTP/0.9', 'GET /v2/\r\n\r\n'),
  raw('HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  raw('bare LF line ends', 'GET /v2/ HTTP/1.1\nHost: x\n\n'),
  raw('garbage', '\u0016\u0003\u0001\u0000\u00a5\u0001\u0000\u0000\u00a1\u0003\u0003'),
  // control characters and NUL
  raw('NUL in target', Buffer.from('GET /v2/\u0000/ HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1')),
  raw('SOH in target', Buffer.from('GET /v2/a\u0001b/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1')),
  raw('DEL in target', Buffer.from('GET /v2/a\u007fb/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1')),
  raw('tab in target', Buffer.from('GET /v2/a\tb/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1')),
  raw('space in target', 'GET /v2/a b/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n'),
  raw('CR in target', Buffer.from('GET /v2/a\rb/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1')),
  raw('NUL in a header value', Buffer.from('GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n', 'latin1')),
  raw('CR in a header value', Buffer.from('GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n', 'latin1')),
  raw('NUL in a header name', Buffer.from('GET /v2/ HTTP/1.1\r\nHost: x\r\nX-\u0000A: b\r\n\r\n', 'latin1')),
  raw('8-bit bytes in target', Buffer.from('GET /v2/t\u00e9am/app/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1')),
  raw('ESC in header value', Buffer.from('GET /v2/ HTTP/1.1\r\nHost: x\r\nUser-Agent: \u001b[31m\r\n\r\n', 'latin1')),
  // oversized
  raw('20 KB header', req('GET', '/v2/', [`X-Big: ${'a'.repeat(20_000)}`])),
  raw('300 headers', req('GET', '/v2/', Array.from({ length: 300 }, (_, i) => `X-H${i}: ${'v'.repeat(60)}`))),
  raw('20 KB target', req('GET', `/v2/${'a'.repeat(20_000)}/manifests/x`)),
  raw('20 KB query', req('GET', `/v2/team/app/tags/list?last=${'a'.repeat(20_000)}`)),
  raw('20 KB Authorization', req('GET', '/v2/', [`Authorization: Basic ${'A'.repeat(20_000)}`]))
]

t.test(`a corpus of ${cases.length} bad requests over raw sockets: each a registry-format 4xx, none forwarded`, async (t) => {
  t.ok(cases.length >= 100, `${cases.length} requests`)
  const stack = await startStack(t, { argv: ['--log-level', 'warn'] })
  const origin = stack.url
  for (const c of cases) {
    const res = await rawExchange(origin, c.bytes)
    const where = `${c.name} → ${res.raw.toString('latin1').split('\r\n', 1)[0] ?? ''}`
    t.ok(res.status >= 400 && res.status < 500, `${where}: 4xx`)
    t.match(res.headers['content-type'], /^application\/json/, `${c.name}: JSON`)
    t.equal(res.headers['docker-distribution-api-version'], 'registry/2.0', `${c.name}: registry header`)
    let parsed: { errors?: Array<{ code?: unknown, message?: unknown }> } = {}
    try {
      parsed = JSON.parse(res.body.toString('utf8'))
    } catch {}
    t.match(parsed.errors?.[0], { code: String, message: String }, `${c.name}: registry error body`)
  }
  t.same(stack.upstreamRequests, [], 'nothing reached the registry')
  t.same(stack.registry.s3.requests, [], 'nothing reached storage')

  // Still alive: a good request is forwarded and answered.
  const ping = await request(`${origin}/v2/`, { dispatcher: stack.client })
  t.equal(ping.statusCode, 200)
  await ping.body.dump()
  t.equal(stack.upstreamRequests.length, 1)
})

t.test('with client authentication on, the corpus gets 4xx and reaches nothing either', async (t) => {
  const dir = tempDir(t)
  const tokens = join(dir, 'tokens')
  writeFileSync(tokens, 'corpus-token-0123456789abcdef\n')
  const stack = await startStack(t, { argv: ['--log-level', 'warn', '--bearer-tokens-file', tokens] })
  for (const c of cases) {
    const res = await rawExchange(stack.url, c.bytes)
    t.ok(res.status >= 400 && res.status < 500, `${c.name}: ${res.status}`)
    t.match(res.headers['content-type'], /^application\/json/, `${c.name}: JSON`)
  }
  t.same(stack.upstreamRequests, [], 'nothing reached the registry')
})
