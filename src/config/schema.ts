import { Type, type Static } from '@sinclair/typebox'
import { SIZE_PATTERN } from '../cache/size.js'

/**
 * One schema for the whole configuration, in sections: it validates, fills defaults (written here
 * and nowhere else) and gives the types. The flat keys of earlier releases (`port`, `region`,
 * `refresh`, …) are still read and mapped into these sections (settings.ts).
 */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

const seconds = (options: { minimum?: number, exclusiveMinimum?: number, default: number }) => Type.Number(options)
const section = <T extends Parameters<typeof Type.Object>[0]>(properties: T) => Type.Object(properties, { additionalProperties: false, default: {} })

export const ListenerSchema = section({
  host: Type.String({ minLength: 1, default: '127.0.0.1' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 5000 }),
  /** A second port, on the same host, that serves only the docker.io mirror (Docker's registry-mirrors). */
  dockerHubMirrorPort: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  tlsCert: Type.Optional(Type.String({ minLength: 1 })),
  tlsKey: Type.Optional(Type.String({ minLength: 1 })),
  maxConnections: Type.Integer({ minimum: 0, default: 1024 }),
  headerTimeoutSeconds: seconds({ exclusiveMinimum: 0, default: 20 }),
  idleTimeoutSeconds: seconds({ minimum: 0, default: 300 }),
  keepAliveTimeoutSeconds: seconds({ exclusiveMinimum: 0, default: 72 }),
  shutdownGraceSeconds: seconds({ minimum: 0, default: 30 })
})

export const AccessSchema = section({
  allowUnauthenticated: Type.Boolean({ default: false }),
  htpasswd: Type.Optional(Type.String({ minLength: 1 })),
  bearerTokensFile: Type.Optional(Type.String({ minLength: 1 })),
  // Checked by the client authenticator, whose messages never include a token.
  bearerTokens: Type.Optional(Type.Array(Type.String())),
  readOnly: Type.Boolean({ default: false }),
  allowRepositories: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  denyRepositories: Type.Array(Type.String({ minLength: 1 }), { default: [] })
})

/** A registry hostname: lower-case labels, no scheme, port or path. */
export const HOSTNAME_PATTERN = '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$'
/** An alias is one repository-path component without dots, so it can never be taken for a hostname. */
export const ALIAS_PATTERN = '^[a-z0-9]+(?:[_-]+[a-z0-9]+)*$'

/**
 * One ECR registry: by hostname, or by account and region (or, alone, the caller's own registry,
 * named by GetAuthorizationToken); optionally an alias, the default for bare names, an explicit
 * origin, and an identity of its own.
 */
export const RegistrySchema = Type.Object({
  registry: Type.Optional(Type.String({ pattern: HOSTNAME_PATTERN })),
  region: Type.Optional(Type.String({ pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]+$' })),
  registryId: Type.Optional(Type.String({ pattern: '^[0-9]{12}$' })),
  fips: Type.Boolean({ default: false }),
  dualStack: Type.Boolean({ default: false }),
  alias: Type.Optional(Type.String({ pattern: ALIAS_PATTERN, maxLength: 64 })),
  default: Type.Optional(Type.Boolean()),
  /** An explicit origin to forward to instead of the ECR hostname (local registries, tests). */
  upstream: Type.Optional(Type.String({ pattern: '^https?://[^/?#@]+/?$' })),
  /** A shared-config profile for this registry's token, instead of the default chain. */
  profile: Type.Optional(Type.String({ minLength: 1 })),
  /** A role assumed (on top of the profile or the default chain) for this registry's token. */
  roleArn: Type.Optional(Type.String({ pattern: '^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\\w+=,.@/-]+$' })),
  externalId: Type.Optional(Type.String({ minLength: 2, maxLength: 1224 })),
  roleSessionName: Type.Optional(Type.String({ pattern: '^[\\w+=,.@-]{2,64}$' })),
  /**
   * public.ecr.aws only: true pulls anonymously, false requires ECR Public's credential; unset
   * uses the credential when the principal has one and pulls anonymously otherwise.
   */
  anonymous: Type.Optional(Type.Boolean())
}, { additionalProperties: false })

/**
 * ECR's pull-through-cache repository prefix (CreatePullThroughCacheRule's ecrRepositoryPrefix):
 * one or more repository-name components.
 */
export const PREFIX_PATTERN = '^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$'
/** A public registry's hostname, with a port if it has one (containerd's ns= may carry it). */
export const MIRROR_HOST_PATTERN = '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+(:[0-9]{1,5})?$'

/**
 * A public registry served from a pull-through cache: the configured registry (hostname or alias)
 * that holds the cache, and the cache rule's repository prefix.
 */
export const MirrorSchema = Type.Object({
  registry: Type.String({ minLength: 1 }),
  prefix: Type.String({ pattern: PREFIX_PATTERN, maxLength: 200 })
}, { additionalProperties: false })

export const CredentialsSchema = section({
  refresh: section({
    fraction: Type.Number({ exclusiveMinimum: 0, maximum: 0.9, default: 0.5 }),
    minRetrySeconds: seconds({ exclusiveMinimum: 0, default: 1 }),
    maxRetrySeconds: seconds({ exclusiveMinimum: 0, default: 60 }),
    rejectedIntervalSeconds: seconds({ minimum: 0, default: 10 })
  })
})

/** How the proxy talks to registries and their blob storage. */
export const ForwardingSchema = section({
  connectTimeoutSeconds: seconds({ exclusiveMinimum: 0, default: 10 }),
  headersTimeoutSeconds: seconds({ exclusiveMinimum: 0, default: 300 }),
  bodyTimeoutSeconds: seconds({ minimum: 0, default: 300 }),
  redirects: Type.Union([Type.Literal('pass'), Type.Literal('follow')], { default: 'pass' }),
  redirectAllowedHosts: Type.Optional(Type.Array(Type.String({ minLength: 1 })))
})

/** The layer cache: off unless a directory is given. */
export const CacheSchema = section({
  dir: Type.Optional(Type.String({ minLength: 1 })),
  maxSize: Type.String({ pattern: SIZE_PATTERN, default: '20GiB' }),
  confirmSeconds: seconds({ minimum: 0, default: 300 }),
  serveStale: Type.Boolean({ default: false })
})

export const ConfigSchema = Type.Object({
  listener: ListenerSchema,
  access: AccessSchema,
  registries: Type.Array(RegistrySchema, { minItems: 1, default: [{}] }),
  /** Serve every hostname of ECR's private-registry grammar, not only the listed ones. */
  anyEcrRegistry: Type.Boolean({ default: false }),
  /** Public registry hostname → the pull-through cache that serves it. */
  mirrors: Type.Record(Type.String(), MirrorSchema, { default: {} }),
  credentials: CredentialsSchema,
  forwarding: ForwardingSchema,
  cache: CacheSchema,
  log: section({
    level: Type.Union(LOG_LEVELS.map((level) => Type.Literal(level)), { default: 'info' })
  }),
  metrics: section({
    repositoryLabel: Type.Boolean({ default: false })
  })
}, { additionalProperties: false })

export type Config = Static<typeof ConfigSchema>
export type ListenerConfig = Config['listener']
export type AccessConfig = Config['access']
export type RegistryConfig = Config['registries'][number]
export type MirrorConfig = Static<typeof MirrorSchema>
export type ForwardingConfig = Config['forwarding']
export type CacheConfig = Config['cache']
export type RefreshConfig = Config['credentials']['refresh']
