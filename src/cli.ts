#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { buildApp } from './app.js'
import { ConfigError, helpText, loadConfig, parseCommandLine } from './config/index.js'
import { createLogger } from './logger.js'
import { exposureRefusal } from './http/exposure.js'
import { registryOrigin } from './routing/endpoint.js'
import { canonicalMirrorHost } from './routing/mirrors.js'
import { configWarnings } from './config/warnings.js'
import { closeOnSignals } from './ops/shutdown.js'

// A write to a closed pipe or a hung-up terminal fails (EPIPE, EIO) as an 'error' event on these
// streams (Node's own warnings go to stderr): ignored, it is no reason to stop serving. The logger
// writes to the descriptors itself and falls back from stdout to stderr to nothing.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})

async function main (): Promise<number> {
  // A subcommand that writes client configuration and exits; it never starts the proxy.
  if (process.argv[2] === 'client-config') return await clientConfig(process.argv.slice(3))
  let config
  try {
    const args = parseCommandLine(process.argv.slice(2))
    if (args.help) {
      process.stdout.write(helpText())
      return 0
    }
    if (args.version) {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
      process.stdout.write(`${pkg.version}\n`)
      return 0
    }
    config = loadConfig(args)
    // A proxy holding ECR credentials is a credential: no open listener off loopback by accident.
    const refusal = await exposureRefusal({ host: config.listener.host, ...config.access })
    if (refusal !== undefined) throw new ConfigError(refusal)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`ecr-auth-proxy: ${err.message}\n`)
    return 2
  }

  const logger = createLogger(config.log.level)
  let built
  try {
    built = await buildApp(config, { logger })
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`ecr-auth-proxy: ${err.message}\n`)
      return 2
    }
    logger.fatal(`cannot start: ${(err as Error).message}`)
    return 1
  }
  for (const warning of configWarnings(config)) logger.warn(warning)
  const { app, registries, listenDockerHubMirror } = built
  const { host, port, dockerHubMirrorPort } = config.listener
  let address: string
  let hubAddress: string | undefined
  let listening = `${host}:${port}`
  try {
    address = await app.listen({ host, port })
    if (listenDockerHubMirror !== undefined && dockerHubMirrorPort !== undefined) {
      listening = `${host}:${dockerHubMirrorPort} (--docker-hub-mirror-port)`
      hubAddress = await listenDockerHubMirror(host, dockerHubMirrorPort)
    }
  } catch (err) {
    // Stopped first, so that nothing (a token fetch still under way) is logged after the cause.
    await app.close()
    logger.fatal(`cannot listen on ${listening}: ${(err as Error).message}`)
    return 1
  }
  if (hubAddress !== undefined) logger.info({ dockerHubMirror: hubAddress }, `serving Docker Hub's mirror (docker.io) on ${hubAddress}: daemon.json "registry-mirrors": ["${hubAddress}"]`)
  logger.info({
    listener: address,
    registries: registries.map((r) => ({ registry: r.name, origin: r.origin ?? '(named by GetAuthorizationToken)', ...(r.alias === undefined ? {} : { alias: r.alias }), ...(r.isDefault ? { default: true } : {}), credential: r.credential.id })),
    ...(config.anyEcrRegistry ? { anyEcrRegistry: true } : {})
  }, `forwarding ${address} to ${registries.map((r) => r.origin ?? r.name).join(', ')}`)
  closeOnSignals({ graceMs: config.listener.shutdownGraceSeconds * 1000, logger, close: async () => { await app.close() } })
  return -1
}

/**
 * `client-config`: for the registries and mirrored hosts the proxy is configured with (its
 * config file through `--config FILE` or ECR_PROXY_CONFIG, ECR_PROXY_REGISTRIES and
 * ECR_PROXY_MIRRORS), plus any `--registry HOST`.
 */
async function clientConfig (argv: string[]): Promise<number> {
  const rest: string[] = []
  let configFile: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '--config') configFile = argv[++i]
    else if (arg.startsWith('--config=')) configFile = arg.slice('--config='.length)
    else rest.push(arg)
  }
  let hosts: string[]
  let dockerHubMirrorPort: number | undefined
  try {
    const config = loadConfig({ help: false, version: false, values: new Map(), ...(configFile === undefined ? {} : { configFile }) })
    hosts = config.registries.map((entry) => entry.registry ?? (entry.registryId !== undefined && entry.region !== undefined
      ? new URL(registryOrigin({ registryId: entry.registryId, region: entry.region, fips: entry.fips, dualStack: entry.dualStack })).hostname
      : undefined)).filter((host): host is string => host !== undefined)
    // Mirrored public registries are pulled under their own names too (docker.io, registry.k8s.io).
    hosts.push(...Object.keys(config.mirrors).map(canonicalMirrorHost))
    dockerHubMirrorPort = config.listener.dockerHubMirrorPort
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`ecr-auth-proxy: ${err.message}\n`)
    return 2
  }
  const { runClientConfig } = await import('./client-config/command.js')
  return await runClientConfig(rest, hosts, process, { dockerHubMirrorPort })
}

main().then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`ecr-auth-proxy: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
