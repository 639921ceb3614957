import type { IncomingMessage, Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Listener } from './listener.js'

/**
 * The second listener of --docker-hub-mirror-port: Docker's `registry-mirrors` names no registry
 * in its requests (`GET /v2/library/nginx/manifests/latest`), so a proxy that has a default
 * registry cannot tell them from its own bare names. This listener's requests are all Docker Hub
 * names. It is a server of the same listener (preflight, TLS, timeouts, connection cap) handing
 * its requests to the same Fastify instance (client authentication, access log, metrics), which
 * asks `servesDockerHubOnly` which requests came through it.
 */
export interface DockerHubListener {
  servesDockerHubOnly: (raw: IncomingMessage) => boolean
  /** Listens once the app is ready; resolves to the listener's URL. */
  listen: (host: string, port: number) => Promise<string>
}

export function dockerHubListener (app: FastifyInstance, listener: Listener): DockerHubListener {
  const hubRequests = new WeakSet<IncomingMessage>()
  let server: Server | undefined
  let closed: Promise<void> | undefined
  // Like the main server on close: no new connections, idle ones closed, in-flight ones finish
  // (Fastify answers their next request 503 and the access log ends their connection).
  app.addHook('preClose', async () => {
    const open = server
    if (open === undefined) return
    closed = new Promise((resolve) => { open.close(() => { resolve() }) })
    open.closeIdleConnections()
  })
  app.addHook('onClose', async () => { await closed })
  return {
    servesDockerHubOnly: (raw) => hubRequests.has(raw),
    listen: async (host, port) => {
      await app.ready()
      const created = listener.fastifyOptions.serverFactory((req, res) => {
        hubRequests.add(req)
        app.routing(req, res)
      })
      created.on('clientError', listener.fastifyOptions.clientErrorHandler)
      server = created
      await new Promise<void>((resolve, reject) => {
        created.once('error', reject)
        created.listen({ host, port }, () => {
          created.off('error', reject)
          resolve()
        })
      })
      const address = created.address() as AddressInfo
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
      return `${listener.tls ? 'https' : 'http'}://${shown}:${address.port}`
    }
  }
}
