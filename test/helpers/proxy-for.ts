import type { Test } from 'tap'
import type { LevelWithSilent } from 'pino'
import { buildApp } from '../../src/app.js'
import { loadConfig, parseCommandLine } from '../../src/config/index.js'
import { logSink, type LogSink } from './log-sink.js'

/** The token every proxy of these helpers forwards with. */
export const PROXY_TOKEN = 'QVdTOnB3'

export interface ProxyUnderTest {
  /** http://127.0.0.1:PORT */
  url: string
  logs: LogSink
  /** The /metrics text. */
  metrics: () => Promise<string>
}

/**
 * The proxy in front of a hand-written upstream, with a fixed valid token and extra flags as a
 * user would pass them; its log lines and metrics are at hand for the test.
 */
export async function startProxy (t: Test, upstreamUrl: string, argv: string[] = [], logLevel: LevelWithSilent = 'info'): Promise<ProxyUnderTest> {
  const logs = logSink(logLevel)
  const { app, metrics } = await buildApp(loadConfig(parseCommandLine(['--upstream', upstreamUrl, ...argv]), {}), {
    fetchToken: async () => ({ token: PROXY_TOKEN, expiresAt: new Date(Date.now() + 3_600_000) }),
    logger: logs.logger
  })
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { url, logs, metrics: async () => await metrics.registry.metrics() }
}

/** The proxy in front of a hand-written upstream, with a fixed valid token: for wire-level tests. */
export async function proxyFor (t: Test, upstreamUrl: string): Promise<string> {
  return (await startProxy(t, upstreamUrl, [], 'silent')).url
}
