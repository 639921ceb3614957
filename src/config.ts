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
  }, { additionalProperties: false, default: {} })
}, { additionalProperties: false })

export type Config = Static<typeof ConfigSchema>

type Kind = 'string' | 'integer' | 'number' | 'boolean'

interface Setting {
  /** Path of the key in the config file, e.g. ['refresh', 'fraction']. */
  path: string[]
  flag: string
  env: string
  kind: Kind
  help: string
}

function setting (path: string[], kind: Kind, help: string): Setting {
  const words = path.flatMap((part) => part.replace(/([A-Z])/g, ' $1').toLowerCase().split(' '))
  return { path, kind, help, flag: words.join('-'), env: `ECR_PROXY_${words.join('_').toUpperCase()}` }
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
  setting(['metrics', 'repositoryLabel'], 'boolean', 'label request metrics with the repository name (only for a known, small set of repositories)')
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
  const options: Record<string, { type: 'string' | 'boolean' }> = {
    help: { type: 'boolean' },
    version: { type: 'boolean' },
    config: { type: 'string' }
  }
  for (const s of SETTINGS) options[s.flag] = { type: s.kind === 'boolean' ? 'boolean' : 'string' }
  let parsed
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: false, strict: true })
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see --help)`)
  }
  const values = new Map<Setting, string | boolean>()
  for (const s of SETTINGS) {
    const value = parsed.values[s.flag]
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
      `--${s.flag}${s.kind === 'boolean' ? '' : ` ${s.kind === 'string' ? 'VALUE' : 'N'}`}`,
      s.env, `${s.help} [config: ${s.path.join('.')}]`)),
    formatOption('--help', '', 'show this help'),
    formatOption('--version', '', 'print the version'),
    '',
    'The ECR API endpoint follows the SDK\'s own settings (AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL).',
    'Health: GET /healthz (alive), GET /readyz (200 only while a valid token is held).',
    'Metrics: GET /metrics (Prometheus text format).'
  ]
  return lines.join('\n') + '\n'
}

function formatOption (flag: string, env: string, help: string): string {
  return `  ${flag.padEnd(34)}${env === '' ? '' : `${env}\n${' '.repeat(36)}`}${help}`
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
    const shown = firstError.value === undefined ? '' : `, got ${JSON.stringify(firstError.value)}`
    const problem = firstError.message.startsWith('Unexpected property')
      ? 'is not a known setting (see --help)'
      : explain(firstError.schema as ExplainableSchema, firstError.message)
    throw new ConfigError(`invalid configuration: ${key === '' ? 'the configuration' : key} (from ${source}) ${problem}${shown}`)
  }
  return withDefaults as Config
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

function convert (s: Setting, value: string, source: string): string | number | boolean {
  switch (s.kind) {
    case 'string':
      return value
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
