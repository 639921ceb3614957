import t from 'tap'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { DigestMismatchError, DigestVerifier, isVerifiable, verifyingStream } from '../../src/oci/digest.js'

const bytes = Buffer.from('layer bytes, in several chunks')
const sha256 = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
const sha512 = `sha512:${createHash('sha512').update(bytes).digest('hex')}`

t.test('the right bytes, fed in pieces, verify; the digest is returned', async (t) => {
  for (const digest of [sha256, sha512]) {
    const verifier = new DigestVerifier(digest, bytes.length)
    for (let at = 0; at < bytes.length; at += 7) verifier.update(bytes.subarray(at, at + 7))
    t.equal(verifier.bytes, bytes.length)
    t.equal(verifier.verify(), digest)
  }
})

t.test('other bytes, a short body or a long one fail, saying which', async (t) => {
  const wrong = new DigestVerifier(sha256)
  wrong.update(Buffer.from('other bytes'))
  const other = `sha256:${createHash('sha256').update('other bytes').digest('hex')}`
  t.throws(() => wrong.verify(), new DigestMismatchError(`content does not match ${sha256} (got ${other})`, sha256, other))
  const short = new DigestVerifier(sha256, bytes.length)
  short.update(bytes.subarray(0, 5))
  t.throws(() => short.verify(), { name: 'DigestMismatchError', message: `expected ${bytes.length} bytes of ${sha256}, got 5` })
  const long = new DigestVerifier(sha256, bytes.length)
  long.update(bytes)
  long.update(Buffer.from('!'))
  t.throws(() => long.verify(), { name: 'DigestMismatchError', message: `expected ${bytes.length} bytes of ${sha256}, got ${bytes.length + 1}` })
})

t.test('only sha256 and sha512 can be verified', async (t) => {
  t.ok(isVerifiable(sha256))
  t.ok(isVerifiable(sha512))
  t.notOk(isVerifiable('blake3:abc'))
  t.throws(() => new DigestVerifier('blake3:abc'), { name: 'TypeError', message: 'cannot verify digest blake3:abc: unsupported algorithm' })
})

t.test('the verifying stream passes bytes through and errors instead of ending on a mismatch', async (t) => {
  const received: Buffer[] = []
  const sink = async (source: AsyncIterable<Buffer>) => { for await (const chunk of source) received.push(chunk) }
  await pipeline(Readable.from([bytes.subarray(0, 10), bytes.subarray(10)]), verifyingStream(sha256, bytes.length), sink)
  t.same(Buffer.concat(received), bytes)
  await t.rejects(pipeline(Readable.from([Buffer.from('tampered')]), verifyingStream(sha256), async (source) => { for await (const chunk of source) received.push(chunk as Buffer) }), { name: 'DigestMismatchError' })
})
