import { Type, type Static } from '@sinclair/typebox'

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

/** One ECR registry: by account and region (or the caller's own, named by GetAuthorizationToken). */
export const RegistrySchema = Type.Object({
  region: Type.Optional(Type.String({ pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]+$' })),
  registryId: Type.Optional(Type.String({ pattern: '^[0-9]{12}$' })),
  /** An explicit origin to forward to instead of the ECR hostname (local registries, tests). */
  upstream: Type.Optional(Type.String({ pattern: '^https?://[^/?#@]+/?$' })),
  fips: Type.Boolean({ default: false }),
  dualStack: Type.Boolean({ default: false })
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

export const ConfigSchema = Type.Object({
  listener: ListenerSchema,
  access: AccessSchema,
  // One registry per proxy for now; the list is where several go.
  registries: Type.Array(RegistrySchema, { minItems: 1, maxItems: 1, default: [{}] }),
  credentials: CredentialsSchema,
  forwarding: ForwardingSchema,
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
export type ForwardingConfig = Config['forwarding']
export type RefreshConfig = Config['credentials']['refresh']
