import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

// Bytes that base64-encode to "+/+/", so every token carries `+`, `/` and (via padding) `=`:
// a proxy that re-encodes or decodes the query string corrupts the token visibly.
const MAGIC = Buffer.from([0xfb, 0xff, 0xbf])
const IV_BYTES = 12
const TAG_BYTES = 16
const HEADER_BYTES = MAGIC.length + 1 + IV_BYTES + TAG_BYTES

/**
 * ECR's `last=` pagination values are opaque, encrypted and percent-encoded. These are too:
 * AES-256-GCM over the scope and the last item, base64, then percent-encoded.
 */
export class PageTokens {
  readonly #key = randomBytes(32)

  /** The token, already percent-encoded for a query string. */
  encode (scope: string, last: string): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv)
    const sealed = Buffer.concat([cipher.update(JSON.stringify([scope, last]), 'utf8'), cipher.final()])
    // Make the total length ≡ 1 (mod 3) so the base64 always ends in "==".
    const padding = (4 - ((HEADER_BYTES + sealed.length) % 3)) % 3
    const token = Buffer.concat([MAGIC, Buffer.from([padding]), iv, cipher.getAuthTag(), sealed, Buffer.alloc(padding)])
    return encodeURIComponent(token.toString('base64'))
  }

  /** `token` as a query parser hands it over (percent-decoded); undefined unless intact. */
  decode (scope: string, token: string): string | undefined {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(token)) return undefined
    const raw = Buffer.from(token, 'base64')
    const padding = raw[MAGIC.length]
    if (raw.length <= HEADER_BYTES || !raw.subarray(0, MAGIC.length).equals(MAGIC) || padding === undefined || padding > 2) return undefined
    const iv = raw.subarray(MAGIC.length + 1, MAGIC.length + 1 + IV_BYTES)
    const tag = raw.subarray(MAGIC.length + 1 + IV_BYTES, HEADER_BYTES)
    const sealed = raw.subarray(HEADER_BYTES, raw.length - padding)
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, iv)
      decipher.setAuthTag(tag)
      const [tokenScope, last] = JSON.parse(Buffer.concat([decipher.update(sealed), decipher.final()]).toString('utf8')) as [string, string]
      return tokenScope === scope ? last : undefined
    } catch {
      return undefined
    }
  }
}
