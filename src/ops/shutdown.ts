import closeWithGrace from 'close-with-grace'
import type { Logger } from 'pino'

/**
 * close-with-grace listens for these too. A JavaScript listener on a synchronous fault (SIGSEGV,
 * SIGBUS, SIGFPE, SIGILL, SIGTRAP) makes libuv's handler return into the faulting instruction, which
 * faults again, forever: seen as a proxy at 100% CPU that no SIGTERM ended, after Node 20 crashed
 * in its exit path on a terminal that had gone away (nodejs/node#51519). SIGABRT and SIGQUIT are
 * how a user or a crash asks for an immediate end. All of them keep their default action.
 */
export const DEFAULT_ACTION_SIGNALS = ['SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGSEGV'] as const

/**
 * SIGTERM, SIGINT, SIGHUP (the terminal went away) and SIGUSR2 start a graceful shutdown: `close`
 * gets `graceMs` to finish in-flight transfers, then the process exits 1; a second signal exits at
 * once. Registered once listening: close-with-grace also ends the process on 'beforeExit', with 0.
 */
export function closeOnSignals (options: { graceMs: number, logger: Logger, close: () => Promise<void> }): void {
  const { graceMs, logger, close } = options
  closeWithGrace({ delay: graceMs, logger, skip: [...DEFAULT_ACTION_SIGNALS] }, async ({ signal, err }) => {
    if (err !== undefined) logger.error({ err }, 'shutting down after an error')
    else logger.info({ signal }, 'shutting down')
    await close()
  })
}
