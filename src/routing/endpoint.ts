export interface RegistryEndpointOptions {
  registryId: string
  region: string
  fips?: boolean
  dualStack?: boolean
}

/**
 * The registry origin of an account and region. China regions live under amazonaws.com.cn;
 * dual-stack endpoints use the `dkr-ecr` label under on.aws (on.amazonwebservices.com.cn in China).
 */
export function registryOrigin ({ registryId, region, fips = false, dualStack = false }: RegistryEndpointOptions): string {
  const china = region.startsWith('cn-')
  if (fips && china) throw new Error(`ECR has no FIPS endpoint in ${region}`)
  if (dualStack) {
    const label = fips ? 'dkr-ecr-fips' : 'dkr-ecr'
    return `https://${registryId}.${label}.${region}.${china ? 'on.amazonwebservices.com.cn' : 'on.aws'}`
  }
  return `https://${registryId}.${fips ? 'dkr.ecr-fips' : 'dkr.ecr'}.${region}.${china ? 'amazonaws.com.cn' : 'amazonaws.com'}`
}

/** Normalises an origin given in config or by GetAuthorizationToken: scheme://host[:port], no path. */
export function toOrigin (url: string): string {
  const parsed = new URL(url)
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new Error(`registry URL must be http:// or https://, got ${parsed.protocol}`)
  }
  return parsed.origin
}

/** `<acct>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`, `<acct>.dkr-ecr[-fips].<region>.on.aws` → region. */
export function regionOfRegistry (origin: string): string | undefined {
  let host: string
  try {
    host = new URL(origin).hostname.toLowerCase()
  } catch {
    return undefined
  }
  const match = /\.(?:dkr\.ecr|dkr\.ecr-fips|dkr-ecr|dkr-ecr-fips)\.([a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|on\.aws|on\.amazonwebservices\.com\.cn)$/.exec(host)
  return match?.[1]
}

/** What an ECR private-registry hostname says about itself. */
export interface EcrHost {
  registryId: string
  region: string
  fips: boolean
  dualStack: boolean
}

const ECR_HOST = /^([0-9]{12})\.(dkr\.ecr|dkr\.ecr-fips|dkr-ecr|dkr-ecr-fips)\.([a-z]{2}(?:-[a-z]+)+-[0-9]+)\.(amazonaws\.com|amazonaws\.com\.cn|on\.aws|on\.amazonwebservices\.com\.cn)$/

/**
 * Parses `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]` and the dual-stack
 * `<account>.dkr-ecr[-fips].<region>.on.aws` (`on.amazonwebservices.com.cn` in China). Exact: the
 * partition must fit the region, and the result rebuilds the same hostname.
 */
export function parseEcrHost (host: string): EcrHost | undefined {
  const match = ECR_HOST.exec(host.toLowerCase())
  if (match === null) return undefined
  const [, registryId, label, region, domain] = match as unknown as [string, string, string, string, string]
  const parsed = { registryId, region, fips: label.endsWith('-fips'), dualStack: label.startsWith('dkr-ecr') }
  const dualDomain = domain === 'on.aws' || domain === 'on.amazonwebservices.com.cn'
  if (parsed.dualStack !== dualDomain) return undefined
  try {
    return new URL(registryOrigin(parsed)).hostname === host.toLowerCase() ? parsed : undefined
  } catch {
    return undefined
  }
}
