import { randomBytes } from 'node:crypto'
import { createServer, request, type IncomingMessage } from 'node:http'
import { Readable, Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { sendBody } from '../../src/upstream/transport/body-io.js'
import { closeServer, listen } from '../helpers/listen.js'

const detaches = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function'

/** A destination that keeps a copy of every chunk, taken when the chunk is written. */
function collector (): { destination: Writable, copies: Buffer[], ended: Promise<void> } {
  const copies: Buffer[] = []
  const destination = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      copies.push(Buffer.from(chunk))
      setImmediate(callback)
    }
  })
  const ended = new Promise<void>((resolve, reject) => {
    destination.once('finish', resolve)
    destination.once('error', reject)
  })
  return { destination, copies, ended }
}

/** Runs `handle` on the body of one request a client sends to a local server. */
async function withReceivedBody (t: Test, body: Buffer, handle: (req: IncomingMessage) => Promise<void>): Promise<void> {
  const server = createServer((req, res) => {
    handle(req).then(() => res.end('ok'), (err: Error) => { res.statusCode = 500; res.end(err.message) })
  })
  const url = await listen(server)
  t.teardown(() => closeServer(server))
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${url}/upload`, { method: 'PATCH', headers: { 'content-length': String(body.length) } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end(body)
  })
  t.equal(status, 200)
}

t.test('a client\'s body reaches the destination whole; each chunk is released once written', async (t) => {
  const body = randomBytes(4 * 1024 * 1024 + 17)
  await withReceivedBody(t, body, async (req) => {
    const { destination, copies, ended } = collector()
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    sendBody(req, destination)
    await ended
    t.ok(Buffer.concat(copies).equals(body), 'every byte, in order')
    t.ok(chunks.length > 1, `${chunks.length} chunks`)
    const kept = chunks.filter((chunk) => chunk.byteLength > 0).length
    // node:http gives each chunk an ArrayBuffer of its own: all of them are let go once written.
    if (detaches) t.equal(kept, 0, 'no chunk holds its memory once written')
    else t.equal(kept, chunks.length, 'without ArrayBuffer.prototype.transfer (Node 20) chunks are left to the collector')
  })
})

t.test('chunks of any other stream are never released: they may be their owner\'s to keep', async (t) => {
  const parts = [Buffer.alloc(100 * 1024, 1), Buffer.alloc(100 * 1024, 2)]
  const { destination, copies, ended } = collector()
  sendBody(Readable.from(parts), destination)
  await ended
  t.same(parts.map((part) => part.length), [100 * 1024, 100 * 1024], 'the parts are intact')
  t.ok(Buffer.concat(copies).equals(Buffer.concat(parts)))
})

t.test('a failing destination destroys the body, and a failing body the destination', async (t) => {
  const source = new Readable({ read () {} })
  const failing = new Writable({ write (_chunk, _encoding, callback) { callback(new Error('registry reset')) } })
  sendBody(source, failing)
  source.push(Buffer.from('abc'))
  await new Promise((resolve) => source.once('close', resolve))
  t.equal(source.destroyed, true, 'the body is destroyed with the destination')
  t.match(source.errored, { message: 'registry reset' })

  const body = new Readable({ read () {} })
  const destination = new Writable({ write (_chunk, _encoding, callback) { callback() } })
  destination.on('error', () => {})
  sendBody(body, destination)
  body.destroy(new Error('client gone'))
  await new Promise((resolve) => destination.once('close', resolve))
  t.equal(destination.writableFinished, false, 'the request is not completed')
  t.match(destination.errored, { message: 'client gone' })
})
