import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config.js'
import { logSink } from './log-sink.js'

/** The proxy in front of a hand-written upstream, with a fixed valid token: for wire-level tests. */
export async function proxyFor (t: Test, upstreamUrl: string): Promise<string> {
  const { app } = await buildApp(loadConfig(parseCommandLine(['--upstream', upstreamUrl]), {}), {
    fetchToken: async () => ({ token: 'QVdTOnB3', expiresAt: new Date(Date.now() + 3_600_000) }),
    logger: logSink('silent').logger
  })
  t.teardown(() => app.close())
  return await app.listen({ host: '127.0.0.1', port: 0 })
}
