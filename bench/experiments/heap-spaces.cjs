// Preload (node --require) that appends the process's memory figures every 100 ms to
// $HEAP_SPACES_DIR/heap-<pid>.jsonl: RSS, V8's heap by space (physical size), external memory
// and ArrayBuffers, in KiB. Used by upload-path.mjs --heap-log to tell V8's young generation from
// read buffers and native memory during downloads (docs/performance.md, finding 8).
const fs = require('node:fs')
const path = require('node:path')
const v8 = require('node:v8')

const file = path.join(process.env.HEAP_SPACES_DIR ?? '.', `heap-${process.pid}.jsonl`)
const kib = (bytes) => Math.round(bytes / 1024)
setInterval(() => {
  const memory = process.memoryUsage()
  const spaces = {}
  for (const space of v8.getHeapSpaceStatistics()) {
    if (space.physical_space_size > 0) spaces[space.space_name] = kib(space.physical_space_size)
  }
  fs.appendFileSync(file, JSON.stringify({ t: Date.now(), rss: kib(memory.rss), external: kib(memory.external), arrayBuffers: kib(memory.arrayBuffers), spaces }) + '\n')
}, 100).unref()
