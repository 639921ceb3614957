import pino, { type DestinationStream, type Logger, type LevelWithSilent } from 'pino'

/**
 * Every place a credential could appear in a log object. Fastify's request serializer logs no
 * headers, and the proxy never logs a token on purpose; this is the net under both.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["proxy-authorization"]',
  '*.headers.authorization',
  'token',
  '*.token',
  'authorizationToken',
  '*.authorizationToken',
  'password',
  '*.password'
]

export function createLogger (level: LevelWithSilent, destination?: DestinationStream): Logger {
  const options = {
    level,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    base: { pid: process.pid }
  }
  if (destination !== undefined) return pino(options, destination)
  if (process.stdout.isTTY) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { translateTime: 'SYS:standard', ignore: 'pid,hostname' } } })
  }
  return pino(options)
}
