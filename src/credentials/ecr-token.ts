import { ECRClient, GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr'
import { fromIni, fromTemporaryCredentials } from '@aws-sdk/credential-providers'

export interface AuthorizationToken {
  /** base64 of `AWS:<password>`, sent as `Authorization: Basic <token>`. Never logged. */
  token: string
  expiresAt: Date
  /** The registry origin ECR says the token is for, e.g. https://600423610423.dkr.ecr.us-east-2.amazonaws.com */
  proxyEndpoint?: string
}

export type FetchToken = () => Promise<AuthorizationToken>

/**
 * The ECR client through the SDK's default credential chain (env, profile/SSO, web identity,
 * ECS, IMDS) and its own endpoint settings (AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL).
 */
export function createEcrClient (region: string | undefined, identity: EcrIdentity = {}): ECRClient {
  const credentials = identityCredentials(region, identity)
  return new ECRClient({ ...(region === undefined ? {} : { region }), ...(credentials === undefined ? {} : { credentials }) })
}

/** Who asks for the token, when not the default chain: a shared-config profile and/or a role to assume. */
export interface EcrIdentity {
  profile?: string | undefined
  roleArn?: string | undefined
  externalId?: string | undefined
  roleSessionName?: string | undefined
}

/** The SDK's own providers: a profile (SSO, process, static…), and STS AssumeRole on top of it or of the default chain. */
export function identityCredentials (region: string | undefined, identity: EcrIdentity): ReturnType<typeof fromIni> | undefined {
  const base = identity.profile === undefined ? undefined : fromIni({ profile: identity.profile })
  if (identity.roleArn === undefined) return base
  return fromTemporaryCredentials({
    params: {
      RoleArn: identity.roleArn,
      RoleSessionName: identity.roleSessionName ?? 'ecr-auth-proxy',
      ...(identity.externalId === undefined ? {} : { ExternalId: identity.externalId })
    },
    ...(base === undefined ? {} : { masterCredentials: base }),
    ...(region === undefined ? {} : { clientConfig: { region } })
  })
}

export function ecrTokenFetcher (client: ECRClient): FetchToken {
  return async function fetchEcrToken () {
    const response = await client.send(new GetAuthorizationTokenCommand({}))
    const data = response.authorizationData?.[0]
    if (data?.authorizationToken === undefined || data.expiresAt === undefined) {
      throw new Error('GetAuthorizationToken returned no authorization data')
    }
    return {
      token: data.authorizationToken,
      expiresAt: data.expiresAt,
      ...(data.proxyEndpoint === undefined ? {} : { proxyEndpoint: data.proxyEndpoint })
    }
  }
}

/**
 * Turns an SDK failure into one line an operator can act on. It never includes a token: SDK
 * errors carry none, and only name and message are used.
 */
export function describeTokenError (err: unknown): string {
  const error = err instanceof Error ? err : new Error(String(err))
  const message = error.message.split('\n')[0] ?? ''
  switch (error.name) {
    case 'CredentialsProviderError':
      return `no AWS credentials found (${message}); set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a web identity (IRSA) or run where instance/task credentials exist`
    case 'AccessDeniedException':
      return `AWS denied ecr:GetAuthorizationToken: ${message}`
    case 'ThrottlingException':
      return `GetAuthorizationToken is being throttled by AWS (${message})`
    case 'UnrecognizedClientException':
    case 'InvalidSignatureException':
    case 'ExpiredTokenException':
      return `AWS rejected the credentials (${error.name}): ${message}`
    default:
      if (/region is missing/i.test(message)) {
        return 'no AWS region configured; set --region, ECR_PROXY_REGION or AWS_REGION'
      }
      return `could not get an ECR token: ${error.name === 'Error' ? '' : `${error.name}: `}${message}`
  }
}
