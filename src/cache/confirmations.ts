import type { Clock } from '../credentials/clock.js'

/**
 * What the registry has said about repositories: that (registry, repository) has a digest — the
 * cache hands a digest out through a repository only after that — and which digest a tag named.
 * A confirmation is fresh for a bounded time; the last one is kept for the offline fallback.
 */
export class RegistryKnowledge {
  readonly #confirmed = new Map<string, number>()
  readonly #tags = new Map<string, { digest: string, at: number }>()

  constructor (private readonly clock: Clock, private readonly freshMs: number, private readonly maxRemembered = 100_000) {}

  confirm (registry: string, repository: string, digest: string): void {
    remember(this.#confirmed, `${registry}/${repository}@${digest}`, this.clock.now(), this.maxRemembered)
  }

  /** Confirmed within the fresh time. */
  isFresh (registry: string, repository: string, digest: string): boolean {
    const at = this.#confirmed.get(`${registry}/${repository}@${digest}`)
    return at !== undefined && this.clock.now() - at < this.freshMs
  }

  /** Ever confirmed (since this process started): what the offline fallback may rely on. */
  wasConfirmed (registry: string, repository: string, digest: string): boolean {
    return this.#confirmed.has(`${registry}/${repository}@${digest}`)
  }

  rememberTag (registry: string, repository: string, tag: string, digest: string): void {
    remember(this.#tags, `${registry}/${repository}:${tag}`, { digest, at: this.clock.now() }, this.maxRemembered)
  }

  tag (registry: string, repository: string, tag: string): { digest: string, at: number } | undefined {
    return this.#tags.get(`${registry}/${repository}:${tag}`)
  }
}

/** A bounded map, oldest dropped first. */
function remember<V> (map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key)
  map.set(key, value)
  if (map.size > max) map.delete(map.keys().next().value as string)
}
