// The floor of what Node can do as an auth-injecting registry forwarder, for bench/run.sh to
// compare the proxy with: a node:http server and an undici Pool, nothing else (no routing, no
// policy, no logging, no metrics, no Location rewriting: it passes the client's Host on, so the
// registry's Locations already point here). Plain JavaScript so that no loader runs in it.
// Usage: node bench/node-forwarder.mjs --port N --upstream http(s)://127.0.0.1:PORT --token-file FILE
// TLS upstreams are verified against the default CAs plus NODE_EXTRA_CA_CERTS.
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'

const { values } = parseArgs({ options: { port: { type: 'string' }, upstream: { type: 'string' }, 'token-file': { type: 'string' } } })
const authorization = `Basic ${readFileSync(values['token-file'], 'utf8').trim()}`
const pool = new Pool(values.upstream, { connections: 1024, keepAliveTimeout: 300_000, headersTimeout: 300_000, bodyTimeout: 300_000 })
const NOT_FORWARDED = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'authorization'])
const NOT_RETURNED = new Set(['connection', 'keep-alive', 'transfer-encoding'])

http.createServer((req, res) => {
  const headers = { authorization }
  for (const name in req.headers) if (!NOT_FORWARDED.has(name)) headers[name] = req.headers[name]
  const body = req.method === 'GET' || req.method === 'HEAD' ? null : req
  // reset: false keeps the connection after a HEAD (undici closes it by default, undici #258)
  pool.stream({ path: req.url, method: req.method, headers, body, reset: false }, ({ statusCode, headers: upstream }) => {
    const out = {}
    for (const name in upstream) if (!NOT_RETURNED.has(name)) out[name] = upstream[name]
    res.writeHead(statusCode, out)
    return res
  }).catch((err) => {
    if (res.headersSent) res.destroy()
    else res.writeHead(502, { 'content-type': 'text/plain' }).end(String(err))
  })
}).listen(Number(values.port), '127.0.0.1', () => { console.log(`node-forwarder on 127.0.0.1:${values.port} -> ${values.upstream}`) })
