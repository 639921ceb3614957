import { promises as fs } from 'node:fs'

/** The part of an open file the cache uses; node:fs/promises' FileHandle has it. */
export interface CacheFile {
  read (buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>
  write (buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>
  close (): Promise<void>
}

export interface CacheStat { size: number, mtimeMs: number, isFile: () => boolean }

/**
 * Everything the cache does to its directory, in one seam: tests inject faults here (a disk that
 * fills, a write that fails) instead of needing a small tmpfs.
 */
export interface CacheFileSystem {
  mkdir (path: string): Promise<void>
  /** `wx`: create, failing when it exists; `w+`: create or truncate, read and write; `r`: read. */
  open (path: string, flags: 'r' | 'w+' | 'wx'): Promise<CacheFile>
  readFile (path: string): Promise<Buffer>
  writeFile (path: string, data: string | Buffer): Promise<void>
  rename (from: string, to: string): Promise<void>
  unlink (path: string): Promise<void>
  readdir (path: string): Promise<string[]>
  stat (path: string): Promise<CacheStat>
  /** Sets the modification time: how the LRU order survives a restart. */
  touch (path: string, timeMs: number): Promise<void>
}

export const nodeFileSystem: CacheFileSystem = {
  mkdir: async (path) => { await fs.mkdir(path, { recursive: true }) },
  open: async (path, flags) => await fs.open(path, flags),
  readFile: async (path) => await fs.readFile(path),
  writeFile: async (path, data) => { await fs.writeFile(path, data) },
  rename: async (from, to) => { await fs.rename(from, to) },
  unlink: async (path) => { await fs.unlink(path) },
  readdir: async (path) => await fs.readdir(path),
  stat: async (path) => await fs.stat(path),
  touch: async (path, timeMs) => { await fs.utimes(path, timeMs / 1000, timeMs / 1000) }
}
