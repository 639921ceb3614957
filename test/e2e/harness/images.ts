import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { check } from './process.js'

/** The OCI architecture name of this machine (what every client here picks from an index). */
export function nativeArchitecture (): string {
  return process.arch === 'x64' ? 'amd64' : process.arch
}

interface Descriptor { mediaType: string, digest: string, size: number, annotations?: Record<string, string>, platform?: { architecture: string, os: string } }

export interface TestImages {
  /** The OCI image layout directory. */
  layout: string
  /** `oci:<layout>:<name>` for skopeo and podman. */
  ref (name: 'base' | 'other' | 'multi'): string
  /** Manifest (or index) digest of a tag in the layout. */
  digest (name: 'base' | 'other' | 'multi'): string
  /** Layer digests of `base`, bottom first. */
  baseLayers: string[]
}

const REF_NAME = 'org.opencontainers.image.ref.name'

function readIndex (layout: string): { schemaVersion: number, manifests: Descriptor[] } {
  return JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { schemaVersion: number, manifests: Descriptor[] }
}

function descriptorOf (layout: string, name: string): Descriptor {
  const found = readIndex(layout).manifests.find((descriptor) => descriptor.annotations?.[REF_NAME] === name)
  if (found === undefined) throw new Error(`no ${name} in ${layout}`)
  return found
}

async function umoci (args: string[]): Promise<void> {
  await check('umoci', 'umoci', args, { timeoutMs: 60_000 })
}

/** Unpacks `image`, lets `change` edit its rootfs, and repacks it as one new layer. */
async function addLayer (dir: string, image: string, change: (rootfs: string) => void): Promise<void> {
  const bundle = join(dir, 'bundle')
  // Without root, umoci unpacks and repacks in rootless mode (no ownership changes).
  const rootless = process.getuid?.() === 0 ? [] : ['--rootless']
  await umoci(['unpack', ...rootless, '--image', image, bundle])
  change(join(bundle, 'rootfs'))
  await umoci(['repack', '--image', image, bundle])
  rmSync(bundle, { recursive: true, force: true })
}

/**
 * Builds, offline with umoci, a three-layer image (text files and a symlink; 2 MiB of
 * incompressible bytes; more files plus a whiteout of a lower-layer file), a variant of it for
 * another architecture, and an OCI image index over both.
 */
export async function buildTestImages (dir: string): Promise<TestImages> {
  const layout = join(dir, 'oci')
  await umoci(['init', '--layout', layout])
  const base = `${layout}:base`
  await umoci(['new', '--image', base])
  await addLayer(dir, base, (rootfs) => {
    mkdirSync(join(rootfs, 'etc', 'e2e'), { recursive: true })
    writeFileSync(join(rootfs, 'etc', 'e2e', 'hello.txt'), 'hello through ecr-auth-proxy\n')
    writeFileSync(join(rootfs, 'etc', 'e2e', 'doomed.txt'), 'removed by the third layer\n')
    symlinkSync('e2e/hello.txt', join(rootfs, 'etc', 'hello'))
  })
  await addLayer(dir, base, (rootfs) => {
    mkdirSync(join(rootfs, 'data'), { recursive: true })
    writeFileSync(join(rootfs, 'data', 'random.bin'), randomBytes(2 * 1024 * 1024))
  })
  await addLayer(dir, base, (rootfs) => {
    mkdirSync(join(rootfs, 'data', 'more'), { recursive: true })
    for (let i = 0; i < 20; i++) writeFileSync(join(rootfs, 'data', 'more', `file-${i}.txt`), `file ${i}\n`.repeat(i + 1))
    unlinkSync(join(rootfs, 'etc', 'e2e', 'doomed.txt'))
  })
  await umoci(['config', '--image', base, '--config.cmd', '/bin/true', '--config.label', 'org.example.suite=ecr-auth-proxy-e2e'])

  // The same layers under another architecture's config.
  const otherArch = nativeArchitecture() === 'arm64' ? 'amd64' : 'arm64'
  await umoci(['config', '--image', base, '--tag', 'other', '--architecture', otherArch])

  const members = [
    { name: 'base', architecture: nativeArchitecture() },
    { name: 'other', architecture: otherArch },
  ].map(({ name, architecture }) => {
    const descriptor = descriptorOf(layout, name)
    return { mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size, platform: { architecture, os: 'linux' } }
  })
  const indexBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: members }))
  const hex = createHash('sha256').update(indexBytes).digest('hex')
  writeFileSync(join(layout, 'blobs', 'sha256', hex), indexBytes)
  const index = readIndex(layout)
  index.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${hex}`, size: indexBytes.length, annotations: { [REF_NAME]: 'multi' } })
  writeFileSync(join(layout, 'index.json'), JSON.stringify(index))

  const baseManifest = JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', descriptorOf(layout, 'base').digest.slice('sha256:'.length)), 'utf8')) as { layers: Descriptor[] }
  return {
    layout,
    ref: (name) => `oci:${layout}:${name}`,
    digest: (name) => descriptorOf(layout, name).digest,
    baseLayers: baseManifest.layers.map((layer) => layer.digest),
  }
}
