/**
 * The container image, built and run for real: scripts/test-image.sh against the end-to-end
 * suite's upstream (the real registry with htpasswd and the stand-in ECR API whose tokens it
 * enforces). Needs a Docker engine (or dockerd to start one) and ~3 minutes, so it runs only with
 * ECR_PROXY_IMAGE_TEST=1:
 *
 *   ECR_PROXY_IMAGE_TEST=1 npx tap --disable-coverage test/deploy/image.test.ts
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const TIMEOUT_MS = 20 * 60_000

interface Result { code: number | null, output: string }

async function testImage (env: NodeJS.ProcessEnv): Promise<Result> {
  const child = spawn('bash', ['scripts/test-image.sh'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const timer = setTimeout(() => child.kill('SIGTERM'), TIMEOUT_MS)
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', resolve)
    })
    return { code, output }
  } finally {
    clearTimeout(timer)
  }
}

if (process.env.ECR_PROXY_IMAGE_TEST !== '1') {
  t.plan(0, 'set ECR_PROXY_IMAGE_TEST=1 to build and run the container image (Docker engine, ~3 min)')
} else {
  const { startUpstream } = await import('../e2e/harness/stack.js')
  t.test('container image: built offline, hardened, refuses open listening, proxies end to end', async (t) => {
    const upstream = await startUpstream(t)
    const result = await testImage({
      ...process.env,
      ECR_API_PORT: new URL(upstream.ecrApi.url).port,
      REGISTRY_PORT: new URL(upstream.registry.url).port
    })
    const lines = result.output.split('\n')
    for (const line of lines.filter((l) => /^(?:not )?ok \d+ - /.test(l))) {
      t.ok(line.startsWith('ok'), line.replace(/^(?:not )?ok \d+ - /, ''))
    }
    t.match(result.output, /^\d+ passed, 0 failed$/m, 'summary line')
    t.equal(result.code, 0, 'scripts/test-image.sh exit code', { output: result.output.slice(-4000) })
    t.ok(upstream.ecrApi.calls.length >= 1, 'the containerised proxy fetched its token from the stand-in ECR API')
  })
}
