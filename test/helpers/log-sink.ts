import { Writable } from 'node:stream'
import pino, { type Logger } from 'pino'
import { REDACTED_PATHS } from '../../src/logger.js'

export interface LogSink {
  logger: Logger
  lines: Array<Record<string, unknown> & { msg?: string, level: number }>
  text: () => string
}

/** A real pino logger (with the proxy's redaction) whose lines the test reads back. */
export function logSink (level: pino.LevelWithSilent = 'trace'): LogSink {
  const raw: string[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      raw.push(chunk.toString('utf8'))
      callback()
    }
  })
  const logger = pino({ level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, stream)
  return {
    logger,
    get lines () {
      return raw.join('').split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as LogSink['lines'][number])
    },
    text: () => raw.join('')
  }
}
