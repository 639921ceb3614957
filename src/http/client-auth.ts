import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { AuthenticatorBusyError, type ClientAuthenticator, type ClientIdentity } from '../access/client-auth.js'
import { pathOf } from '../oci/target.js'
import { sendRegistryError } from './errors.js'

/** The challenge docker, podman and skopeo answer with their stored credentials. */
export const CHALLENGE = 'Basic realm="ecr-auth-proxy"'
/** Paths that stay open without credentials: probes of orchestrators. */
export const OPEN_PATHS: readonly string[] = ['/healthz', '/readyz']

export interface ClientAuthenticationOptions {
  authenticator: ClientAuthenticator
  openPaths?: readonly string[]
}

/**
 * Every request but the open paths must prove a client credential before anything else happens;
 * without one it gets 401 with a Basic challenge (docker pings GET /v2/ and logs in on that).
 */
async function clientAuthentication (app: FastifyInstance, options: ClientAuthenticationOptions): Promise<void> {
  const { authenticator } = options
  const open = new Set(options.openPaths ?? OPEN_PATHS)
  if (!authenticator.enabled) return

  app.log.info(authenticator.counts, 'client authentication on')
  authenticator.watch()
  app.addHook('onClose', async () => { authenticator.close() })

  app.addHook('onRequest', async (request, reply) => {
    if (open.has(pathOf(request.url))) return
    const authorization = request.headers.authorization
    let identity: ClientIdentity | undefined
    try {
      identity = await authenticator.authenticate(authorization)
    } catch (err) {
      if (!(err instanceof AuthenticatorBusyError)) throw err
      reply.header('retry-after', '1')
      sendRegistryError(reply, 429, 'TOOMANYREQUESTS', 'too many client authentications in progress; retry shortly')
      return reply
    }
    if (identity === undefined) {
      // Never the credential itself, nor the user name a client tried (it may be a mistyped secret).
      if (authorization !== undefined) request.log.warn({ scheme: authorization.split(' ', 1)[0], remoteAddress: request.ip }, 'client authentication failed')
      reply.header('www-authenticate', CHALLENGE)
      sendRegistryError(reply, 401, 'UNAUTHORIZED', 'authentication required: log in to this proxy (docker login, podman login, skopeo --creds)')
      return reply
    }
    request.proxy.client = identity
  })
}

export const clientAuthenticationPlugin = fp(clientAuthentication, { name: 'ecr-auth-proxy-client-auth', fastify: '5.x' })
