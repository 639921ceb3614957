/**
 * What a proxy loads at start is memory it holds for good (docs/performance.md, finding 2): the
 * packages only some configurations use are loaded when those are configured — still at start,
 * so that a missing one stops the start as before. Run in a fresh process each, since a module
 * once loaded stays loaded, and on the build (npm run build), without tap's loader, which loads
 * some of them itself.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const run = promisify(execFile)
const dir = mkdtempSync(join(tmpdir(), 'ecr-proxy-lazy-'))
const OPTIONAL = ['undici', 'yaml', 'pino-pretty', '@aws-sdk/client-ecr-public', '@fastify/ajv-compiler', '@fastify/fast-json-stringify-compiler']

/** The optional packages loaded once buildApp(config of `argv`) is ready, in a child process. */
async function loadedAfterStart (argv: string[]): Promise<string[]> {
  const script = `
    import { createRequire } from 'node:module'
    const { buildApp } = await import(${JSON.stringify(new URL('../dist/src/app.js', import.meta.url).href)})
    const { loadConfig, parseCommandLine } = await import(${JSON.stringify(new URL('../dist/src/config/index.js', import.meta.url).href)})
    const { createLogger } = await import(${JSON.stringify(new URL('../dist/src/logger.js', import.meta.url).href)})
    const config = loadConfig(parseCommandLine(${JSON.stringify(argv)}), {})
    const { app } = await buildApp(config, { logger: createLogger('silent') })
    await app.ready()
    await app.close()
    const require = createRequire(import.meta.url)
    const loaded = ${JSON.stringify(OPTIONAL)}.filter((name) => {
      try { return require.cache[require.resolve(name, { paths: [${JSON.stringify(new URL('../node_modules/fastify/', import.meta.url).pathname)}] })] !== undefined } catch { return false }
    })
    process.stdout.write(JSON.stringify(loaded))
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir, env: { ...process.env, AWS_REGION: 'us-east-2', AWS_ENDPOINT_URL: 'http://127.0.0.1:9', AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret', AWS_EC2_METADATA_DISABLED: 'true', AWS_MAX_ATTEMPTS: '1' } })
  return JSON.parse(stdout) as string[]
}

t.test('pass mode, no config file, no ECR Public, no schemas: none of the optional packages but undici', async (t) => {
  // undici carries every bodiless request (manifests, tags, HEADs): ~20 % less CPU per request
  // than node:http's client for its 7 MB (docs/performance.md, finding 8).
  t.same(await loadedAfterStart(['--region', 'us-east-2', '--upstream', 'http://127.0.0.1:9']), ['undici'])
})

t.test('each optional package is loaded at start where its feature is configured', async (t) => {
  const file = join(dir, 'config.yaml')
  writeFileSync(file, 'registries:\n  - registry: public.ecr.aws\n    alias: pub\n')
  t.same(await loadedAfterStart(['--config', file]), ['undici', 'yaml', '@aws-sdk/client-ecr-public'], 'a config file: yaml; ECR Public with credentials: its SDK')
  t.same(await loadedAfterStart(['--region', 'us-east-2', '--upstream', 'http://127.0.0.1:9', '--redirects', 'follow']), ['undici'], 'follow mode: undici for the redirect targets too')
})
