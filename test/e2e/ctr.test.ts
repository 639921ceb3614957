/**
 * containerd's own client (ctr, `--plain-http`, no --user) pulls and pushes through the proxy.
 * containerd drops its authorizer when a Location points at another host and fails a push
 * without Docker-Content-Digest, so this is where rewritten headers show first.
 */
import { join } from 'node:path'
import t from 'tap'
import { Containerd, Skopeo } from './harness/clients.js'
import { FORMATS, seedDirect } from './harness/fixtures.js'
import { buildTestImages } from './harness/images.js'
import { startStack } from './harness/stack.js'
import { tempDir } from './harness/util.js'

const stack = await startStack(t)
const dir = tempDir(t, 'ctr')
const images = await buildTestImages(dir)
const skopeo = new Skopeo(join(dir, 'skopeo'))
const containerd = await Containerd.start(t, join(dir, 'containerd'))
const proxy = stack.proxy.host
const versions = await containerd.versions()
t.comment(`ctr ${versions.ctr}, containerd ${versions.containerd}`)

t.test('ctr pulls every format through the proxy', async (t) => {
  const stored = await seedDirect(stack, skopeo, images, 'e2e/seeded')
  for (const format of FORMATS) {
    const image = `${proxy}/e2e/seeded:${format.tag}`
    const all = format.image === 'multi' ? ['--all-platforms'] : []
    await containerd.ctr(['images', 'pull', '--plain-http', ...all, image])
    t.equal(await containerd.imageDigest(image), stored.get(format.tag)?.digest, `${format.title}: ctr holds the registry's digest`)
  }
})

t.test('ctr pushes an OCI image and an index through the proxy', async (t) => {
  for (const [name, tag] of [['base', 'oci'], ['multi', 'index']] as const) {
    // From the OCI layout into containerd's content store, offline.
    const archive = join(dir, `${name}.tar`)
    const local = `e2e/local:${name}`
    await skopeo.run(['copy', ...(name === 'multi' ? ['--all'] : []), images.ref(name), `oci-archive:${archive}:${local}`])
    await containerd.ctr(['images', 'import', ...(name === 'multi' ? ['--all-platforms'] : []), archive])
    const remote = `${proxy}/e2e/ctr:${tag}`
    await containerd.ctr(['images', 'push', '--plain-http', remote, local])
    const stored = await stack.direct.manifest('e2e/ctr', tag)
    t.equal(stored.digest, images.digest(name), `${tag}: the registry holds the very bytes ctr pushed`)
    t.equal(await containerd.imageDigest(local), stored.digest, `${tag}: same digest as ctr's local image`)
    for (const layer of stored.json.layers ?? []) {
      t.equal(await stack.direct.blobStatus('e2e/ctr', layer.digest), 200, `${tag}: layer ${layer.digest.slice(0, 19)} is in the registry`)
    }
    for (const member of stored.json.manifests ?? []) {
      t.equal((await stack.direct.manifest('e2e/ctr', member.digest)).digest, member.digest, `${tag}: ${member.platform?.architecture ?? '?'} manifest is in the registry`)
    }
  }
})
