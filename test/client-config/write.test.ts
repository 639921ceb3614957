import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import * as fsPromises from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

t.test('a failed rename leaves the old file and no temporary file behind', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'client-config-write-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const renamed: string[] = []
  const { writeFiles } = await t.mockImport<typeof import('../../src/client-config/write.js')>('../../src/client-config/write.js', {
    'node:fs/promises': {
      ...fsPromises,
      rename: async (from: string) => {
        renamed.push(from)
        throw Object.assign(new Error(`EXDEV: cross-device link not permitted, rename '${from}'`), { code: 'EXDEV' })
      }
    }
  })
  await t.rejects(writeFiles(dir, [{ path: 'a.example/hosts.toml', content: 'server = "https://a.example"\n' }]), { code: 'EXDEV' })
  t.equal(renamed.length, 1)
  t.match(renamed[0], new RegExp(`^${dir}/a\\.example/\\.hosts\\.toml\\.[0-9a-f]{12}\\.tmp$`), 'the temporary file sits beside the target')
  t.same(readdirSync(join(dir, 'a.example')), [], 'removed again')
})
