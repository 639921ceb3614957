/**
 * A real Docker engine (dockerd over our own containerd) pulls and pushes through the proxy
 * with no credentials configured. dockerd treats 127.0.0.0/8 as an insecure (plain HTTP)
 * registry by default, so nothing else is set up on the client side.
 */
import { join } from 'node:path'
import t from 'tap'
import { Containerd, DockerEngine, Skopeo } from './harness/clients.js'
import { digestAfter, FORMATS, seedDirect } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { startStack } from './harness/stack.js'
import { tempDir } from './harness/util.js'

const stack = await startStack(t)
const dir = tempDir(t, 'docker')
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const containerd = await Containerd.start(t, join(dir, 'containerd'))
const engine = await DockerEngine.start(t, join(dir, 'docker'), containerd)
const proxy = stack.proxy.host
const versions = await engine.versions()
t.comment(`docker client ${versions.client}, dockerd ${versions.server}`)

async function repoDigests (image: string): Promise<string[]> {
  const { stdout } = await engine.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', image])
  return JSON.parse(stdout) as string[]
}

t.test('docker pulls every format through the proxy', async (t) => {
  const stored = await seedDirect(stack, skopeo, images, 'e2e/seeded')
  for (const format of FORMATS) {
    const manifest = stored.get(format.tag)
    const digest = manifest?.digest ?? ''
    const image = `${proxy}/e2e/seeded:${format.tag}`
    const pulled = await engine.docker(['pull', image])
    t.equal(digestAfter('Digest:', pulled.stdout), digest, `${format.title}: docker pull reports the registry's digest`)
    t.ok((await repoDigests(image)).includes(`${proxy}/e2e/seeded@${digest}`), `${format.title}: recorded as ${proxy}/e2e/seeded@${digest}`)
  }
  const byDigest = `${proxy}/e2e/seeded@${stored.get('oci')?.digest ?? ''}`
  await engine.docker(['pull', byDigest])
  t.pass(`pull by digest: ${byDigest}`)
})

t.test('docker pushes through the proxy, mounts across repositories, pulls back', async (t) => {
  // docker load needs a docker-archive; skopeo makes one from the OCI layout, offline.
  const archive = join(dir, 'base-docker-archive.tar')
  await skopeo.run(['copy', images.ref('base'), `docker-archive:${archive}:e2e/local:base`])
  await engine.docker(['load', '--input', archive])
  const first = `${proxy}/e2e/docker:pushed`
  await engine.docker(['tag', 'e2e/local:base', first])
  const pushed = await engine.docker(['push', first])
  const digest = digestAfter('digest:', pushed.stdout)
  const stored = await stack.direct.manifest('e2e/docker', 'pushed')
  t.equal(digest, stored.digest, 'docker push reports the digest the registry holds')
  t.equal(stored.json.layers?.length, 3, 'all three layers pushed')
  for (const layer of stored.json.layers ?? []) {
    t.equal(await stack.direct.blobStatus('e2e/docker', layer.digest), 200, `layer ${layer.digest.slice(0, 19)} is in the registry`)
  }

  // Same layers to another repository: docker asks for a cross-repository mount.
  const second = `${proxy}/e2e/docker-mounted:pushed`
  await engine.docker(['tag', 'e2e/local:base', second])
  const mounted = await engine.docker(['push', second])
  t.match(mounted.stdout, /Mounted from e2e\/docker/, 'layers mounted from e2e/docker, not uploaded again')
  t.equal(digestAfter('digest:', mounted.stdout), (await stack.direct.manifest('e2e/docker-mounted', 'pushed')).digest, 'and the digest matches')

  await engine.docker(['rmi', first, second, 'e2e/local:base'])
  const pulled = await engine.docker(['pull', first])
  t.equal(digestAfter('Digest:', pulled.stdout), stored.digest, 'pulled back with the same digest')
})
