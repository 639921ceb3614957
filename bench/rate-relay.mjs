// A rate-limiting TCP relay for the cache benchmark: listens on 127.0.0.1:--port, forwards every
// connection to 127.0.0.1:--target, and limits the bytes flowing from the target to the client
// (the download direction) with one token bucket shared by all connections (--rate bytes/s,
// burst --burst bytes). It counts the bytes in both directions; a control listener
// (--control-port) answers GET /stats with {down, up, connections} and POST /reset zeroes them.
import net from 'node:net'
import http from 'node:http'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    target: { type: 'string' },
    'control-port': { type: 'string' },
    rate: { type: 'string', default: String(50e6) },
    burst: { type: 'string', default: String(256 * 1024) }
  }
})
const rate = Number(values.rate)
const burst = Number(values.burst)
let tokens = burst
let last = process.hrtime.bigint()
const stats = { down: 0, up: 0, connections: 0 }
const waiting = [] // sockets paused for want of tokens

function refill () {
  const now = process.hrtime.bigint()
  tokens = Math.min(burst, tokens + Number(now - last) / 1e9 * rate)
  last = now
}
// a chunk may take the bucket below zero; the reader is paused until it is positive again
function take (n) {
  refill()
  tokens -= n
  return tokens >= 0
}
const timer = setInterval(() => {
  refill()
  // every waiting reader may send one more chunk; each chunk takes its tokens and pauses again
  if (tokens > 0) {
    for (const s of waiting.splice(0)) if (!s.destroyed) s.resume()
  }
}, 2)
timer.unref()

const server = net.createServer((client) => {
  stats.connections++
  const upstream = net.connect(Number(values.target), '127.0.0.1')
  client.on('data', (d) => { stats.up += d.length; if (!upstream.write(d)) { client.pause(); upstream.once('drain', () => client.resume()) } })
  upstream.on('data', (d) => {
    stats.down += d.length
    const writable = client.write(d)
    const ok = take(d.length)
    if (!ok) { upstream.pause(); waiting.push(upstream) }
    if (!writable) {
      upstream.pause()
      client.once('drain', () => { if (!waiting.includes(upstream)) upstream.resume() })
    }
  })
  client.on('end', () => upstream.end())
  upstream.on('end', () => client.end())
  const close = () => { client.destroy(); upstream.destroy() }
  client.on('error', close); upstream.on('error', close)
  client.on('close', close); upstream.on('close', close)
})
server.listen(Number(values.port), '127.0.0.1')

http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/reset') { stats.down = 0; stats.up = 0; stats.connections = 0 }
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify(stats) + '\n')
}).listen(Number(values['control-port']), '127.0.0.1', () => {
  console.log(`relay 127.0.0.1:${values.port} -> 127.0.0.1:${values.target}, ${rate} B/s, control on ${values['control-port']}`)
})
const stop = () => process.exit(0)
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
