import type { TokenRefresher } from '../credentials/refresher.js'
import type { RegistryRequest } from '../oci/grammar.js'

/** A registry the proxy forwards to, and the credential it forwards with. */
export interface Upstream {
  /** `scheme://host[:port]`; undefined until GetAuthorizationToken names it (proxyEndpoint). */
  origin: string | undefined
  credentials: TokenRefresher
}

export interface Route {
  upstream: Upstream
  /** The request path on the upstream, `/v2/…` — where repository names will be mapped. */
  path: string
}

/**
 * Decides where a registry request goes. One upstream for now; several registries in one
 * process and mirror mappings plug in here, as further routers.
 */
export type Router = (request: RegistryRequest, path: string) => Route

export function singleUpstreamRouter (upstream: Upstream): Router {
  return (_request, path) => ({ upstream, path })
}
