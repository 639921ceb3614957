// The ECR API stand-in for benchmarks: GetAuthorizationToken on 127.0.0.1, always answering with
// the same long-lived token, so that the registry's htpasswd, the nginx configs and the proxy
// (which asks the API itself) all agree. Writes {url, password, authorizationToken, expiresAt}
// to --out once listening; runs until SIGTERM/SIGINT.
import { rename, writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { startEcrApi } from '../test/helpers/ecr-api.js'
import { TokenAuthority } from '../test/helpers/token-authority.js'
import type { IssuedToken } from '../test/helpers/token-authority.js'

const WEEK_MS = 7 * 24 * 60 * 60 * 1000

class FixedTokenAuthority extends TokenAuthority {
  #fixed: IssuedToken | undefined

  override issue (): IssuedToken {
    this.#fixed ??= super.issue()
    return this.#fixed
  }
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: { port: { type: 'string' }, out: { type: 'string' }, 'proxy-endpoint': { type: 'string' } }
  })
  if (values.out === undefined || values['proxy-endpoint'] === undefined) {
    throw new Error('usage: ecr-standin.ts --out FILE --proxy-endpoint URL [--port N]')
  }
  const authority = new FixedTokenAuthority({ lifetimeMs: WEEK_MS })
  const token = authority.issue()
  const api = await startEcrApi({
    authority,
    proxyEndpoint: values['proxy-endpoint'],
    host: '127.0.0.1',
    port: values.port === undefined ? 0 : Number(values.port)
  })
  const tmp = `${values.out}.tmp`
  await writeFile(tmp, JSON.stringify({ url: api.url, password: token.password, authorizationToken: token.authorizationToken, expiresAt: token.expiresAt }) + '\n')
  await rename(tmp, values.out)
  console.log(`ECR API stand-in on ${api.url}`)
  let closing = false
  const stop = (): void => {
    if (closing) return
    closing = true
    console.log(`stopping; GetAuthorizationToken calls: ${api.calls.length}`)
    const force = setTimeout(() => process.exit(0), 3000)
    force.unref()
    api.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
