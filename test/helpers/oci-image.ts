import { sha256Digest } from './digest.js'

export const MEDIA_TYPE = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const

export interface Descriptor { mediaType: string, digest: string, size: number, artifactType?: string, annotations?: Record<string, string> }

export function descriptor (mediaType: string, data: Buffer): Descriptor {
  return { mediaType, digest: sha256Digest(data), size: data.length }
}

export interface ImageManifestOptions {
  mediaType?: string
  artifactType?: string
  subject?: Descriptor
  annotations?: Record<string, string>
}

/** An image (or artifact) manifest's bytes; its digest is sha256Digest of the result. */
export function imageManifest (config: Descriptor, layers: Descriptor[], opts: ImageManifestOptions = {}): Buffer {
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: opts.mediaType ?? MEDIA_TYPE.ociManifest,
    ...(opts.artifactType === undefined ? {} : { artifactType: opts.artifactType }),
    config,
    layers,
    ...(opts.subject === undefined ? {} : { subject: opts.subject }),
    ...(opts.annotations === undefined ? {} : { annotations: opts.annotations }),
  }))
}

export function imageIndex (manifests: Descriptor[], mediaType: string = MEDIA_TYPE.ociIndex): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests }))
}
