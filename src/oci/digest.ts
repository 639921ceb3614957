import { createHash, type Hash } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'

/** Content digests the proxy can check (OCI image-spec §"Digests"). */
const ALGORITHMS: Record<string, string> = { sha256: 'sha256', sha512: 'sha512' }

export class DigestMismatchError extends Error {
  override name = 'DigestMismatchError'
  constructor (message: string, readonly expected: string, readonly actual: string) {
    super(message)
  }
}

/** Whether the proxy can verify content against this digest (sha256 and sha512). */
export function isVerifiable (digest: string): boolean {
  return ALGORITHMS[digest.slice(0, digest.indexOf(':'))] !== undefined
}

/**
 * Hashes bytes as they pass and says at the end whether they were the content a digest (and,
 * when known, a size) names. Nothing is buffered: for multi-GB blobs.
 */
export class DigestVerifier {
  readonly #hash: Hash
  readonly #algorithm: string
  #bytes = 0

  constructor (readonly expected: string, readonly expectedSize?: number) {
    const algorithm = ALGORITHMS[expected.slice(0, expected.indexOf(':'))]
    if (algorithm === undefined) throw new TypeError(`cannot verify digest ${expected}: unsupported algorithm`)
    this.#algorithm = expected.slice(0, expected.indexOf(':'))
    this.#hash = createHash(algorithm)
  }

  get bytes (): number {
    return this.#bytes
  }

  update (chunk: Uint8Array): void {
    this.#bytes += chunk.length
    this.#hash.update(chunk)
  }

  /** Throws DigestMismatchError unless the bytes seen are exactly the expected content. */
  verify (): string {
    const actual = `${this.#algorithm}:${this.#hash.digest('hex')}`
    if (this.expectedSize !== undefined && this.#bytes !== this.expectedSize) {
      throw new DigestMismatchError(`expected ${this.expectedSize} bytes of ${this.expected}, got ${this.#bytes}`, this.expected, actual)
    }
    if (actual !== this.expected) {
      throw new DigestMismatchError(`content does not match ${this.expected} (got ${actual})`, this.expected, actual)
    }
    return actual
  }
}

/** A pass-through stream that fails at its end, instead of ending, when the bytes do not match. */
export function verifyingStream (digest: string, size?: number): Transform {
  const verifier = new DigestVerifier(digest, size)
  return new Transform({
    transform (chunk: Buffer, _encoding, callback: TransformCallback) {
      verifier.update(chunk)
      callback(null, chunk)
    },
    flush (callback: TransformCallback) {
      try {
        verifier.verify()
        callback()
      } catch (err) {
        callback(err as Error)
      }
    }
  })
}
