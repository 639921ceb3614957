/**
 * The stand-ins themselves, without the proxy: the real registry enforces the tokens the
 * stand-in ECR API issues (rotation, revocation, expiry), and skopeo can push the umoci-built
 * images to it directly. When this file fails, the environment is at fault, not the proxy.
 */
import t from 'tap'
import { Skopeo } from './harness/clients.js'
import { buildTestImages } from './harness/images.js'
import { RegistryHttp } from './harness/registry-http.js'
import { startUpstream } from './harness/stack.js'
import { sleep, tempDir } from './harness/util.js'
import type { IssuedToken } from '../helpers/token-authority.js'

const upstream = await startUpstream(t, { lifetimeMs: 4_000 })
const { registry, authority, tokens } = upstream

async function pingAs (token: IssuedToken): Promise<number> {
  const res = await new RegistryHttp(registry.url, { user: 'AWS', password: token.password }).request('GET', '/v2/')
  return res.status
}

t.test('the registry accepts the newest live token and nothing expired or revoked', async (t) => {
  const first = authority.issue()
  t.equal(await pingAs(first), 200, 'a fresh token is accepted')
  t.equal((await upstream.direct.request('GET', '/v2/')).status, 200, 'the verifier is accepted')

  const second = authority.issue()
  t.equal(await pingAs(second), 200, 'the next token is accepted')
  // distribution keeps one hash per user: the newest entry wins (ECR would accept both).
  t.equal(await pingAs(first), 401, 'the older one is not, while a newer one lives')

  tokens.revoke(second)
  t.equal(await pingAs(second), 401, 'a revoked token is refused at once')
  t.equal(await pingAs(first), 200, 'the older one is valid again')
  t.equal(tokens.current(), first)

  await sleep(Math.max(0, first.expiresAt - Date.now()) + 300)
  t.equal(await pingAs(first), 401, 'an expired token is refused')
  t.equal(tokens.current(), undefined)
  t.equal((await upstream.direct.request('GET', '/v2/')).status, 200, 'the verifier still is')
  t.same(tokens.events.map((event) => event.kind), ['issued', 'issued', 'revoked', 'expired'])
})

t.test('skopeo pushes the umoci images to the registry directly', async (t) => {
  const dir = tempDir(t, 'peers')
  const images = await buildTestImages(dir)
  const skopeo = new Skopeo(dir)
  const creds = `${registry.verifier.user}:${registry.verifier.password}`
  await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', creds, images.ref('base'), `docker://${registry.host}/peers/base:oci`])
  await skopeo.run(['copy', '--all', '--dest-tls-verify=false', '--dest-creds', creds, images.ref('multi'), `docker://${registry.host}/peers/base:multi`])
  await skopeo.run(['copy', '--format', 'v2s2', '--dest-tls-verify=false', '--dest-creds', creds, images.ref('base'), `docker://${registry.host}/peers/base:v2s2`])

  t.equal((await upstream.direct.manifest('peers/base', 'oci')).digest, images.digest('base'), 'OCI manifest kept byte for byte')
  const index = await upstream.direct.manifest('peers/base', 'multi')
  t.equal(index.digest, images.digest('multi'), 'index kept byte for byte')
  t.equal(index.json.manifests?.length, 2)
  const v2s2 = await upstream.direct.manifest('peers/base', 'v2s2')
  t.equal(v2s2.mediaType, 'application/vnd.docker.distribution.manifest.v2+json')
  t.equal(v2s2.json.layers?.length, 3, 'three layers')
  t.same(await upstream.direct.tags('peers/base'), ['multi', 'oci', 'v2s2'])
})
