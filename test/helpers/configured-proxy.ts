import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ECRClient } from '@aws-sdk/client-ecr'
import type { Test } from 'tap'
import { Agent, request } from 'undici'
import { buildApp } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config/index.js'
import { ecrTokenFetcher } from '../../src/credentials/ecr-token.js'
import { logSink, type LogSink } from './log-sink.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const digestOf = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

/**
 * The proxy built from a config file (the given YAML lines), as a user starts it with
 * `--config`: every credential's token comes through the real SDK from the ECR API stand-in at
 * `apiUrl`, one client per credential. Not listening yet; the caller listens and closes.
 */
export async function buildConfiguredProxy (t: Test, apiUrl: string, yaml: string[], extra: string[] = []): Promise<{ built: Awaited<ReturnType<typeof buildApp>>, logs: LogSink }> {
  const file = join(mkdtempSync(join(tmpdir(), 'ecr-proxy-config-')), 'proxy.yaml')
  writeFileSync(file, [...yaml, ''].join('\n'))
  const clients: ECRClient[] = []
  t.teardown(() => { for (const client of clients) client.destroy() })
  const logs = logSink('info')
  const built = await buildApp(loadConfig(parseCommandLine(['--config', file, ...extra]), {}), {
    tokenSource: (key) => {
      const client = new ECRClient({ region: key.region, endpoint: apiUrl, maxAttempts: 1, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' } })
      clients.push(client)
      return ecrTokenFetcher(client)
    },
    logger: logs.logger
  })
  return { built, logs }
}

export interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }

/** A client with its own keep-alive pool: `send(url, method, headers, body)`, the whole answer read. */
export function keptAliveClient (t: Test): (url: string, method: string, headers?: Record<string, string>, body?: Buffer) => Promise<Answer> {
  const dispatcher = new Agent({ keepAliveTimeout: 1000 })
  t.teardown(() => dispatcher.close())
  return async (url, method, headers = {}, body) => {
    const res = await request(url, { method: method as 'GET', dispatcher, headers, ...(body === undefined ? {} : { body }) })
    return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
  }
}

/** A one-layer busybox image as a pull-through cache holds it. */
export function busyboxImage (): { layer: Buffer, config: Buffer, manifest: Buffer } {
  const layer = Buffer.from('busybox layer bytes')
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}')
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf(layer), size: layer.length }]
  }))
  return { layer, config, manifest }
}
