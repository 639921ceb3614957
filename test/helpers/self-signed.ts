import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface KeyPair {
  key: Buffer
  cert: Buffer
}

let cached: KeyPair | undefined

/** A throwaway P-256 certificate for 127.0.0.1 made with openssl, once per test process. */
export function selfSigned (): KeyPair {
  if (cached !== undefined) return cached
  const dir = mkdtempSync(join(tmpdir(), 'ecr-proxy-tls-'))
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
    cached = { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }
    return cached
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
