/**
 * htpasswd files with bcrypt entries only (`htpasswd -B`): `user:$2y$10$…`, one per line.
 * Other htpasswd formats (MD5 apr1, SHA-1, crypt, plain text) are refused: they are fast to brute
 * force. Errors name the line and the user, never the hash.
 */
const BCRYPT = /^\$2[aby]\$(\d{2})\$[./A-Za-z0-9]{53}$/
// eslint-disable-next-line no-control-regex
const BAD_USER_CHARS = /[\u0000-\u0020\u007f]/

export class CredentialFileError extends Error {
  override name = 'CredentialFileError'
  /** The setting the credentials came from (access.htpasswd, …), for the start-up error. */
  setting?: readonly string[]
}

/** user → bcrypt hash */
export type Htpasswd = ReadonlyMap<string, string>

export function parseHtpasswd (text: string, file: string): Htpasswd {
  const users = new Map<string, string>()
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).replace(/\r$/, '').trim()
    if (line === '' || line.startsWith('#')) continue
    const colon = line.indexOf(':')
    const where = `${file} line ${i + 1}`
    if (colon <= 0) throw new CredentialFileError(`${where}: expected user:bcrypt-hash`)
    const user = line.slice(0, colon)
    const hash = line.slice(colon + 1)
    if (BAD_USER_CHARS.test(user)) throw new CredentialFileError(`${where}: the user name holds spaces or control characters`)
    const bcrypt = BCRYPT.exec(hash)
    if (bcrypt === null) {
      throw new CredentialFileError(`${where}: the entry for "${user}" is not a bcrypt hash; only bcrypt entries are accepted (create them with htpasswd -B)`)
    }
    const cost = Number(bcrypt[1])
    if (cost < 4 || cost > 31) throw new CredentialFileError(`${where}: the entry for "${user}" has an invalid bcrypt cost ${cost}`)
    if (users.has(user)) throw new CredentialFileError(`${where}: "${user}" appears more than once`)
    users.set(user, hash)
  }
  return users
}
