import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/** Listens (port 0 = any free port) and resolves with the server's `http://host:port` origin. */
export async function listen (server: Server, host = '127.0.0.1', port = 0): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const printable = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `http://${printable}:${address.port}`
}

/** Closes the server, dropping kept-alive and in-flight connections instead of waiting on them. */
export async function closeServer (server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  server.closeAllConnections()
  await closed
}
