/**
 * What the harness needs from a tap Test: a place to register cleanup (and, optionally, whether
 * the test is passing, to print diagnostics when not). scripts/demo.ts passes its own.
 */
export interface Scope {
  teardown (fn: () => unknown): void
  passing?: () => boolean
  name?: string
}
