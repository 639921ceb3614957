import { CredentialFileError } from './htpasswd.js'

/** Printable ASCII without spaces or commas (the environment variable is comma-separated). */
export const TOKEN_PATTERN = /^[\x21-\x2b\x2d-\x7e]+$/
export const TOKEN_MIN_LENGTH = 16
export const TOKEN_MAX_LENGTH = 4096

export function tokenProblem (token: string): string | undefined {
  if (token.length < TOKEN_MIN_LENGTH) return `is shorter than ${TOKEN_MIN_LENGTH} characters`
  if (token.length > TOKEN_MAX_LENGTH) return `is longer than ${TOKEN_MAX_LENGTH} characters`
  if (!TOKEN_PATTERN.test(token)) return 'holds characters other than printable ASCII (no spaces, no commas)'
  return undefined
}

/**
 * A bearer-token file: one token per line; blank lines and lines starting with # are skipped.
 * Errors name the line, never the token.
 */
export function parseTokenFile (text: string, file: string): string[] {
  const tokens: string[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/\r$/, '').trim()
    if (line === '' || line.startsWith('#')) continue
    const problem = tokenProblem(line)
    if (problem !== undefined) throw new CredentialFileError(`${file} line ${i + 1}: the token ${problem}`)
    tokens.push(line)
  }
  return tokens
}
