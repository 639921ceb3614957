import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { parse as parseYaml } from 'yaml'

/**
 * One schema for the whole configuration: it validates, fills defaults and gives the types.
 * Precedence (highest first): command-line flag > environment variable > config file > default.
 */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export const ConfigSchema = Type.Object({
  host: Type.String({ minLength: 1, default: '127.0.0.1' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 5000 }),
  region: Type.Optional(Type.String({ pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]+$' })),
  registryId: Type.Optional(Type.String({ pattern: '^[0-9]{12}$' })),
  upstream: Type.Optional(Type.String({ pattern: '^https?://[^/?#@]+/?$' })),
  fips: Type.Boolean({ default: false }),
  dualStack: Type.Boolean({ default: false }),
  logLevel: Type.Union(LOG_LEVELS.map((level) => Type.Literal(level)), { default: 'info' }),
  refresh: Type.Object({
    fraction: Type.Number({ exclusiveMinimum: 0, maximum: 0.9, default: 0.5 }),
    minRetrySeconds: Type.Number({ exclusiveMinimum: 0, default: 1 }),
    maxRetrySeconds: Type.Number({ exclusiveMinimum: 0, default: 60 }),
    rejectedIntervalSeconds: Type.Number({ minimum: 0, default: 10 })
  }, { additionalProperties: false, default: {} }),
  shutdownGraceSeconds: Type.Number({ minimum: 0, default: 30 }),
  metrics: Type.Object({
    repositoryLabel: Type.Boolean({ default: false })
  }, { additionalProperties: false, default: {} }),
  // Exposure, client access, policy, egress and limits (docs/security.md).
  allowUnauthenticated: Type.Boolean({ default: false }),
  htpasswd: Type.Optional(Type.String({ minLength: 1 })),
  bearerTokensFile: Type.Optional(Type.String({ minLength: 1 })),
  // Checked by the client authenticator, whose messages never include a token.
  bearerTokens: Type.Optional(Type.Array(Type.String())),
  readOnly: Type.Boolean({ default: false }),
  allowRepositories: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  denyRepositories: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  redirects: Type.Union([Type.Literal('pass'), Type.Literal('follow')], { default: 'pass' }),
  redirectAllowedHosts: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  tlsCert: Type.Optional(Type.String({ minLength: 1 })),
  tlsKey: Type.Optional(Type.String({ minLength: 1 })),
  maxConnections: Type.Integer({ minimum: 0, default: 1024 }),
  headerTimeoutSeconds: Type.Number({ exclusiveMinimum: 0, default: 20 }),
  idleTimeoutSeconds: Type.Number({ minimum: 0, default: 300 }),
  keepAliveTimeoutSeconds: Type.Number({ exclusiveMinimum: 0, default: 72 }),
  upstreamConnectTimeoutSeconds: Type.Number({ exclusiveMinimum: 0, default: 10 }),
  upstreamHeadersTimeoutSeconds: Type.Number({ exclusiveMinimum: 0, default: 300 }),
  upstreamBodyTimeoutSeconds: Type.Number({ minimum: 0, default: 300 })
}, { additionalProperties: false })

export type Config = Static<typeof ConfigSchema>

/** `list`: comma-separated in flags and the environment, a list in the config file. */
type Kind = 'string' | 'integer' | 'number' | 'boolean' | 'list'

interface Setting {
  /** Path of the key in the config file, e.g. ['refresh', 'fraction']. */
  path: string[]
  flag: string
  env: string
  kind: Kind
  help: string
  /** A secret: no flag (argv is visible to every local user), never echoed in an error. */
  secret?: boolean
}

function setting (path: string[], kind: Kind, help: string, secret = false): Setting {
  const words = path.flatMap((part) => part.replace(/([A-Z])/g, ' $1').toLowerCase().split(' '))
  return { path, kind, help, flag: secret ? '' : words.join('-'), env: `ECR_PROXY_${words.join('_').toUpperCase()}`, ...(secret ? { secret } : {}) }
}

/** Every setting has a flag, an environment variable and a config key of the same meaning. */
export const SETTINGS: readonly Setting[] = [
  setting(['host'], 'string', 'address to listen on (default 127.0.0.1)'),
  setting(['port'], 'integer', 'port to listen on (default 5000; 0 picks a free port)'),
  setting(['region'], 'string', 'AWS region of the registry (default: the SDK\'s AWS_REGION / profile setting)'),
  setting(['registryId'], 'string', 'AWS account id of the registry; default: the proxyEndpoint GetAuthorizationToken returns'),
  setting(['upstream'], 'string', 'registry origin to forward to, e.g. https://host:port (overrides --registry-id; http:// allowed for local registries)'),
  setting(['fips'], 'boolean', 'use the FIPS registry endpoint (<id>.dkr.ecr-fips.<region>.amazonaws.com)'),
  setting(['dualStack'], 'boolean', 'use the dual-stack (IPv4 + IPv6) registry endpoint (<id>.dkr-ecr.<region>.on.aws)'),
  setting(['logLevel'], 'string', `log level: ${LOG_LEVELS.join(', ')} (default info)`),
  setting(['refresh', 'fraction'], 'number', 'refresh the token when this fraction of its remaining life has passed (default 0.5)'),
  setting(['refresh', 'minRetrySeconds'], 'number', 'first retry delay after a failed token fetch (default 1)'),
  setting(['refresh', 'maxRetrySeconds'], 'number', 'longest retry delay after failed token fetches (default 60)'),
  setting(['refresh', 'rejectedIntervalSeconds'], 'number', 'least time between refreshes forced by the registry rejecting the token (default 10)'),
  setting(['shutdownGraceSeconds'], 'number', 'on SIGTERM/SIGINT, let in-flight transfers finish for up to this long (default 30)'),
  setting(['metrics', 'repositoryLabel'], 'boolean', 'label request metrics with the repository name (only for a known, small set of repositories)'),
  setting(['allowUnauthenticated'], 'boolean', 'listen on a non-loopback address without client authentication (anyone who reaches the proxy acts as its AWS identity)'),
  setting(['htpasswd'], 'string', 'htpasswd file of clients allowed in (bcrypt entries: htpasswd -B); reloaded when it changes'),
  setting(['bearerTokensFile'], 'string', 'file of static client tokens, one per line (Authorization: Bearer, or the password of docker login); reloaded when it changes'),
  setting(['bearerTokens'], 'list', 'static client tokens, comma-separated (environment or config file only: no flag takes a secret)', true),
  setting(['readOnly'], 'boolean', 'refuse pushes, deletes and uploads (403 DENIED, nothing sent upstream)'),
  setting(['allowRepositories'], 'list', 'only these repositories, comma-separated globs (team/*, team/**); default all'),
  setting(['denyRepositories'], 'list', 'never these repositories, comma-separated globs; wins over --allow-repositories'),
  setting(['redirects'], 'string', 'blob redirects to storage: pass (to the client, default) or follow (the proxy fetches and streams them)'),
  setting(['redirectAllowedHosts'], 'list', 'hosts follow mode may fetch from, comma-separated globs, host or host:port (default: the S3 endpoints of the registry\'s region)'),
  setting(['tlsCert'], 'string', 'serve HTTPS with this certificate chain (PEM; with --tls-key); reloaded when it changes'),
  setting(['tlsKey'], 'string', 'private key of --tls-cert (PEM)'),
  setting(['maxConnections'], 'integer', 'most client connections at once; more are dropped (default 1024; 0: no cap)'),
  setting(['headerTimeoutSeconds'], 'number', 'time a client has to send the request headers (default 20)'),
  setting(['idleTimeoutSeconds'], 'number', 'close a client connection idle this long (default 300; 0: never)'),
  setting(['keepAliveTimeoutSeconds'], 'number', 'close a kept-alive client connection after this long without a request (default 72)'),
  setting(['upstreamConnectTimeoutSeconds'], 'number', 'time to connect to the registry, TLS included (default 10)'),
  setting(['upstreamHeadersTimeoutSeconds'], 'number', 'time for the registry\'s response headers after the request is sent (default 300)'),
  setting(['upstreamBodyTimeoutSeconds'], 'number', 'longest pause inside a response body from the registry (default 300; 0: none)')
]

export class ConfigError extends Error {
  override name = 'ConfigError'
}

export interface CliArgs {
  help: boolean
  version: boolean
  configFile?: string
  values: Map<Setting, string | boolean>
}

export function parseCommandLine (argv: string[]): CliArgs {
  const options: Record<string, { type: 'string' | 'boolean', short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
    config: { type: 'string' }
  }
  for (const s of SETTINGS) if (s.flag !== '') options[s.flag] = { type: s.kind === 'boolean' ? 'boolean' : 'string' }
  let parsed
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: false, strict: true })
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see --help)`)
  }
  const values = new Map<Setting, string | boolean>()
  for (const s of SETTINGS) {
    const value = s.flag === '' ? undefined : parsed.values[s.flag]
    if (value !== undefined) values.set(s, value)
  }
  const configFile = parsed.values.config
  return {
    help: parsed.values.help === true,
    version: parsed.values.version === true,
    ...(typeof configFile === 'string' ? { configFile } : {}),
    values
  }
}

export function helpText (): string {
  const lines = [
    'Usage: ecr-auth-proxy [options]',
    '',
    'A local authenticating reverse proxy for Amazon ECR: clients speak the plain registry API',
    '(docker pull localhost:5000/app:1.2); the proxy adds an ECR token from the AWS SDK\'s default',
    'credential chain and streams every request to the registry.',
    '',
    'Options (each also as an environment variable and a config-file key;',
    'precedence: flag > environment > config file > default):',
    '',
    formatOption('--config FILE', 'ECR_PROXY_CONFIG', 'YAML or JSON config file'),
    ...SETTINGS.map((s) => formatOption(
      s.flag === '' ? '(no flag)' : `--${s.flag}${s.kind === 'boolean' ? '' : ` ${s.kind === 'string' ? 'VALUE' : s.kind === 'list' ? 'LIST' : 'N'}`}`,
      s.env, `${s.help} [config: ${s.path.join('.')}]`)),
    formatOption('-h, --help', '', 'show this help'),
    formatOption('-v, --version', '', 'print the version'),
    '',
    'The ECR API endpoint follows the SDK\'s own settings (AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL).',
    'Health: GET /healthz (alive), GET /readyz (200 only while a valid token is held).',
    'Metrics: GET /metrics (Prometheus text format).'
  ]
  return lines.join('\n') + '\n'
}

function formatOption (flag: string, env: string, help: string): string {
  const head = flag.length >= 34 ? `${flag}\n${' '.repeat(36)}` : flag.padEnd(34)
  return `  ${head}${env === '' ? '' : `${env}\n${' '.repeat(36)}`}${help}`
}

type Source = string
type Raw = Record<string, unknown>

/**
 * Builds the configuration from the three sources. Every value is checked against the schema,
 * and a bad one is reported with its key, where it came from, and what was given.
 */
export function loadConfig (args: CliArgs, env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Raw = {}
  const sources = new Map<string, Source>()

  const configFile = args.configFile ?? nonEmpty(env.ECR_PROXY_CONFIG)
  if (configFile !== undefined) {
    const fromFile = readConfigFile(configFile)
    for (const [key, value] of Object.entries(fromFile)) {
      raw[key] = value
      sources.set(key, `config file ${configFile}`)
    }
  }
  for (const s of SETTINGS) {
    const value = nonEmpty(env[s.env])
    if (value !== undefined) assign(raw, sources, s, convert(s, value, s.env), s.env)
  }
  for (const [s, value] of args.values) {
    assign(raw, sources, s, typeof value === 'boolean' ? value : convert(s, value, `--${s.flag}`), `--${s.flag}`)
  }

  const withDefaults = Value.Default(ConfigSchema, raw)
  const firstError = Value.Errors(ConfigSchema, withDefaults).First()
  if (firstError !== undefined) {
    const key = firstError.path.replace(/^\//, '').replace(/\//g, '.')
    const source = sources.get(key) ?? sources.get(key.split('.')[0] ?? '') ?? 'config'
    const secret = SETTINGS.some((s) => s.secret === true && (key === s.path.join('.') || key.startsWith(`${s.path.join('.')}.`)))
    const shown = firstError.value === undefined || secret ? '' : `, got ${JSON.stringify(firstError.value)}`
    const problem = firstError.message.startsWith('Unexpected property')
      ? 'is not a known setting (see --help)'
      : explain(firstError.schema as ExplainableSchema, firstError.message)
    throw new ConfigError(`invalid configuration: ${key === '' ? 'the configuration' : key} (from ${source}) ${problem}${shown}`)
  }
  const config = withDefaults as Config
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new ConfigError('invalid configuration: tlsCert and tlsKey go together (--tls-cert FILE --tls-key FILE)')
  }
  return config
}

interface ExplainableSchema { pattern?: string, anyOf?: Array<{ const?: unknown }> }

function explain (schema: ExplainableSchema, message: string): string {
  if (schema.anyOf !== undefined) return `must be one of ${schema.anyOf.map((s) => String(s.const)).join(', ')}`
  if (schema.pattern !== undefined) return `must match ${schema.pattern}`
  return message.replace(/^Expected/, 'must be')
}

function readConfigFile (file: string): Raw {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`)
  }
  let parsed: unknown
  try {
    // YAML 1.2 is a superset of JSON, so one parser reads both formats.
    parsed = parseYaml(text)
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid YAML or JSON: ${(err as Error).message}`)
  }
  if (parsed === null || parsed === undefined) return {}
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${file} must hold a mapping of settings`)
  }
  return parsed as Raw
}

function assign (raw: Raw, sources: Map<string, Source>, s: Setting, value: unknown, source: Source): void {
  let target = raw
  for (const part of s.path.slice(0, -1)) {
    const next = target[part]
    target = target[part] = (typeof next === 'object' && next !== null && !Array.isArray(next)) ? { ...next } : {}
  }
  target[s.path[s.path.length - 1] as string] = value
  sources.set(s.path.join('.'), source)
}

function convert (s: Setting, value: string, source: string): string | number | boolean | string[] {
  switch (s.kind) {
    case 'string':
      return value
    case 'list':
      return value.split(',').map((item) => item.trim()).filter((item) => item !== '')
    case 'boolean':
      if (/^(true|1|yes)$/i.test(value)) return true
      if (/^(false|0|no)$/i.test(value)) return false
      throw new ConfigError(`invalid configuration: ${s.path.join('.')} (from ${source}) must be true or false, got ${JSON.stringify(value)}`)
    default: {
      const number = Number(value)
      if (value.trim() === '' || !Number.isFinite(number)) {
        throw new ConfigError(`invalid configuration: ${s.path.join('.')} (from ${source}) must be a number, got ${JSON.stringify(value)}`)
      }
      return number
    }
  }
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}
