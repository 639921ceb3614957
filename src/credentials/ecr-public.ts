import type { ECRPUBLICClient } from '@aws-sdk/client-ecr-public'
import type { Logger } from 'pino'
import { readLimited } from '../upstream/transport/body-io.js'
import type { Transport } from '../upstream/transport/types.js'
import type { Authorization, AuthorizeContext, Authorizer, Challenge, ChallengeOutcome } from './authorizer.js'
import { systemClock, type Clock } from './clock.js'
import { describeTokenError, identityCredentials, type EcrIdentity, type FetchToken } from './ecr-token.js'
import type { CredentialKey, CredentialPool } from './pool.js'

/** ECR Public's API lives in us-east-1 only (ecr-public:GetAuthorizationToken). */
export const ECR_PUBLIC_REGION = 'us-east-1'
export const ECR_PUBLIC_HOST = 'public.ecr.aws'

export type EcrPublicSdk = typeof import('@aws-sdk/client-ecr-public')

/**
 * The ECR Public SDK, loaded only when a registry needs ECR Public's tokens: an idle proxy without
 * one saves its RSS (docs/performance.md, finding 2).
 */
export async function loadEcrPublicSdk (): Promise<EcrPublicSdk> {
  return await import('@aws-sdk/client-ecr-public')
}

/**
 * The ECR Public client in us-east-1, through the SDK's default chain (or the entry's identity)
 * and its own endpoint settings (AWS_ENDPOINT_URL_ECR_PUBLIC, AWS_ENDPOINT_URL).
 */
export function createEcrPublicClient (sdk: EcrPublicSdk, identity: EcrIdentity = {}): ECRPUBLICClient {
  const credentials = identityCredentials(ECR_PUBLIC_REGION, identity)
  return new sdk.ECRPUBLICClient({ region: ECR_PUBLIC_REGION, ...(credentials === undefined ? {} : { credentials }) })
}

/**
 * The Basic credential ECR Public's token endpoint takes for the authenticated rate limit. An
 * empty token means "ask anonymously": when `anonymousFallback` is set, a principal without
 * credentials (or without ecr-public:GetAuthorizationToken) pulls anonymously for five minutes
 * and is asked again after.
 */
export function ecrPublicTokenFetcher (client: ECRPUBLICClient, options: { anonymousFallback: boolean, log?: Logger, now?: () => number }): FetchToken {
  const now = options.now ?? Date.now
  return async function fetchEcrPublicToken () {
    try {
      // The module the client came from (loaded by then, so this only looks it up).
      const { GetAuthorizationTokenCommand } = await loadEcrPublicSdk()
      const response = await client.send(new GetAuthorizationTokenCommand({}))
      const data = response.authorizationData
      if (data?.authorizationToken === undefined || data.expiresAt === undefined) throw new Error('GetAuthorizationToken (ecr-public) returned no authorization data')
      return { token: data.authorizationToken, expiresAt: data.expiresAt }
    } catch (err) {
      if (!options.anonymousFallback) throw err
      options.log?.warn({ reason: describeTokenError(err) }, 'no ECR Public credential: pulling from public.ecr.aws anonymously (its lower rate limit)')
      return { token: '', expiresAt: new Date(now() + 5 * 60_000) }
    }
  }
}

/** For `anonymous: true`: never asks AWS; the empty token means "anonymous" to the authorizer. */
export const anonymousToken: FetchToken = async () => ({ token: '', expiresAt: new Date(Date.now() + 365 * 24 * 3_600_000) })

interface BearerChallenge { realm: string, service: string | undefined, scope: string | undefined }

/** `Bearer realm="…",service="…",scope="…"` (RFC 6750 §3; distribution's token auth spec). */
export function parseBearerChallenge (header: string | string[] | undefined): BearerChallenge | undefined {
  for (const value of Array.isArray(header) ? header : header === undefined ? [] : [header]) {
    const match = /^\s*Bearer\s+(.*)$/i.exec(value)
    if (match === null) continue
    const params = new Map<string, string>()
    for (const [, key, quoted, bare] of (match[1] as string).matchAll(/([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
      params.set((key as string).toLowerCase(), quoted === undefined ? bare as string : quoted.replace(/\\(.)/g, '$1'))
    }
    const realm = params.get('realm')
    if (realm !== undefined) return { realm, service: params.get('service'), scope: params.get('scope') }
  }
  return undefined
}

/**
 * Credentials go to a realm on the registry's own hostname or a subdomain of it, any port — never
 * to another host (a registry, or whoever answers for it, could name any realm).
 */
export function realmAllowed (realm: string, registryOrigin: string): boolean {
  let realmUrl: URL
  try {
    realmUrl = new URL(realm)
  } catch {
    return false
  }
  if (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:') return false
  const host = new URL(registryOrigin).hostname.toLowerCase()
  const realmHost = realmUrl.hostname.toLowerCase()
  return realmHost === host || realmHost.endsWith(`.${host}`)
}

interface HeldBearer { token: string, expiresAt: number }

export interface EcrPublicAuthorizerOptions {
  pool: CredentialPool
  /** Toward the realm: the same agents (and TLS verification) as toward registries. */
  transport: Transport
  clock?: Clock
  log: Logger
}

/** A bearer token is not used in its last tenth of life (at least 5 s): clock skew and transit. */
/** A token realm's answer is a small JSON object; a larger one is refused rather than held. */
const TOKEN_BODY_LIMIT = 64 * 1024
/** ECR Public answers an expired Bearer token with 400 DENIED, not 401. */
const CHALLENGE_STATUSES: readonly number[] = [400, 401]

const MARGIN_FRACTION = 0.1
/** distribution's token spec: a token without expires_in lives 60 seconds. */
const DEFAULT_EXPIRES_IN = 60

/**
 * ECR Public (and registries like it): the registry token flow. A 401 names the realm; the proxy
 * gets a bearer token there for the request's scope — with ECR Public's Basic credential when it
 * has one, anonymously otherwise — and caches it per registry and scope until it expires. ECR
 * Public answers an expired or bad bearer with 400, not 401: that too gets a new token.
 */
export class EcrPublicBearerAuthorizer implements Authorizer {
  readonly #pool: CredentialPool
  readonly #transport: Transport
  readonly #clock: Clock
  readonly #log: Logger
  /** The realm each registry origin named. */
  readonly #realms = new Map<string, BearerChallenge>()
  /** Bearer tokens by origin and scope. Never logged. */
  readonly #tokens = new Map<string, HeldBearer>()
  /** Token requests in flight, by origin and scope: one per scope however many pulls wait. */
  readonly #inFlight = new Map<string, Promise<HeldBearer>>()

  constructor (options: EcrPublicAuthorizerOptions) {
    this.#pool = options.pool
    this.#transport = options.transport
    this.#clock = options.clock ?? systemClock
    this.#log = options.log
  }

  challengeStatuses (): readonly number[] {
    return CHALLENGE_STATUSES
  }

  async authorize (credential: CredentialKey, context: AuthorizeContext = {}): Promise<Authorization> {
    const { origin } = context
    if (origin === undefined) return { header: '', token: '' }
    const scope = scopeOf(context.repository)
    const held = this.#tokens.get(`${origin} ${scope}`)
    if (held !== undefined && held.expiresAt > this.#clock.now()) return bearer(held)
    const realm = this.#realms.get(origin)
    // Before the registry has named its realm, the request goes without: its 401 names it.
    if (realm === undefined) return { header: '', token: '' }
    return bearer(await this.#fetch(credential, origin, realm, scope))
  }

  async onChallenge (credential: CredentialKey, used: Authorization, challenge: Challenge, context: AuthorizeContext = {}): Promise<ChallengeOutcome> {
    const { origin } = context
    if (origin === undefined) return { rejected: false }
    let realm = this.#realms.get(origin)
    if (challenge.status === 401) {
      const offered = parseBearerChallenge(challenge.headers['www-authenticate'])
      if (offered === undefined) return { rejected: false }
      if (!realmAllowed(offered.realm, origin)) {
        this.#log.warn({ registry: origin, realmHost: hostOf(offered.realm) }, 'the registry named a token realm on another host: no credential is sent there')
        return { rejected: false }
      }
      realm = { realm: offered.realm, service: offered.service, scope: undefined }
      this.#realms.set(origin, realm)
    } else if (challenge.status !== 400 || used.token === '' || realm === undefined) {
      // A 400 is about the bearer only when one was sent; otherwise it is the registry's answer.
      return { rejected: false }
    }
    const scope = scopeOf(context.repository)
    const key = `${origin} ${scope}`
    if (this.#tokens.get(key)?.token === used.token) this.#tokens.delete(key)
    const fresh = await this.#fetch(credential, origin, realm, scope)
    return fresh.token === used.token ? { rejected: true } : { rejected: true, replacement: bearer(fresh) }
  }

  async #fetch (credential: CredentialKey, origin: string, realm: BearerChallenge, scope: string): Promise<HeldBearer> {
    const key = `${origin} ${scope}`
    const pending = this.#inFlight.get(key)
    if (pending !== undefined) return await pending
    const request = this.#request(credential, key, realm, scope).finally(() => { this.#inFlight.delete(key) })
    this.#inFlight.set(key, request)
    return await request
  }

  async #request (credential: CredentialKey, key: string, realm: BearerChallenge, scope: string): Promise<HeldBearer> {
    // Anonymous by configuration: AWS is never asked.
    const basic = credential.anonymous === true ? '' : (await this.#pool.get(credential).get()).token
    const url = new URL(realm.realm)
    if (realm.service !== undefined) url.searchParams.set('service', realm.service)
    if (scope !== '') url.searchParams.set('scope', scope)
    const sentAt = this.#clock.now()
    let response: Awaited<ReturnType<Transport['request']>>
    let body: Buffer
    try {
      response = await this.#transport.request({
        origin: url.origin,
        method: 'GET',
        path: `${url.pathname}${url.search}`,
        headers: { accept: 'application/json', ...(basic === '' ? {} : { authorization: `Basic ${basic}` }) }
      })
      const { head, rest } = await readLimited(response.body.stream(), TOKEN_BODY_LIMIT)
      if (rest !== undefined) {
        rest.destroy()
        throw Object.assign(new Error(`an answer over ${TOKEN_BODY_LIMIT} bytes`), { code: 'ETOOLARGE' })
      }
      body = head
    } catch (err) {
      throw new BearerTokenError(`the token realm ${url.host} could not be reached (${(err as { code?: string }).code ?? (err as Error).message})`)
    }
    if (response.statusCode !== 200) {
      this.#log.warn({ realmHost: url.host, status: response.statusCode, authenticated: basic !== '' }, 'the token realm refused a bearer token')
      throw new BearerTokenError(`the token realm ${url.host} answered ${response.statusCode}`)
    }
    let parsed: { token?: unknown, access_token?: unknown, expires_in?: unknown }
    try {
      parsed = JSON.parse(body.toString('utf8')) as typeof parsed
    } catch {
      throw new BearerTokenError(`the token realm ${url.host} answered no JSON`)
    }
    const token = typeof parsed.token === 'string' ? parsed.token : typeof parsed.access_token === 'string' ? parsed.access_token : undefined
    if (token === undefined || token === '') throw new BearerTokenError(`the token realm ${url.host} answered no token`)
    const lifeSeconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_EXPIRES_IN
    const lifeMs = lifeSeconds * 1000
    const held = { token, expiresAt: sentAt + lifeMs - Math.max(lifeMs * MARGIN_FRACTION, Math.min(5000, lifeMs / 2)) }
    this.#tokens.set(key, held)
    this.#log.debug({ realmHost: url.host, scope, authenticated: basic !== '', expiresInSeconds: lifeSeconds }, 'bearer token obtained')
    return held
  }
}

/** The token realm refused or gave nothing usable: the client gets 502 with the reason. */
export class BearerTokenError extends Error {
  override name = 'BearerTokenError'
}

function bearer (held: HeldBearer): Authorization {
  return { header: `Bearer ${held.token}`, token: held.token }
}

/** A pull's scope (distribution's token spec); empty for ping and catalog. */
function scopeOf (repository: string | undefined): string {
  return repository === undefined ? '' : `repository:${repository}:pull`
}

function hostOf (url: string): string {
  try {
    return new URL(url).host
  } catch {
    return '(not a URL)'
  }
}
