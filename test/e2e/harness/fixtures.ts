import type { Skopeo } from './clients.js'
import type { TestImages } from './images.js'
import type { ManifestView } from './registry-http.js'
import type { Upstream } from './stack.js'

export const MEDIA = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
} as const

export interface Format {
  /** Also the tag the format is stored under. */
  tag: 'v2s2' | 'oci' | 'index' | 'list'
  title: string
  image: 'base' | 'multi'
  /** skopeo copy flags producing it from the OCI layout. */
  copyArgs: string[]
  mediaType: string
  /** True when the registry keeps the layout's bytes (no conversion), so the digest is known. */
  preserved: boolean
}

/** The four manifest shapes every client is tried with. */
export const FORMATS: readonly Format[] = [
  { tag: 'v2s2', title: 'Docker image manifest v2 schema 2', image: 'base', copyArgs: ['--format', 'v2s2'], mediaType: MEDIA.dockerManifest, preserved: false },
  { tag: 'oci', title: 'OCI image manifest', image: 'base', copyArgs: ['--format', 'oci'], mediaType: MEDIA.ociManifest, preserved: true },
  { tag: 'index', title: 'OCI image index (2 platforms)', image: 'multi', copyArgs: ['--all'], mediaType: MEDIA.ociIndex, preserved: true },
  { tag: 'list', title: 'Docker manifest list (2 platforms)', image: 'multi', copyArgs: ['--all', '--format', 'v2s2'], mediaType: MEDIA.dockerList, preserved: false },
]

/**
 * Puts every format into `repository` straight into the registry (as the verifier, not through
 * the proxy), so a pull test depends on nothing but the client under test and the proxy.
 */
export async function seedDirect (upstream: Upstream, skopeo: Skopeo, images: TestImages, repository: string): Promise<Map<Format['tag'], ManifestView>> {
  const { registry } = upstream
  const creds = `${registry.verifier.user}:${registry.verifier.password}`
  const stored = new Map<Format['tag'], ManifestView>()
  for (const format of FORMATS) {
    await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', creds, ...format.copyArgs, images.ref(format.image), `docker://${registry.host}/${repository}:${format.tag}`])
    const manifest = await upstream.direct.manifest(repository, format.tag)
    if (manifest.mediaType !== format.mediaType) throw new Error(`seeding ${format.tag}: the registry holds a ${manifest.mediaType}`)
    stored.set(format.tag, manifest)
  }
  return stored
}

/** The `sha256:…` after `label` in a client's output (e.g. "Digest:" or "digest:"). */
export function digestAfter (label: string, output: string): string | undefined {
  const match = new RegExp(`${label}\\s*(sha256:[a-f0-9]{64})`).exec(output)
  return match?.[1]
}
