import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'

export interface ExposureSettings {
  host: string
  allowUnauthenticated: boolean
  htpasswd?: string | undefined
  bearerTokensFile?: string | undefined
  bearerTokens?: readonly string[] | undefined
}

export type Lookup = (host: string) => Promise<string[]>

const defaultLookup: Lookup = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address)

/** 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
export function isLoopbackAddress (address: string): boolean {
  const bare = address.replace(/^\[(.*)\]$/, '$1').toLowerCase()
  if (isIP(bare) === 4) return bare.startsWith('127.')
  if (isIP(bare) === 6) {
    if (bare === '::1' || bare === '0:0:0:0:0:0:0:1') return true
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(bare)
    return mapped !== null && (mapped[1] as string).startsWith('127.')
  }
  return false
}

export function clientAuthConfigured (settings: ExposureSettings): boolean {
  return settings.htpasswd !== undefined || settings.bearerTokensFile !== undefined || (settings.bearerTokens?.length ?? 0) > 0
}

/**
 * Rule: a proxy that holds ECR credentials is itself a credential. Listening anywhere but loopback
 * without client authentication is refused unless the operator accepts the risk explicitly.
 * A host name counts as loopback only if every address it resolves to is loopback.
 *
 * @returns why the proxy must not start, or undefined.
 */
export async function exposureRefusal (settings: ExposureSettings, resolve: Lookup = defaultLookup): Promise<string | undefined> {
  if (clientAuthConfigured(settings) || settings.allowUnauthenticated) return undefined
  const host = settings.host
  let addresses: string[]
  if (isIP(host.replace(/^\[(.*)\]$/, '$1')) !== 0) {
    addresses = [host]
  } else {
    try {
      addresses = await resolve(host)
    } catch {
      addresses = []
    }
  }
  if (addresses.length > 0 && addresses.every(isLoopbackAddress)) return undefined
  return `refusing to listen on ${host} without client authentication: whoever reaches this proxy acts as its AWS identity. ` +
    'Enable client authentication with --htpasswd FILE (bcrypt entries, htpasswd -B) or --bearer-tokens-file FILE ' +
    '(or the ECR_PROXY_BEARER_TOKENS environment variable), or accept the risk explicitly with --allow-unauthenticated ' +
    '(ECR_PROXY_ALLOW_UNAUTHENTICATED=true). Loopback addresses (127.0.0.1, ::1) need neither.'
}
