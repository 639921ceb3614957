import type { Logger } from 'pino'
import type { AccessConfig } from '../config/index.js'
import { ClientAuthenticator } from './client-auth.js'
import { createPolicy, type AccessPolicy } from './policy.js'

export type { AccessPolicy } from './policy.js'
export type { ClientIdentity } from './client-auth.js'

export interface AccessControl {
  authenticator: ClientAuthenticator
  policy: AccessPolicy
}

/** Loads the client credentials (a missing or bad file throws) and builds the policy. */
export function createAccessControl (config: AccessConfig, log: Logger): AccessControl {
  const authenticator = new ClientAuthenticator({
    htpasswdFile: config.htpasswd,
    tokensFile: config.bearerTokensFile,
    tokens: config.bearerTokens,
    log: log.child({ component: 'client-auth' })
  })
  const policy = createPolicy({
    readOnly: config.readOnly,
    allowRepositories: config.allowRepositories,
    denyRepositories: config.denyRepositories
  })
  return { authenticator, policy }
}
