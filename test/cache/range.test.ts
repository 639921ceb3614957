import t from 'tap'
import { parseRange } from '../../src/cache/range.js'

const ETAG = '"sha256:abc"'

t.test('one bytes= range of a 1000-byte file (RFC 9110 §14.1.2)', async (t) => {
  const range = (value: string, size = 1000) => parseRange({ range: value }, size, ETAG)
  t.same(range('bytes=0-99'), { kind: 'part', start: 0, end: 99 })
  t.same(range('bytes=900-'), { kind: 'part', start: 900, end: 999 }, 'the resume docker and containerd send')
  t.same(range('bytes=900-5000'), { kind: 'part', start: 900, end: 999 }, 'a last byte beyond the end is the end')
  t.same(range('bytes= 10 - 19 '), { kind: 'part', start: 10, end: 19 })
  t.same(range('bytes=-100'), { kind: 'part', start: 900, end: 999 })
  t.same(range('bytes=-5000'), { kind: 'part', start: 0, end: 999 }, 'a suffix longer than the file is all of it')
  t.same(range('bytes=1000-'), { kind: 'unsatisfiable' })
  t.same(range('bytes=-0'), { kind: 'unsatisfiable' })
  t.same(range('bytes=-10', 0), { kind: 'unsatisfiable' }, 'no suffix of an empty file')
  t.same(range('bytes=20-10'), { kind: 'whole' }, 'an invalid range is ignored (§14.2)')
  t.same(range('bytes=-'), { kind: 'whole' })
  t.same(range('bytes=0-9,20-29'), { kind: 'whole' }, 'several ranges: the whole body, as a server may answer')
  t.same(range('items=0-9'), { kind: 'whole' }, 'another unit')
  t.same(parseRange({}, 1000, ETAG), { kind: 'whole' })
})

t.test('If-Range: the part only while the stored validator still matches (RFC 9110 §13.1.5)', async (t) => {
  t.same(parseRange({ range: 'bytes=10-19', 'if-range': ETAG }, 1000, ETAG), { kind: 'part', start: 10, end: 19 })
  t.same(parseRange({ range: 'bytes=10-19', 'if-range': '"other"' }, 1000, ETAG), { kind: 'whole' })
  t.same(parseRange({ range: 'bytes=10-19', 'if-range': 'Wed, 21 Oct 2015 07:28:00 GMT' }, 1000, ETAG), { kind: 'whole' }, 'a date is not the stored ETag')
  t.same(parseRange({ range: 'bytes=10-19', 'if-range': ETAG }, 1000, undefined), { kind: 'whole' }, 'nothing stored to compare with')
})
