/**
 * podman (as root, vfs storage, all state in a temporary directory) pulls and pushes through
 * the proxy with an empty auth file. --tls-verify=false: podman wants TLS even on 127.0.0.1.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Podman, Skopeo } from './harness/clients.js'
import { FORMATS, MEDIA, seedDirect } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { startStack } from './harness/stack.js'
import { tempDir } from './harness/util.js'

const stack = await startStack(t)
const dir = tempDir(t, 'podman')
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const podman = new Podman(join(dir, 'podman'))
const proxy = stack.proxy.host
t.comment(`podman ${await podman.version()}`)

t.test('podman pulls every format through the proxy', async (t) => {
  const stored = await seedDirect(stack, skopeo, images, 'e2e/seeded')
  for (const format of FORMATS) {
    const image = `${proxy}/e2e/seeded:${format.tag}`
    await podman.run(['pull', '--tls-verify=false', image])
    // Every format carries the same image (one config), so podman keeps one image with many digests.
    const { stdout } = await podman.run(['image', 'inspect', '--format', '{{json .RepoDigests}}', image])
    const expected = `${proxy}/e2e/seeded@${stored.get(format.tag)?.digest ?? ''}`
    t.ok((JSON.parse(stdout) as string[]).includes(expected), `${format.title}: podman records ${expected}`)
  }
})

t.test('podman pushes through the proxy (OCI and Docker formats, and a manifest list)', async (t) => {
  // From the OCI layout into podman's storage, offline.
  const archive = join(dir, 'base-oci-archive.tar')
  await skopeo.run(['copy', images.ref('base'), `oci-archive:${archive}:e2e/local:base`])
  const loaded = await podman.run(['load', '--input', archive])
  t.comment(loaded.stdout.trim())
  await podman.run(['tag', 'e2e/local:base', `${proxy}/e2e/podman:local`])
  for (const [tag, podmanFormat, mediaType] of [['oci', 'oci', MEDIA.ociManifest], ['v2s2', 'v2s2', MEDIA.dockerManifest]] as const) {
    const digestFile = join(dir, `podman-${tag}.digest`)
    await podman.run(['push', '--tls-verify=false', '--format', podmanFormat, '--digestfile', digestFile, `${proxy}/e2e/podman:local`, `docker://${proxy}/e2e/podman:${tag}`])
    const stored = await stack.direct.manifest('e2e/podman', tag)
    t.equal(stored.mediaType, mediaType, `${tag}: stored as ${mediaType}`)
    t.equal(readFileSync(digestFile, 'utf8').trim(), stored.digest, `${tag}: podman reports the digest the registry holds`)
  }

  // A manifest list made by podman from two images in the registry, pushed through the proxy.
  const list = 'e2e-podman-list'
  await podman.run(['manifest', 'create', list])
  await podman.run(['manifest', 'add', '--tls-verify=false', list, `docker://${proxy}/e2e/podman:oci`])
  const digestFile = join(dir, 'podman-list.digest')
  await podman.run(['manifest', 'push', '--tls-verify=false', '--all', '--digestfile', digestFile, list, `docker://${proxy}/e2e/podman:list`])
  const stored = await stack.direct.manifest('e2e/podman', 'list')
  t.ok(stored.mediaType === MEDIA.dockerList || stored.mediaType === MEDIA.ociIndex, `list stored as ${stored.mediaType}`)
  t.equal(readFileSync(digestFile, 'utf8').trim(), stored.digest, 'list: podman reports the digest the registry holds')
  t.equal(stored.json.manifests?.[0]?.digest, (await stack.direct.manifest('e2e/podman', 'oci')).digest, 'the list points at the pushed image')
})
