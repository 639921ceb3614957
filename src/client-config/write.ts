import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { RenderedFile } from './render.js'

export interface WriteOutcome {
  /** Absolute path of the file. */
  path: string
  /** `unchanged`: the file already held these bytes and was left alone. */
  action: 'wrote' | 'unchanged'
}

/**
 * Writes each file under `dir` (created as needed), each replaced in one step: containerd reads
 * hosts.toml on every pull, so it must never see half a file. The new bytes go to a temporary
 * file beside the target, then rename(2) swaps it in. A file that already holds the same bytes
 * is not touched (an init container runs this on every pod start). Files not named here are
 * left alone. `onDone` hears of each file as soon as it is in place (so a caller can say what
 * it wrote even when a later file fails).
 */
export async function writeFiles (dir: string, files: readonly RenderedFile[], onDone?: (outcome: WriteOutcome) => void): Promise<WriteOutcome[]> {
  const outcomes: WriteOutcome[] = []
  const done = (outcome: WriteOutcome): void => {
    outcomes.push(outcome)
    onDone?.(outcome)
  }
  for (const file of files) {
    const target = join(dir, file.path)
    await mkdir(dirname(target), { recursive: true, mode: 0o755 })
    if (await currentContent(target) === file.content) {
      done({ path: target, action: 'unchanged' })
      continue
    }
    const temp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`)
    try {
      await writeFile(temp, file.content, { mode: 0o644, flag: 'wx' })
      await rename(temp, target)
    } catch (err) {
      await rm(temp, { force: true })
      throw err
    }
    done({ path: target, action: 'wrote' })
  }
  return outcomes
}

async function currentContent (path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}
