/**
 * Paged listings through the proxy, followed the way clients follow them: every `Link: <…>;
 * rel="next"` must point at the proxy (a path, or the proxy's own origin), never at the
 * registry, and every entry must be seen exactly once.
 *
 * Debian's docker-registry (distribution 2.8) pages `_catalog` but ignores `n` on tags/list
 * (paging there came with distribution 3), so tags/list is checked for a complete, duplicate-free
 * answer to an `n=` query, and the Link-following is exercised on `_catalog`.
 */
import t, { type Test } from 'tap'
import { curl } from './harness/clients.js'
import { registryRequests } from './harness/registry.js'
import { startStack, type Stack } from './harness/stack.js'

const stack = await startStack(t)
const TAGS = Array.from({ length: 23 }, (_, i) => `t${String(i).padStart(2, '0')}`)
const REPOSITORIES = Array.from({ length: 7 }, (_, i) => `e2e/pages/r${i}`)
await stack.direct.putTinyImage('e2e/pages', TAGS)
for (const repository of REPOSITORIES) await stack.direct.putTinyImage(repository, ['v1'])

/** Follows Link headers from `first` with curl; returns every page's entries and every Link seen. */
async function walk (t: Test, s: Stack, first: string, key: 'tags' | 'repositories'): Promise<{ entries: string[], links: string[], pages: number }> {
  const entries: string[] = []
  const links: string[] = []
  let next: string | undefined = new URL(first, s.proxy.url).toString()
  let pages = 0
  while (next !== undefined && pages < 100) {
    const page = await curl([next])
    t.equal(page.status, 200, `GET ${next} answers 200`)
    pages++
    entries.push(...((JSON.parse(page.body) as Record<string, string[] | null>)[key] ?? []))
    const link = page.headers.link
    next = undefined
    if (link !== undefined) {
      links.push(link)
      const target = /<([^>]+)>;\s*rel="next"/.exec(link)?.[1]
      t.ok(target !== undefined, `Link has a next target: ${link}`)
      if (target === undefined) break
      t.notMatch(link, s.registry.host, `Link does not name the registry: ${link}`)
      t.ok(target.startsWith('/v2/') || target.startsWith(`${s.proxy.url}/v2/`), `Link points at the proxy: ${target}`)
      next = new URL(target, next ?? s.proxy.url).toString()
    }
  }
  return { entries, links, pages }
}

t.test('tags/list with n= through the proxy: every tag once', async (t) => {
  const { entries } = await walk(t, stack, '/v2/e2e/pages/tags/list?n=5', 'tags')
  t.same([...entries].sort(), TAGS, 'all 23 tags')
  t.equal(new Set(entries).size, entries.length, 'none twice')
  t.same([...entries].sort(), await stack.direct.tags('e2e/pages'), 'what the registry holds')
  const received = registryRequests(stack.registry).map((line) => line.uri)
  t.ok(received.includes('/v2/e2e/pages/tags/list?n=5'), 'the registry received the query as the client sent it')
})

t.test('_catalog paged with n=2 through the proxy, Link followed', async (t) => {
  const { entries, links, pages } = await walk(t, stack, '/v2/_catalog?n=2', 'repositories')
  const expected = ['e2e/pages', ...REPOSITORIES].sort()
  t.same([...entries].sort(), expected, 'every repository')
  t.equal(new Set(entries).size, entries.length, 'none twice')
  t.ok(pages >= 4, `several pages (${pages})`)
  t.ok(links.length >= 3, `Link headers followed (${links.length}); first: ${links[0] ?? 'none'}`)
})
