import t from 'tap'
import { parseSize, formatSize } from '../../src/cache/size.js'
import { loadConfig, parseCommandLine } from '../../src/config/index.js'

t.test('sizes as operators write them', async (t) => {
  t.equal(parseSize('20GiB'), 20 * 1024 ** 3)
  t.equal(parseSize('500MB'), 500_000_000)
  t.equal(parseSize('1.5 gib'), 1.5 * 1024 ** 3)
  t.equal(parseSize('1048576'), 1048576)
  t.equal(parseSize(4096), 4096)
  t.equal(parseSize('lots'), undefined)
  t.equal(parseSize('5XB'), undefined)
  t.equal(parseSize(-1), undefined)
  t.equal(formatSize(20 * 1024 ** 3), '20 GiB')
  t.equal(formatSize(512), '512 B')
})

t.test('the cache section: off by default, flags, environment and file, plain-English errors', async (t) => {
  const off = loadConfig(parseCommandLine([]), {})
  t.same(off.cache, { maxSize: '20GiB', confirmSeconds: 300, serveStale: false })
  const on = loadConfig(parseCommandLine(['--cache-dir', '/var/cache/ecr', '--cache-serve-stale']), { ECR_PROXY_CACHE_MAX_SIZE: '5GiB' })
  t.same(on.cache, { dir: '/var/cache/ecr', maxSize: '5GiB', confirmSeconds: 300, serveStale: true })
  t.throws(() => loadConfig(parseCommandLine(['--cache-max-size', 'lots']), {}), /invalid configuration: cacheMaxSize \(from --cache-max-size\) must match .*, got "lots"/)
})
