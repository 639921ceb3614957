import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { Value } from '@sinclair/typebox/value'
import { parseEcrHost, registryOrigin } from '../routing/endpoint.js'
import { canonicalMirrorHost } from '../routing/mirrors.js'
import { ConfigSchema, MIRROR_HOST_PATTERN, type Config } from './schema.js'
import { LEGACY_KEYS, SECTIONS, SETTINGS, type Setting } from './settings.js'

export * from './schema.js'
export { SETTINGS, type Setting } from './settings.js'

/**
 * The configuration from three sources. Precedence (highest first): command-line flag >
 * environment variable > config file > default (the schema's).
 */
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
  const options: Record<string, { type: 'string' | 'boolean', multiple?: boolean, short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
    config: { type: 'string' }
  }
  for (const s of SETTINGS) {
    if (s.flag !== '') options[s.flag] = { type: s.kind === 'boolean' ? 'boolean' : 'string', ...(s.repeatable === true ? { multiple: true } : {}) }
  }
  let parsed
  try {
    parsed = parseArgs({ args: joinNegativeValues(argv, options), options, allowPositionals: false, strict: true })
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see --help)`)
  }
  const values = new Map<Setting, string | boolean>()
  for (const s of SETTINGS) {
    const value = s.flag === '' ? undefined : parsed.values[s.flag]
    // A repeatable flag: its values as one comma-separated list, like the environment's.
    if (value !== undefined) values.set(s, Array.isArray(value) ? value.join(',') : value)
  }
  const configFile = parsed.values.config
  return {
    help: parsed.values.help === true,
    version: parsed.values.version === true,
    ...(typeof configFile === 'string' ? { configFile } : {}),
    values
  }
}

/**
 * `--port -1` reads as a flag followed by another flag to parseArgs; a value-taking flag followed
 * by a negative number takes it as its value, so the schema can say what is wrong with it.
 */
function joinNegativeValues (argv: string[], options: Record<string, { type: 'string' | 'boolean' }>): string[] {
  const joined: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    const next = argv[i + 1]
    if (arg.startsWith('--') && options[arg.slice(2)]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${arg}=${next}`)
      i++
    } else {
      joined.push(arg)
    }
  }
  return joined
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
      s.flag === '' ? '(no flag)' : `--${s.flag}${s.kind === 'boolean' ? '' : ` ${s.metavar ?? (s.kind === 'string' ? 'VALUE' : s.kind === 'list' ? 'LIST' : 'N')}`}`,
      s.env, `${s.help} [config: ${s.key}]`)),
    formatOption('-h, --help', '', 'show this help'),
    formatOption('-v, --version', '', 'print the version'),
    '',
    'Registries are addressed, in this order, by containerd\'s ?ns=<registry host>, by the registry',
    'hostname as the first path component (localhost:5000/<host>/team/app), by an alias as the first',
    'path component (localhost:5000/prod/team/app), or bare for the default registry (a lone registry,',
    'or default: true in the file); anything else is 404 NAME_UNKNOWN and nothing is sent.',
    'A mirrored public registry (--mirror docker.io=prod/docker-hub) is reached the same ways, by its',
    'host, and — with no default registry — as the Docker Hub name of any bare name (Docker\'s',
    'registry-mirrors); it is served pull-only from the pull-through cache\'s prefix.',
    'The ECR API endpoint follows the SDK\'s own settings (AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL).',
    'Health: GET /healthz (alive), GET /readyz (200 only while every registry holds a valid token;',
    '?registry=<host or alias> for one).',
    'Metrics: GET /metrics (Prometheus text format).'
  ]
  return lines.join('\n') + '\n'
}

function formatOption (flag: string, env: string, help: string): string {
  const head = flag.length >= 34 ? `${flag}\n${' '.repeat(36)}` : flag.padEnd(34)
  return `  ${head}${env === '' ? '' : `${env}\n${' '.repeat(36)}`}${help}`
}

/** Where a value came from, and the key as its source spelled it (flat or sectioned). */
interface Origin { source: string, key: string }
type Raw = Record<string, unknown>

/**
 * Builds the configuration from the three sources. Every value is checked against the schema,
 * and a bad one is reported with the key as the user wrote it, where it came from, and what was given.
 */
export function loadConfig (args: CliArgs, env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Raw = {}
  const origins = new Map<string, Origin>()

  const configFile = args.configFile ?? nonEmpty(env.ECR_PROXY_CONFIG)
  if (configFile !== undefined) {
    const source = `config file ${configFile}`
    for (const [key, value] of Object.entries(readConfigFile(configFile))) {
      const path = SECTIONS.has(key) ? [key] : LEGACY_KEYS.get(key) ?? [key]
      setAt(raw, path, value)
      origins.set(path.join('.'), { source, key })
    }
  }
  const numbersAsStrings = coerceFileValues(raw, origins)
  for (const s of SETTINGS) {
    const value = nonEmpty(env[s.env])
    if (value !== undefined) assign(raw, origins, s, convert(s, value, s.env), s.env)
  }
  for (const [s, value] of args.values) {
    assign(raw, origins, s, typeof value === 'boolean' ? value : convert(s, value, `--${s.flag}`), `--${s.flag}`)
  }

  const withDefaults = Value.Default(ConfigSchema, raw)
  const firstError = Value.Errors(ConfigSchema, withDefaults).First()
  if (firstError !== undefined) {
    const path = firstError.path.replace(/^\//, '').split('/')
    const { source, key } = originOf(origins, path)
    const secret = SETTINGS.some((s) => s.secret === true && startsWith(path, s.path))
    const shown = firstError.value === undefined || secret ? '' : `, got ${JSON.stringify(firstError.value)}`
    const problem = firstError.message.startsWith('Unexpected property')
      ? 'is not a known setting (see --help)'
      : explain(firstError.schema as ExplainableSchema, firstError.message)
    const hint = numbersAsStrings.has(path.join('.')) ? ' (the file gave a number: write it in quotes, so that no leading zero is lost)' : ''
    throw new ConfigError(`invalid configuration: ${key === '' ? 'the configuration' : key} (from ${source}) ${problem}${shown}${hint}`)
  }
  SOURCES.set(withDefaults as object, origins)
  const config = withDefaults as Config
  if ((config.listener.tlsCert === undefined) !== (config.listener.tlsKey === undefined)) {
    throw new ConfigError('invalid configuration: tlsCert and tlsKey go together (--tls-cert FILE --tls-key FILE)')
  }
  const problem = registriesProblem(config)
  if (problem !== undefined) {
    const { source, key } = originOf(origins, ['registries', String(problem.entry), problem.key])
    throw new ConfigError(`invalid configuration: ${key} (from ${source}) ${problem.message}`)
  }
  const mirrorProblem = mirrorsProblem(config)
  if (mirrorProblem !== undefined) {
    const { source, key } = originOf(origins, ['mirrors', ...mirrorProblem.path])
    throw new ConfigError(`invalid configuration: ${key} (from ${source}) ${mirrorProblem.message}`)
  }
  const hubPort = config.listener.dockerHubMirrorPort
  if (hubPort !== undefined) {
    const { source, key } = originOf(origins, ['listener', 'dockerHubMirrorPort'])
    if (!Object.keys(config.mirrors).some((host) => canonicalMirrorHost(host) === 'docker.io')) {
      throw new ConfigError(`invalid configuration: ${key} (from ${source}) serves only the docker.io mirror, and none is configured (--mirror docker.io=REGISTRY/PREFIX), got ${hubPort}`)
    }
    if (hubPort !== 0 && hubPort === config.listener.port) throw new ConfigError(`invalid configuration: ${key} (from ${source}) must differ from listener.port, got ${hubPort}`)
  }
  return config
}

/** The hostname an entry names, if it names one. */
function entryHost (entry: Config['registries'][number]): string | undefined {
  if (entry.registry !== undefined) return entry.registry
  if (entry.registryId !== undefined && entry.region !== undefined) return new URL(registryOrigin({ registryId: entry.registryId, region: entry.region, fips: entry.fips, dualStack: entry.dualStack })).hostname
  return undefined
}

/**
 * Each mirror is a public registry's hostname (Docker Hub's three names count as one) that is not
 * itself a configured registry, served by a configured registry named by hostname or alias.
 */
function mirrorsProblem (config: Config): { path: string[], message: string } | undefined {
  const hosts = config.registries.map(entryHost)
  const aliases = config.registries.map((entry) => entry.alias)
  const seen = new Map<string, string>()
  for (const [host, mirror] of Object.entries(config.mirrors)) {
    if (!new RegExp(MIRROR_HOST_PATTERN).test(host)) return { path: [host], message: `is not a registry hostname (lower case, e.g. docker.io or registry.k8s.io), got ${JSON.stringify(host)}` }
    const canonical = canonicalMirrorHost(host)
    const first = seen.get(canonical)
    if (first !== undefined) return { path: [host], message: `names the same registry as mirrors.${first} (${canonical})` }
    seen.set(canonical, host)
    if (hosts.includes(host)) return { path: [host], message: 'is a configured registry itself: a mirror is a public registry served from a pull-through cache' }
    const target = mirror.registry.toLowerCase()
    if (!hosts.includes(target) && !aliases.includes(target)) {
      const known = [...hosts, ...aliases].filter((name): name is string => name !== undefined)
      return { path: [host, 'registry'], message: `names no configured registry (${known.length === 0 ? 'name the registry by hostname in registries' : `one of ${known.join(', ')}`}), got ${JSON.stringify(mirror.registry)}` }
    }
  }
  return undefined
}

interface RegistryProblem { entry: number, key: string, message: string }

/**
 * What the schema cannot say about the registry list: each entry names one registry, once; one
 * default at most; aliases unique. An entry without a hostname or account is the caller's own
 * registry (named by GetAuthorizationToken) and can only stand alone.
 */
function registriesProblem (config: Config): RegistryProblem | undefined {
  const hosts = new Map<string, number>()
  const aliases = new Map<string, number>()
  let defaultAt: number | undefined
  for (const [i, entry] of config.registries.entries()) {
    if (entry.registry === 'public.ecr.aws') {
      for (const key of ['registryId', 'region'] as const) {
        if (entry[key] !== undefined) return { entry: i, key, message: `does not apply to public.ecr.aws (ECR Public's API is in us-east-1 only), got ${JSON.stringify(entry[key])}` }
      }
      if (entry.fips || entry.dualStack) return { entry: i, key: entry.fips ? 'fips' : 'dualStack', message: 'does not apply to public.ecr.aws' }
    } else if (entry.anonymous !== undefined) {
      return { entry: i, key: 'anonymous', message: 'applies to public.ecr.aws only' }
    } else if (entry.registry !== undefined) {
      const parsed = parseEcrHost(entry.registry)
      if (parsed === undefined) return { entry: i, key: 'registry', message: `is not an ECR registry hostname (<account>.dkr.ecr.<region>.amazonaws.com, its FIPS, dual-stack or China form, or public.ecr.aws), got ${JSON.stringify(entry.registry)}` }
      for (const key of ['registryId', 'region', 'fips', 'dualStack'] as const) {
        const given = key === 'fips' || key === 'dualStack' ? (entry[key] ? true : undefined) : entry[key]
        if (given !== undefined && given !== parsed[key]) return { entry: i, key, message: `contradicts the hostname ${entry.registry}, got ${JSON.stringify(given)}` }
      }
    } else if (entry.registryId === undefined && config.registries.length > 1) {
      return { entry: i, key: 'registry', message: 'is needed when several registries are configured: name each by hostname, or by registryId and region' }
    }
    const host = entry.registry ?? (entry.registryId !== undefined && entry.region !== undefined ? new URL(registryOrigin({ registryId: entry.registryId, region: entry.region, fips: entry.fips, dualStack: entry.dualStack })).hostname : entry.registryId)
    if (host !== undefined) {
      const first = hosts.get(host)
      if (first !== undefined) return { entry: i, key: entry.registry !== undefined ? 'registry' : 'registryId', message: `names the same registry as registries[${first}] (${host})` }
      hosts.set(host, i)
    }
    if (entry.alias !== undefined) {
      const first = aliases.get(entry.alias)
      if (first !== undefined) return { entry: i, key: 'alias', message: `is also the alias of registries[${first}], got ${JSON.stringify(entry.alias)}` }
      aliases.set(entry.alias, i)
    }
    if (entry.default === true) {
      if (defaultAt !== undefined) return { entry: i, key: 'default', message: `is also set on registries[${defaultAt}]: one default registry at most` }
      defaultAt = i
    }
  }
  return undefined
}

function startsWith (path: readonly string[], prefix: readonly string[]): boolean {
  return prefix.length <= path.length && prefix.every((part, i) => path[i] === part)
}

/** The source of the longest recorded prefix of `path`, and the key in the words of that source. */
function originOf (origins: Map<string, Origin>, path: string[]): Origin {
  for (let length = path.length; length > 0; length--) {
    const origin = origins.get(path.slice(0, length).join('.'))
    if (origin !== undefined) return { source: origin.source, key: [origin.key, ...path.slice(length)].join('.') }
  }
  return { source: 'config', key: path.join('.') }
}

const SOURCES = new WeakMap<object, Map<string, Origin>>()

/**
 * `<key> (from <where>)` for a setting of a loaded configuration, for problems found after
 * loading (an unreadable file, an empty htpasswd): the same words as every other config error.
 */
export function settingOrigin (config: Config, path: readonly string[]): string {
  const { source, key } = originOf(SOURCES.get(config) ?? new Map(), [...path])
  return `${key} (from ${source})`
}

interface ExplainableSchema {
  type?: string
  pattern?: string
  anyOf?: Array<{ const?: unknown }>
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
}

/** What the schema wants, in plain English. */
function explain (schema: ExplainableSchema, message: string): string {
  if (schema.anyOf !== undefined) return `must be one of ${schema.anyOf.map((s) => String(s.const)).join(', ')}`
  if (schema.pattern !== undefined) return `must match ${schema.pattern}`
  const what = schema.type === 'integer' ? 'a whole number' : schema.type === 'number' ? 'a number' : undefined
  if (what !== undefined) {
    const bounds = [
      schema.minimum !== undefined ? `at least ${schema.minimum}` : undefined,
      schema.exclusiveMinimum !== undefined ? `more than ${schema.exclusiveMinimum}` : undefined,
      schema.maximum !== undefined ? `at most ${schema.maximum}` : undefined
    ].filter((b): b is string => b !== undefined)
    return `must be ${what}${bounds.length === 0 ? '' : `, ${bounds.join(' and ')}`}`
  }
  if (schema.type === 'string') return 'must be a string'
  if (schema.type === 'boolean') return 'must be true or false'
  if (schema.type === 'array') return 'must be a list'
  if (schema.type === 'object') return 'must be a mapping'
  return message.replace(/^Expected/, 'must be')
}

/**
 * One coercion rule for every source: in the file too, a boolean may be written true/false,
 * yes/no or 1/0, and a number as a string; a whole number where a string is wanted (an account id
 * YAML read as a number) becomes its decimal digits — unless digits were lost (a leading zero),
 * which is reported instead.
 */
function coerceFileValues (raw: Raw, origins: Map<string, Origin>): Set<string> {
  const numbersAsStrings = new Set<string>()
  const visit = (path: readonly string[], kind: 'string' | 'integer' | 'number' | 'boolean') => {
    let parent: unknown = raw
    for (const part of path.slice(0, -1)) parent = (parent as Raw | undefined)?.[part]
    if (typeof parent !== 'object' || parent === null) return
    const leaf = path[path.length - 1] as string
    const value = (parent as Raw)[leaf]
    const where = () => { const o = originOf(origins, [...path]); return `${o.key} (from ${o.source})` }
    if (typeof value === 'string' && kind !== 'string') {
      (parent as Raw)[leaf] = convert({ kind, name: path } as unknown as Setting, value, '', where())
    } else if (typeof value === 'number' && kind === 'string') {
      if (!Number.isSafeInteger(value)) return
      (parent as Raw)[leaf] = String(value)
      numbersAsStrings.add(path.join('.'))
    }
  }
  for (const s of SETTINGS) {
    if (s.kind === 'list' || s.path[0] === 'registries') continue
    visit(s.path, s.kind)
  }
  const registries = raw.registries
  if (Array.isArray(registries)) {
    registries.forEach((_entry, i) => {
      for (const key of ['registry', 'region', 'registryId', 'alias', 'upstream', 'profile', 'roleArn', 'externalId', 'roleSessionName']) visit(['registries', String(i), key], 'string')
      for (const key of ['fips', 'dualStack', 'default', 'anonymous']) visit(['registries', String(i), key], 'boolean')
    })
  }
  if (typeof raw.anyEcrRegistry === 'string') visit(['anyEcrRegistry'], 'boolean')
  return numbersAsStrings
}

function readConfigFile (file: string): Raw {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`)
  }
  // Loaded only for a config file (1 MB of a proxy's idle RSS otherwise, docs/performance.md
  // finding 2); outside the try below, so a missing parser is not reported as a bad file.
  const { parse: parseYaml } = createRequire(import.meta.url)('yaml') as typeof import('yaml')
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

function setAt (raw: Raw, path: readonly string[], value: unknown): void {
  let target: Raw = raw
  for (const part of path.slice(0, -1)) {
    const next = target[part]
    if (part === 'registries') {
      // Flat registry settings address the first entry of the list.
      const list = Array.isArray(next) ? [...next as unknown[]] : [{}]
      target[part] = list
      target = list as unknown as Raw
      continue
    }
    target = target[part] = (typeof next === 'object' && next !== null && !Array.isArray(next)) ? { ...next as Raw } : {}
  }
  target[path[path.length - 1] as string] = value
}

function assign (raw: Raw, origins: Map<string, Origin>, s: Setting, value: unknown, source: string): void {
  setAt(raw, s.path, value)
  origins.set(s.path.join('.'), { source, key: s.name.join('.') })
}

function convert (s: Setting, value: string, source: string, where = `${s.name.join('.')} (from ${source})`): unknown {
  switch (s.kind) {
    case 'string':
      return value
    case 'list': {
      const items = value.split(',').map((item) => item.trim()).filter((item) => item !== '')
      if (s.fromList === undefined) return items
      try {
        return s.fromList(items)
      } catch (err) {
        throw new ConfigError(`invalid configuration: ${where} ${(err as Error).message}`)
      }
    }
    case 'boolean':
      if (/^(true|1|yes)$/i.test(value)) return true
      if (/^(false|0|no)$/i.test(value)) return false
      throw new ConfigError(`invalid configuration: ${where} must be true or false (or yes/no, 1/0), got ${JSON.stringify(value)}`)
    default: {
      const number = Number(value)
      if (value.trim() === '' || !Number.isFinite(number)) {
        throw new ConfigError(`invalid configuration: ${where} must be a number, got ${JSON.stringify(value)}`)
      }
      return number
    }
  }
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}
