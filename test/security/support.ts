/**
 * Raw-socket and file helpers for the security tests (run alone, this file tests its own parser).
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { connect as connectTcp, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as connectTls } from 'node:tls'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: Buffer
  /** Everything the server wrote, for messages. */
  raw: Buffer
}

/** Parses one HTTP/1.1 response from the start of `data`; undefined while incomplete. */
export function parseResponse (data: Buffer, ended: boolean, head = false): RawResponse | undefined {
  const end = data.indexOf('\r\n\r\n')
  if (end === -1) return undefined
  const lines = data.subarray(0, end).toString('latin1').split('\r\n')
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0)
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    if (colon > 0) {
      const name = line.slice(0, colon).trim().toLowerCase()
      const value = line.slice(colon + 1).trim()
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
    }
  }
  const rest = data.subarray(end + 4)
  if (head || status === 204 || status === 304 || (status >= 100 && status < 200)) return { status, headers, body: Buffer.alloc(0), raw: data }
  const length = headers['content-length']
  if (length !== undefined) {
    if (rest.length < Number(length)) return undefined
    return { status, headers, body: rest.subarray(0, Number(length)), raw: data }
  }
  if (headers['transfer-encoding'] === 'chunked') {
    const chunks: Buffer[] = []
    let at = 0
    for (;;) {
      const lineEnd = rest.indexOf('\r\n', at)
      if (lineEnd === -1) return undefined
      const size = parseInt(rest.subarray(at, lineEnd).toString('latin1'), 16)
      if (size === 0) return { status, headers, body: Buffer.concat(chunks), raw: data }
      if (rest.length < lineEnd + 2 + size + 2) return undefined
      chunks.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size))
      at = lineEnd + 2 + size + 2
    }
  }
  return ended ? { status, headers, body: rest, raw: data } : undefined
}

export interface ExchangeOptions {
  timeoutMs?: number
  head?: boolean
  tls?: { ca?: Buffer | Buffer[], servername?: string }
}

/** Writes `request` byte for byte on a new connection and reads one response (status 0: none). */
export async function rawExchange (origin: string, request: Buffer | string, options: ExchangeOptions = {}): Promise<RawResponse> {
  const url = new URL(origin)
  const port = Number(url.port)
  return await new Promise((resolve) => {
    const socket: Socket = options.tls === undefined
      ? connectTcp(port, url.hostname)
      : connectTls({ port, host: url.hostname, ...(options.tls.ca === undefined ? {} : { ca: options.tls.ca }), servername: options.tls.servername ?? 'localhost' })
    const chunks: Buffer[] = []
    let done = false
    const finish = (ended: boolean): void => {
      if (done) return
      const data = Buffer.concat(chunks)
      const parsed = parseResponse(data, ended, options.head === true)
      if (parsed === undefined && !ended) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve(parsed ?? { status: 0, headers: {}, body: Buffer.alloc(0), raw: data })
    }
    const timer = setTimeout(() => finish(true), options.timeoutMs ?? 5000)
    socket.on('data', (chunk: Buffer) => { chunks.push(chunk); finish(false) })
    socket.on('end', () => finish(true))
    socket.on('close', () => finish(true))
    socket.on('error', () => finish(true))
    socket.write(request)
  })
}

/** Writes a file the way tools that reload safely do: a new file renamed into place. */
export function replaceFile (file: string, content: string | Buffer): void {
  const next = `${file}.next`
  writeFileSync(next, content)
  renameSync(next, file)
}

export { selfSigned } from '../helpers/self-signed.js'

export function tempDir (t: Test, prefix = 'ecr-proxy-sec-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Polls `check` every 20 ms until it holds or `timeoutMs` passes; returns whether it held. */
export async function eventually (check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return await check()
}

if (fileURLToPath(import.meta.url) === process.argv[1]) {
  t.test('the response parser', async (t) => {
    const body = '{"errors":[]}'
    const whole = Buffer.from(`HTTP/1.1 400 Bad Request\r\nContent-Length: ${body.length}\r\nX-A: 1\r\nX-A: 2\r\n\r\n${body}`)
    t.same(parseResponse(whole, false)?.headers['x-a'], '1, 2')
    t.equal(parseResponse(whole, false)?.body.toString(), body)
    t.equal(parseResponse(whole.subarray(0, whole.length - 1), false), undefined, 'incomplete body')
    const chunked = Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n')
    t.equal(parseResponse(chunked, false)?.body.toString(), 'abcde')
    t.equal(parseResponse(Buffer.from('HTTP/1.1 200 OK\r\n\r\nrest'), true)?.body.toString(), 'rest')
  })
}
