/**
 * The proxy outlives its log readers and always ends when told to: stdout closed under it, both
 * stdout and stderr closed, and the terminal it was started in going away.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { request } from 'undici'
import { CLI, freePort, startCli } from './helpers/cli-process.js'

async function status (url: string): Promise<number> {
  const res = await request(url)
  await res.body.dump()
  return res.statusCode
}

t.test('stdout closed mid-run: still answers, logs go on to stderr, SIGTERM ends it', async (t) => {
  const proxy = await startCli(t, ['--region', 'us-east-2', '--shutdown-grace-seconds', '5'], {})
  await proxy.waitFor(/Server listening/)
  proxy.child.stdout?.destroy()

  // Its request line (or a token retry's) is the first write into the closed pipe: EPIPE.
  t.equal(await status(`${proxy.url}/healthz`), 200)
  await proxy.waitForStderr(/"msg":"logging to stderr/)
  await proxy.waitForStderr(/"msg":"request"/)
  const lines = proxy.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(lines.filter((l) => l.level === 40), [{ msg: 'logging to stderr: stdout failed (EPIPE)', failedStream: 'stdout', code: 'EPIPE' }], 'said once')
  t.match(lines.find((l) => l.msg === 'request'), { method: 'GET', path: '/healthz', status: 200 }, 'the line that failed on stdout is not lost')
  t.equal(await status(`${proxy.url}/healthz`), 200, 'still answering')

  proxy.child.kill('SIGTERM')
  t.equal(await proxy.exited, 0, 'a clean exit within the grace period')
  t.match(proxy.stderr(), /"msg":"shutting down"/)
})

t.test('stdout and stderr both closed: still answers, SIGTERM ends it', async (t) => {
  const proxy = await startCli(t, ['--region', 'us-east-2', '--shutdown-grace-seconds', '5'], {})
  await proxy.waitFor(/Server listening/)
  proxy.child.stdout?.destroy()
  proxy.child.stderr?.destroy()
  for (let i = 0; i < 3; i++) t.equal(await status(`${proxy.url}/healthz`), 200)
  proxy.child.kill('SIGTERM')
  t.equal(await proxy.exited, 0)
})

/** A process has ended once it is gone or a zombie (its parent, `script`, was killed). */
function ended (pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? true
  } catch {
    return true
  }
}

const hasScript = spawnSync('script', ['--version']).status === 0
t.test('the terminal goes away: the proxy ends instead of spinning', { skip: hasScript ? false : 'needs script(1) from util-linux' }, async (t) => {
  const port = await freePort()
  // script(1) runs the proxy on a new pseudo-terminal (so it logs pretty); `exec` keeps the pid.
  const command = `echo "pid=$$"; exec '${process.execPath}' '${CLI}' --region us-east-2 --port ${port} --shutdown-grace-seconds 5`
  const terminal = spawn('script', ['-qfc', command, '/dev/null'], {
    env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true', SHELL: '/bin/sh', TERM: 'xterm' },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  t.teardown(() => { terminal.kill('SIGKILL') })
  let screen = ''
  await new Promise<void>((resolve, reject) => {
    terminal.stdout.on('data', (chunk: Buffer) => {
      screen += chunk.toString()
      if (/Server listening/.test(screen)) resolve()
    })
    terminal.once('exit', () => reject(new Error(`script exited early:\n${screen}`)))
  })
  const pid = Number(/pid=(\d+)/.exec(screen)?.[1])
  t.teardown(() => { if (!ended(pid)) process.kill(pid, 'SIGKILL') })
  t.ok(screen.includes('\u001b[32mINFO'), 'pretty, colored lines on a terminal')
  t.equal(await status(`http://127.0.0.1:${port}/healthz`), 200)

  // Killing script(1) closes the terminal's master side: the proxy gets SIGHUP, and every write to
  // the terminal then fails with EIO.
  terminal.kill('SIGKILL')
  const deadline = Date.now() + 15_000
  while (!ended(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  t.ok(ended(pid), 'the proxy has ended')
})
