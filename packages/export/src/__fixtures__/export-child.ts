/**
 * A real process running an export: `node export-child.ts <archive> <out> hold|rsmf`.
 * - `hold` (interruption tests): HTML; once the export has created its working directory and
 *   the index in it, its first read of the archive for the index waits: the child prints
 *   `WORKING <temp dir>` and holds there, mid-export, until its stdin closes (the test ends or
 *   dies), so the test can signal or kill it at that point however slowly it runs. (It once
 *   slept per record read instead; when the index came to be built from bulk reads, the export
 *   no longer waited, and a loaded test saw it finish before it could look.)
 * - `rsmf` (memory tests, run under a heap limit): RSMF, then prints `DONE`.
 */
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { openFsSink } from '@offchannel/sink-fs';
import { exportArchive } from '../export-archive.ts';

const [archive, out, mode] = process.argv.slice(2) as [string, string, 'hold' | 'rsmf'];
const sink = await openFsSink({ dir: archive, readOnly: true });
let indexing = false;
let held = false;
/** The first archive read of the index phase: report the working directory, then wait. */
async function hold(): Promise<void> {
  if (mode !== 'hold' || !indexing || held) return;
  held = true;
  const names = await readdir(path.dirname(out));
  const temp = names.find((name) => name.startsWith('.offchannel-export-tmp-'));
  process.stdout.write(`WORKING ${temp ?? 'none'}\n`);
  process.stdin.resume();
  await once(process.stdin, 'end');
}
/** Every way of reading records (record by record, bulk) holds first. */
const READS = new Set<PropertyKey>(['read', 'readSegments']);
const heldSink = new Proxy(sink, {
  get(target, property) {
    const value: unknown = Reflect.get(target, property, target);
    if (typeof value !== 'function') return value;
    const method = (value as (...args: unknown[]) => unknown).bind(target);
    if (!READS.has(property)) return method;
    return async function* (...args: unknown[]): AsyncGenerator {
      await hold();
      yield* method(...args) as AsyncIterable<unknown>;
    };
  },
});
await exportArchive({
  sink: mode === 'hold' ? heldSink : sink,
  out,
  formats: mode === 'rsmf' ? ['rsmf'] : ['html'],
  onProgress: ({ phase }) => {
    if (phase === 'index') indexing = true;
  },
});
process.stdout.write('DONE\n');
await sink.close();
