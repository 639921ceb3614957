/** A request target split once into its path and its raw query (after `?`, still percent-encoded). */
export interface RequestTarget {
  path: string
  query: string
}

export function splitTarget (url: string): RequestTarget {
  const at = url.indexOf('?')
  return at === -1 ? { path: url, query: '' } : { path: url.slice(0, at), query: url.slice(at + 1) }
}

export function pathOf (url: string): string {
  const at = url.indexOf('?')
  return at === -1 ? url : url.slice(0, at)
}
