/**
 * A real process running an export: `node export-child.ts <archive> <out> slow|rsmf`.
 * - `slow` (interruption tests): HTML; prints `WORKING <temp dir>` once the export's working
 *   directory holds the index and then reads the archive slowly, so the test can signal or kill
 *   it mid-export.
 * - `rsmf` (memory tests, run under a heap limit): RSMF, then prints `DONE`.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sink } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { exportArchive } from '../export-archive.ts';

const [archive, out, mode] = process.argv.slice(2) as [string, string, 'slow' | 'rsmf'];
const sink = await openFsSink({ dir: archive, readOnly: true });
let slow = false;
async function* slowRead(stream: string): AsyncGenerator<Awaited<ReturnType<Sink['read']> extends AsyncIterable<infer T> ? T : never>> {
  for await (const stored of sink.read(stream)) {
    if (slow) await sleep(200);
    yield stored;
  }
}
const slowSink = new Proxy(sink, {
  get(target, property) {
    if (property === 'read') return slowRead;
    const value: unknown = Reflect.get(target, property, target);
    return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
  },
});
await exportArchive({
  sink: slowSink,
  out,
  formats: mode === 'rsmf' ? ['rsmf'] : ['html'],
  onProgress: ({ phase }) => {
    if (mode !== 'slow' || phase !== 'index' || slow) return;
    slow = true;
    void readdir(path.dirname(out)).then((names) => {
      const temp = names.find((name) => name.startsWith('.offchannel-export-tmp-'));
      process.stdout.write(`WORKING ${temp ?? 'none'}\n`);
    });
  },
});
process.stdout.write('DONE\n');
await sink.close();
