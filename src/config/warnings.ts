import { partition } from '@aws-sdk/core/client'
import { clientAuthConfigured, isLoopbackAddress } from '../http/exposure.js'
import { settingOrigin } from './index.js'
import type { Config } from './schema.js'

/** Whether the SDK's own partition data knows the region (it describes every region it knows). */
export function isKnownRegion (region: string): boolean {
  return (partition(region) as { description?: string }).description !== undefined
}

const REGION_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789-'

/**
 * Known regions one typo away (a character missing, extra, wrong, or two swapped), checked
 * against the SDK's partition data rather than a list of our own that would go stale.
 */
export function closestRegions (region: string): string[] {
  const candidates = new Set<string>()
  for (let i = 0; i <= region.length; i++) {
    if (i < region.length) candidates.add(region.slice(0, i) + region.slice(i + 1))
    if (i < region.length - 1) candidates.add(region.slice(0, i) + (region[i + 1] as string) + (region[i] as string) + region.slice(i + 2))
    for (const c of REGION_CHARS) {
      if (i < region.length) candidates.add(region.slice(0, i) + c + region.slice(i + 1))
      candidates.add(region.slice(0, i) + c + region.slice(i))
    }
  }
  candidates.delete(region)
  return [...candidates].filter(isKnownRegion).sort()
}

/**
 * Set-ups that start but are likely mistakes or risks: a region the SDK does not know, a listener
 * off loopback that anyone may use, client secrets accepted over plain HTTP off loopback.
 */
export function configWarnings (config: Config): string[] {
  const warnings: string[] = []
  config.registries.forEach((entry, i) => {
    if (entry.region === undefined || isKnownRegion(entry.region)) return
    const near = closestRegions(entry.region)
    warnings.push(`${settingOrigin(config, ['registries', String(i), 'region'])}: "${entry.region}" is not a region the AWS SDK knows${near.length === 0 ? '' : `; did you mean ${near.join(' or ')}?`}`)
  })
  const host = config.listener.host
  const offLoopback = !isLoopbackAddress(host) && host !== 'localhost'
  const authentication = clientAuthConfigured({ host, ...config.access })
  if (offLoopback && !authentication && config.access.allowUnauthenticated) {
    warnings.push(`listening on ${host} without client authentication (--allow-unauthenticated): anyone who reaches this port pulls and pushes as the proxy's AWS identity`)
  }
  if (offLoopback && authentication && config.listener.tlsCert === undefined) {
    warnings.push(`client passwords and tokens are accepted over plain HTTP on ${host}: anyone on the network path can read them; serve HTTPS (--tls-cert, --tls-key) or listen on loopback`)
  }
  return warnings
}
