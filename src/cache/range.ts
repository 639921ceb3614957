import type { IncomingHttpHeaders } from 'node:http'

export type RangeAnswer =
  | { kind: 'whole' }
  | { kind: 'part', start: number, end: number }
  | { kind: 'unsatisfiable' }

/**
 * One `bytes=` range (RFC 9110 §14.1.2): `a-b`, `a-` (docker's and containerd's resumes) or `-n`.
 * Several ranges, other units, or an `If-Range` that is not the stored validator: the whole body,
 * as a server may answer (§14.2).
 */
export function parseRange (headers: IncomingHttpHeaders, size: number, etag: string | undefined): RangeAnswer {
  const value = headers.range
  if (typeof value !== 'string') return { kind: 'whole' }
  const ifRange = headers['if-range']
  if (typeof ifRange === 'string' && ifRange !== etag) return { kind: 'whole' }
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(value)
  if (m === null) return { kind: 'whole' }
  const [first, last] = [m[1] as string, m[2] as string]
  if (first === '' && last === '') return { kind: 'whole' }
  if (first === '') {
    const suffix = Number(last)
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' }
    return { kind: 'part', start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(first)
  if (start >= size) return { kind: 'unsatisfiable' }
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1)
  if (end < start) return { kind: 'whole' }
  return { kind: 'part', start, end }
}
