#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { buildApp } from './app.js'
import { ConfigError, helpText, loadConfig, parseCommandLine } from './config.js'
import { createLogger } from './logger.js'
import { exposureRefusal } from './server/exposure.js'
import { closeOnSignals } from './server/shutdown.js'

// A write to a closed pipe or a hung-up terminal fails (EPIPE, EIO) as an 'error' event on these
// streams (Node's own warnings go to stderr): ignored, it is no reason to stop serving. The logger
// writes to the descriptors itself and falls back from stdout to stderr to nothing.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})

async function main (): Promise<number> {
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
    const refusal = await exposureRefusal(config)
    if (refusal !== undefined) throw new ConfigError(refusal)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`ecr-auth-proxy: ${err.message}\n`)
    return 2
  }

  const logger = createLogger(config.logLevel)
  let built
  try {
    built = await buildApp(config, { logger })
  } catch (err) {
    logger.fatal(`cannot start: ${(err as Error).message}`)
    return 1
  }
  const { app } = built
  try {
    await app.listen({ host: config.host, port: config.port })
  } catch (err) {
    logger.fatal(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`)
    await app.close()
    return 1
  }
  closeOnSignals({ graceMs: config.shutdownGraceSeconds * 1000, logger, close: async () => { await app.close() } })
  return -1
}

main().then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`ecr-auth-proxy: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
