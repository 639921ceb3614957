import { createHash, type Hash } from 'node:crypto'
import { Readable } from 'node:stream'

export const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/

export function isDigest (value: string): boolean {
  return DIGEST_PATTERN.test(value)
}

export function sha256Digest (data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

export function digestOf (hash: Hash): string {
  return `sha256:${hash.digest('hex')}`
}

const BLOCK_BYTES = 1024 * 1024

/** A 1 MiB pseudo-random block derived from `seed` (SHA-256 in counter mode). */
function baseBlock (seed: string): Buffer {
  const block = Buffer.alloc(BLOCK_BYTES)
  for (let offset = 0, counter = 0; offset < BLOCK_BYTES; offset += 32, counter++) {
    createHash('sha256').update(`${seed}:${counter}`).digest().copy(block, offset)
  }
  return block
}

/**
 * `size` deterministic bytes for `seed`, produced 1 MiB at a time (constant memory).
 * Each block starts with its own index so a misplaced or repeated chunk changes the digest.
 */
export function syntheticBytes (size: number, seed = 'synthetic'): Readable {
  const base = baseBlock(seed)
  let produced = 0
  let index = 0
  return new Readable({
    read () {
      if (produced >= size) {
        this.push(null)
        return
      }
      const length = Math.min(BLOCK_BYTES, size - produced)
      const block = Buffer.from(base.subarray(0, length))
      if (length >= 8) block.writeBigUInt64BE(BigInt(index), 0)
      produced += length
      index++
      this.push(block)
    },
  })
}

/** The digest `syntheticBytes(size, seed)` would have, computed by streaming. */
export async function syntheticDigest (size: number, seed = 'synthetic'): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of syntheticBytes(size, seed)) hash.update(chunk as Buffer)
  return digestOf(hash)
}
