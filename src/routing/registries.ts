import type { MirrorConfig, RegistryConfig } from '../config/index.js'
import { ECR_PUBLIC_HOST } from '../credentials/ecr-public.js'
import { ecrCredentialKey, ecrPublicCredentialKey } from '../credentials/pool.js'
import { parseEcrHost, registryOrigin, toOrigin } from './endpoint.js'
import { canonicalMirrorHost, type Mirror } from './mirrors.js'
import { Registry } from './registry.js'

/**
 * The registries of the configuration. Each is named by its hostname (given, or built from
 * account and region); its token is its region's, for its identity. An entry with no hostname and
 * no account is the caller's own registry, named later by GetAuthorizationToken.
 *
 * @param resolveRegion the SDK's default region, for an account given without a region.
 */
export async function configuredRegistries (entries: readonly RegistryConfig[], resolveRegion: () => Promise<string | undefined>, options: { mirrors?: boolean } = {}): Promise<Registry[]> {
  // A lone registry with no mirrors configured is the default without saying so; with mirrors,
  // bare names may be Docker Hub names (Docker's registry-mirrors), so it must say default: true.
  const lone = entries.length === 1 && options.mirrors !== true
  const registries: Registry[] = []
  for (const entry of entries) {
    const identity = { profile: entry.profile, roleArn: entry.roleArn, externalId: entry.externalId, roleSessionName: entry.roleSessionName }
    if (entry.registry === ECR_PUBLIC_HOST) {
      registries.push(new Registry({
        kind: 'ecr-public',
        host: ECR_PUBLIC_HOST,
        origin: entry.upstream !== undefined ? toOrigin(entry.upstream) : `https://${ECR_PUBLIC_HOST}`,
        credential: ecrPublicCredentialKey(entry.anonymous === true, identity),
        alias: entry.alias,
        isDefault: entry.default ?? lone
      }))
      continue
    }
    let host: string | undefined
    let region = entry.region
    if (entry.registry !== undefined) {
      host = entry.registry.toLowerCase()
      region = parseEcrHost(host)?.region ?? region
    } else if (entry.registryId !== undefined) {
      region ??= await resolveRegion().catch(() => undefined)
      if (region !== undefined) {
        host = new URL(registryOrigin({ registryId: entry.registryId, region, fips: entry.fips, dualStack: entry.dualStack })).hostname
      } else if (entry.upstream === undefined) {
        throw new Error('needs a region: set --region, ECR_PROXY_REGION or AWS_REGION')
      }
    }
    registries.push(new Registry({
      host,
      origin: entry.upstream !== undefined ? toOrigin(entry.upstream) : host === undefined ? undefined : `https://${host}`,
      credential: ecrCredentialKey(region, identity),
      region,
      alias: entry.alias,
      // A lone registry is the default without saying so.
      isDefault: entry.default ?? lone
    }))
  }
  return registries
}

/** A registry served because `anyEcrRegistry` is on: its region's token, the default identity. */
export function anyEcrRegistry (host: string): Registry {
  const parsed = parseEcrHost(host)
  if (parsed === undefined) throw new Error(`not an ECR registry hostname: ${host}`)
  return new Registry({ host, origin: `https://${host}`, credential: ecrCredentialKey(parsed.region), region: parsed.region })
}

/**
 * The mirrors of the configuration, each on its registry (by hostname or alias). The
 * configuration has been checked: every mirror names a configured registry.
 */
export function configuredMirrors (mirrors: Readonly<Record<string, MirrorConfig>>, registries: readonly Registry[]): Mirror[] {
  return Object.entries(mirrors).map(([host, mirror]) => {
    const name = mirror.registry.toLowerCase()
    const registry = registries.find((r) => r.host === name || r.alias === name)
    if (registry === undefined) throw new Error(`mirror ${host}: no registry ${mirror.registry}`)
    return { host: canonicalMirrorHost(host), registry, prefix: mirror.prefix }
  })
}
