import type { Readable } from 'node:stream'
import { request } from 'undici'

export interface RawResponse { status: number, headers: Record<string, string>, body: Buffer }

export interface RawRequest {
  method?: string
  headers?: Record<string, string>
  body?: Buffer | string | Readable
}

/**
 * One HTTP exchange with nothing in between: no redirects followed, no headers added beyond
 * what undici itself needs, the whole body read. For self-tests of the test doubles.
 */
export async function rawRequest (url: string, init: RawRequest = {}): Promise<RawResponse> {
  const res = await request(url, {
    method: (init.method ?? 'GET') as 'GET',
    headers: init.headers,
    body: init.body,
  })
  const body = Buffer.from(await res.body.arrayBuffer())
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(res.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  return { status: res.statusCode, headers, body }
}

export function basicAuth (authorizationToken: string): Record<string, string> {
  return { authorization: `Basic ${authorizationToken}` }
}
