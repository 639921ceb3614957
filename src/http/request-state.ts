import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ClientIdentity } from '../access/client-auth.js'
import type { RegistryRequest } from '../oci/grammar.js'
import type { Target } from '../routing/resolve.js'

/** Everything the proxy records about one request: the one extension of FastifyRequest. */
export interface RequestState {
  /** Kept because a closed connection is detached from its request before onResponse. */
  socket: Socket | null
  /** Who the client authenticated as; null when client authentication is off. */
  client: ClientIdentity | null
  /** The registry operation, once parsed. */
  call: RegistryRequest | null
  /** Where it went, once resolved. */
  target: Target | null
  /** Sent a second time with a replacement credential. */
  replayed: boolean
}

declare module 'fastify' {
  interface FastifyRequest {
    proxy: RequestState
  }
}

/** Decorates every request with a fresh state, before any other hook reads it. */
export function decorateRequestState (app: FastifyInstance): void {
  app.decorateRequest('proxy', null as unknown as RequestState)
  app.addHook('onRequest', async (request: FastifyRequest) => {
    request.proxy = { socket: request.raw.socket, client: null, call: null, target: null, replayed: false }
  })
}
