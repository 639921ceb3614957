import { createHash } from 'node:crypto'
import t from 'tap'
import { request } from 'undici'
import { awsTestEnv, startCli, STEADY_HEAP_ENV, waitReady, type CliProcess } from '../helpers/cli-process.js'
import { syntheticBytes, syntheticDigest } from '../helpers/digest.js'
import { GiB, startBigBlobRegistry } from '../helpers/big-blob-registry.js'
import { startEcrApi } from '../helpers/ecr-api.js'
import { TokenAuthority } from '../helpers/token-authority.js'

const MiB = 1024 ** 2

/** Samples the proxy's RSS while `work` runs. */
async function sampled (proxy: CliProcess, work: () => Promise<void>): Promise<number[]> {
  const samples: number[] = []
  const timer = setInterval(() => samples.push(proxy.memory().current), 50)
  try {
    await work()
  } finally {
    clearInterval(timer)
  }
  return samples
}

t.test('a 1 GiB download and upload stream through the proxy in constant memory', async (t) => {
  const authority = new TokenAuthority()
  const registry = await startBigBlobRegistry(authority)
  t.teardown(() => registry.close())
  const api = await startEcrApi({ authority, proxyEndpoint: registry.url })
  t.teardown(() => api.close())
  const proxy = await startCli(t, ['--upstream', registry.url], { ...awsTestEnv(api.url), ...STEADY_HEAP_ENV })
  await waitReady(proxy)
  const baseline = proxy.memory().current

  const expected = await syntheticDigest(GiB, 'download')
  let downloaded = ''
  const downloadSamples = await sampled(proxy, async () => {
    const res = await request(`${proxy.url}/v2/big/blobs/${expected}`)
    t.equal(res.statusCode, 200)
    t.equal(res.headers['content-length'], String(GiB))
    const hash = createHash('sha256')
    for await (const chunk of res.body) hash.update(chunk as Buffer)
    downloaded = `sha256:${hash.digest('hex')}`
  })
  t.equal(downloaded, expected, 'every byte arrived, in order')

  const uploadSamples = await sampled(proxy, async () => {
    const res = await request(`${proxy.url}/v2/big/blobs/uploads/1`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/octet-stream' },
      body: syntheticBytes(GiB, 'upload')
    })
    t.equal(res.statusCode, 201)
    t.equal(res.headers.location, '/v2/big/blobs/uploads/1')
    await res.body.dump()
  })
  t.same(registry.uploads, [{ bytes: GiB, digest: await syntheticDigest(GiB, 'upload') }], 'the upload reached the registry whole')

  for (const [name, samples] of [['download', downloadSamples], ['upload', uploadSamples]] as const) {
    const quarter = Math.floor(samples.length / 4)
    const early = Math.max(...samples.slice(0, quarter))
    const late = Math.max(...samples.slice(quarter))
    t.ok(samples.length > 8, `${name}: ${samples.length} samples`)
    t.ok(Math.max(...samples) - baseline < 96 * MiB, `${name}: RSS stays within 96 MiB of its idle ${Math.round(baseline / MiB)} MiB (peak ${Math.round(Math.max(...samples) / MiB)} MiB)`)
    t.ok(late - early < 24 * MiB, `${name}: RSS flat while the bytes flow (first quarter ${Math.round(early / MiB)} MiB, rest ${Math.round(late / MiB)} MiB)`)
  }
  t.comment(`peak RSS ${Math.round(proxy.memory().peak / MiB)} MiB, idle ${Math.round(baseline / MiB)} MiB`)
})
