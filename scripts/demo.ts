/**
 * `npm run demo`: ecr-auth-proxy at work without an AWS account. A real registry that only
 * accepts the current ECR-style token, a local stand-in for the ECR API that issues those
 * tokens, and the proxy in between; skopeo pushes and pulls an image through the proxy without
 * any credentials. Everything runs on 127.0.0.1 and is removed at the end.
 *
 *   DEMO_KEEP=1 npm run demo   leaves it running until Ctrl-C, to try docker or podman by hand.
 */
import { readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { sha256Digest } from '../test/helpers/digest.js'
import { Skopeo } from '../test/e2e/harness/clients.js'
import { buildTestImages } from '../test/e2e/harness/images.js'
import { shellLine } from '../test/e2e/harness/process.js'
import { PROXY_CLI, REPO_ROOT } from '../test/e2e/harness/proxy.js'
import type { Scope } from '../test/e2e/harness/scope.js'
import { startStack } from '../test/e2e/harness/stack.js'
import { tempDir } from '../test/e2e/harness/util.js'

const tty = process.stdout.isTTY
const bold = (text: string): string => tty ? `\u001b[1m${text}\u001b[0m` : text
const dim = (text: string): string => tty ? `\u001b[2m${text}\u001b[0m` : text
let step = 0
const say = (text = ''): void => { process.stdout.write(`${text}\n`) }
const heading = (text: string): void => say(`\n${bold(`${++step}. ${text}`)}`)
const command = (cmd: string, args: string[]): void => say(dim(`   $ ${shellLine(cmd, args)}`))

/** Cleanup registered by the harness, run last-in first-out at the end (or on Ctrl-C). */
class DemoScope implements Scope {
  readonly #cleanups: Array<() => unknown> = []
  #failed = false
  name = 'demo'
  teardown (fn: () => unknown): void { this.#cleanups.push(fn) }
  passing (): boolean { return !this.#failed }
  fail (): void { this.#failed = true }
  async close (): Promise<void> {
    for (let fn = this.#cleanups.pop(); fn !== undefined; fn = this.#cleanups.pop()) {
      try {
        await fn()
      } catch (error) {
        process.stderr.write(`cleanup: ${String(error)}\n`)
      }
    }
  }
}

async function demo (scope: DemoScope): Promise<void> {
  say(bold('ecr-auth-proxy demo — no AWS account needed'))
  say('Clients speak the plain registry API to the proxy; the proxy adds the Amazon ECR token.')

  heading('Start the stand-ins for AWS: a registry and the ECR API')
  const stack = await startStack(scope)
  const { registry, ecrApi, proxy } = stack
  say(`   registry  ${registry.url}  (CNCF distribution ${dim('docker-registry')}; accepts user AWS + a live token only)`)
  say(`   ECR API   ${ecrApi.url}  (answers GetAuthorizationToken; every token it issues is written`)
  say('             into the registry\'s htpasswd, and removed when it expires)')
  const anonymous = await fetch(`${registry.url}/v2/`)
  say(`   Without a token the registry refuses: GET ${registry.url}/v2/ -> ${anonymous.status} ${anonymous.statusText}`)

  heading('Start the proxy the way you would start it against AWS')
  say(dim(`   $ AWS_ENDPOINT_URL_ECR=${ecrApi.url} AWS_REGION=us-east-2 AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… \\`))
  say(dim(`       node ${relative(REPO_ROOT, PROXY_CLI)} --port ${proxy.url.split(':').pop() ?? ''} --upstream ${registry.url}`))
  say(`   (against AWS: ${bold('ecr-auth-proxy --region us-east-2')} with your usual AWS credentials; no --upstream)`)
  const ready = await (await fetch(`${proxy.url}/readyz`)).text()
  say(`   GET ${proxy.url}/readyz -> ${ready}`)
  const token = stack.tokens.current()
  say(`   The proxy called GetAuthorizationToken ${stack.authority.issued.length} time(s) through the real AWS SDK;` +
    (token === undefined ? '' : ` its token (${token.authorizationToken.length} bytes) is valid until ${new Date(token.expiresAt).toISOString()}.`))

  heading('Build a small image offline (umoci: three layers)')
  const dir = tempDir(scope, 'demo')
  const images = await buildTestImages(dir)
  say(`   ${images.ref('base')} = ${images.digest('base')}`)

  const skopeo = new Skopeo(join(dir, 'skopeo'))
  const image = `${proxy.host}/demo/hello:1`
  heading(`Push it through the proxy with skopeo (${await skopeo.version()}) — no credentials anywhere`)
  const pushArgs = ['copy', '--dest-tls-verify=false', images.ref('base'), `docker://${image}`]
  command('skopeo', pushArgs)
  await skopeo.run(pushArgs)
  const stored = await stack.direct.manifest('demo/hello', '1')
  say(`   The registry now holds demo/hello:1 = ${stored.digest}`)
  say(`   ${stored.digest === images.digest('base') ? 'Same bytes as the image built locally.' : 'Digest differs from the local image!'}`)

  heading('Inspect and pull it back through the proxy')
  const inspectArgs = ['inspect', '--tls-verify=false', `docker://${image}`]
  command('skopeo', inspectArgs)
  const inspected = JSON.parse((await skopeo.run(inspectArgs)).stdout) as { Digest: string, Layers: string[], Architecture: string }
  say(`   Digest ${inspected.Digest}, ${inspected.Layers.length} layers, ${inspected.Architecture}`)
  const out = join(dir, 'pulled')
  const pullArgs = ['copy', '--src-tls-verify=false', `docker://${image}`, `dir:${out}`]
  command('skopeo', pullArgs)
  await skopeo.run(pullArgs)
  const pulled = sha256Digest(readFileSync(join(out, 'manifest.json')))
  say(`   Pulled manifest ${pulled} — ${pulled === stored.digest ? 'identical to what the registry holds.' : 'NOT what the registry holds!'}`)
  if (pulled !== stored.digest || inspected.Digest !== stored.digest) throw new Error('digests differ')

  heading('What the proxy logged (one JSON line per request)')
  const entries = proxy.service.logTail(10_000).split('\n')
    .filter((line) => line.includes('"msg":"request"') && line.includes('"/v2/'))
    .map((line) => JSON.parse(line) as { method: string, path: string, kind: string | null, status: number })
  const tally = new Map<string, number>()
  for (const entry of entries) {
    const key = `${entry.method} ${entry.kind ?? '?'} -> ${entry.status}`
    tally.set(key, (tally.get(key) ?? 0) + 1)
  }
  for (const [key, count] of tally) say(`   ${String(count).padStart(3)} × ${key}`)
  const sample = entries.find((entry) => entry.method === 'PUT' && entry.kind === 'manifest')
  if (sample !== undefined) say(dim(`   e.g. ${JSON.stringify(sample)}`))
  say('   skopeo never held a credential: the token went only from the proxy to the registry.')

  if (process.env.DEMO_KEEP === '1') {
    heading('Your turn (running until Ctrl-C)')
    say(`   docker pull ${image}      ${dim('(dockerd treats 127.0.0.0/8 as a plain-HTTP registry)')}`)
    say(`   podman pull --tls-verify=false ${image}`)
    say(`   curl ${proxy.url}/v2/demo/hello/tags/list`)
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()))
  } else {
    say(dim('\n   To try docker, podman or curl against it yourself: DEMO_KEEP=1 npm run demo'))
  }
}

const scope = new DemoScope()
const interrupted = (): void => {
  say('\ninterrupted: cleaning up')
  scope.close().finally(() => process.exit(130))
}
if (process.env.DEMO_KEEP !== '1') process.once('SIGINT', interrupted)
process.once('SIGTERM', interrupted)
try {
  await demo(scope)
  heading('Clean up: stop the proxy, the registry and the ECR API stand-in, remove temporary files')
} catch (error) {
  scope.fail()
  process.exitCode = 1
  process.stderr.write(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}\n`)
} finally {
  await scope.close()
}
say(process.exitCode === 1 ? 'Done, with errors (see above).' : 'Done.')
