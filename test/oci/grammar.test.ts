import t from 'tap'
import { classify, isValidDigest, isValidName, printable } from '../../src/oci/grammar.js'

const DIGEST = `sha256:${'a'.repeat(64)}`

t.test('every registry route is recognised', async (t) => {
  t.same(classify(''), { ok: true, request: { kind: 'ping' } })
  t.same(classify('_catalog'), { ok: true, request: { kind: 'catalog' } })
  t.same(classify('team/sub/app/manifests/1.2'), { ok: true, request: { kind: 'manifest', name: 'team/sub/app', reference: '1.2' } })
  t.same(classify(`app/manifests/${DIGEST}`), { ok: true, request: { kind: 'manifest', name: 'app', reference: DIGEST } })
  t.same(classify(`app/blobs/${DIGEST}`), { ok: true, request: { kind: 'blob', name: 'app', digest: DIGEST } })
  t.same(classify('app/blobs/uploads/'), { ok: true, request: { kind: 'upload', name: 'app', uploadId: '' } })
  t.same(classify('app/blobs/uploads/0f9e7a2c-1b2d-4c5e-8f90-123456789abc'), { ok: true, request: { kind: 'upload', name: 'app', uploadId: '0f9e7a2c-1b2d-4c5e-8f90-123456789abc' } })
  t.same(classify('a/tags/list'), { ok: true, request: { kind: 'tags', name: 'a' } })
  t.same(classify(`a/referrers/${DIGEST}`), { ok: true, request: { kind: 'referrers', name: 'a', digest: DIGEST } })
  t.same(classify('manifests/manifests/latest'), { ok: true, request: { kind: 'manifest', name: 'manifests', reference: 'latest' } }, 'a repository may be called "manifests"')
  t.same(classify('tags/list/tags/list'), { ok: true, request: { kind: 'tags', name: 'tags/list' } })
})

t.test('the spec grammar is enforced', async (t) => {
  t.match(classify('App/manifests/latest'), { ok: false, code: 'NAME_INVALID' })
  t.match(classify('a//b/manifests/latest'), { ok: false, code: 'NAME_INVALID' })
  t.match(classify('a/../b/manifests/latest'), { ok: false, code: 'NAME_INVALID' })
  t.match(classify('a%2Fb/manifests/latest'), { ok: false, code: 'NAME_INVALID' })
  t.match(classify(`${'a'.repeat(256)}/manifests/latest`), { ok: false, code: 'NAME_INVALID' })
  t.match(classify('a/manifests/.hidden'), { ok: false, code: 'MANIFEST_INVALID' })
  t.match(classify(`a/manifests/${'t'.repeat(129)}`), { ok: false, code: 'MANIFEST_INVALID' })
  t.match(classify('a/manifests/sha256:abc'), { ok: false, code: 'DIGEST_INVALID' })
  t.match(classify('a/blobs/latest'), { ok: false, code: 'DIGEST_INVALID' })
  t.match(classify('a/blobs/uploads/..%00'), { ok: false, code: 'BLOB_UPLOAD_INVALID' })
  t.match(classify('a/b/c'), { ok: false, code: 'NOT_FOUND' })
  t.equal(isValidName('a.b_c__d-e---f/g'), true)
  t.equal(isValidName('a_'), false)
  t.equal(isValidDigest(`sha512:${'b'.repeat(128)}`), true)
  t.equal(isValidDigest(`sha256:${'A'.repeat(64)}`), false)
  t.equal(isValidDigest('blake3:abc'), true, 'other algorithms pass through for the registry to judge')
})

t.test('error messages stay printable and short', async (t) => {
  t.equal(printable('a\u0000b\nc'), 'a?b?c')
  t.equal(printable('x'.repeat(300)).length, 201)
})
