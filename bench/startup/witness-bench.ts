/**
 * bench/startup/witness — what it costs `offchannel witness serve` to open its state.
 *
 * For each journal length N (default 10,000 and 1,000,000 cosigned sizes over 500 logs), writes
 * a journal as the witness writes it (one line per cosigned size), then opens the state:
 *   full       no snapshot (a previous version's folder, or after compaction): the journal is
 *              read whole, a chunk at a time, and a snapshot written
 *   snapshot   the snapshot that open wrote, plus a tail of 100 lines appended after it
 * and prints the open time, the journal bytes read and the heap the open keeps (after a GC;
 * run with --expose-gc, as the package script does).
 *
 * Usage: pnpm bench:witness [--entries 10000,1000000] [--logs 500] [--runs 3] [--json]
 */
import { createHash } from 'node:crypto';
import { appendFile, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cosignerFromSeed } from '@offchannel/core';
import { SnapshotKey } from '../../packages/cli/src/witness/witness-snapshot.ts';
import { WitnessState, originId } from '../../packages/cli/src/witness/witness-state.ts';

const KEY = SnapshotKey.fromCosigner(cosignerFromSeed('bench.example/witness', new Uint8Array(32).fill(5)));

const { values } = parseArgs({
  options: {
    entries: { type: 'string', default: '10000,1000000' },
    logs: { type: 'string', default: '500' },
    runs: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const LOGS = Number(values.logs);
const gc = (globalThis as { gc?: () => void }).gc;

const ids = Array.from({ length: LOGS }, (_, log) => originId(`bench.example/offchannel/s${log}`));
const line = (log: number, size: number): string => `${ids[log] ?? ''} ${size} ${createHash('sha256').update(`${log}:${size}`).digest('base64')}\n`;

/** Writes `entries` lines over LOGS logs; returns each log's size. */
async function writeJournal(file: string, entries: number, sizes: number[]): Promise<void> {
  const handle = await open(file, 'w', 0o600);
  try {
    for (let start = 0; start < entries; start += 20_000) {
      let text = '';
      for (let entry = start; entry < Math.min(entries, start + 20_000); entry++) {
        const log = entry % LOGS;
        sizes[log] = (sizes[log] ?? 0) + 1;
        text += line(log, sizes[log]);
      }
      await handle.write(text);
    }
  } finally {
    await handle.close();
  }
}

interface Measurement {
  readonly ms: number;
  readonly bytesRead: number;
  readonly heapMiB: number;
}

async function measure(dir: string): Promise<Measurement> {
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const started = performance.now();
  const state = await WitnessState.open(dir, { key: KEY });
  const ms = performance.now() - started;
  gc?.();
  const heapMiB = (process.memoryUsage().heapUsed - before) / 2 ** 20;
  const bytesRead = state.startup.journalBytesRead;
  if (state.logCount !== LOGS) throw new Error(`expected ${LOGS} logs, found ${state.logCount}`);
  state.close();
  return { ms, bytesRead, heapMiB };
}

const best = (runs: Measurement[]): Measurement => runs.reduce((a, b) => (b.ms < a.ms ? b : a));
const results = [];
for (const entries of values.entries.split(',').map(Number)) {
  const full: Measurement[] = [];
  const snapshot: Measurement[] = [];
  for (let run = 0; run < Number(values.runs); run++) {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-witness-bench-'));
    try {
      const sizes: number[] = [];
      await writeJournal(path.join(dir, 'journal'), entries, sizes);
      full.push(await measure(dir));
      let tail = '';
      for (let entry = 0; entry < 100; entry++) {
        const log = entry % LOGS;
        sizes[log] = (sizes[log] ?? 0) + 1;
        tail += line(log, sizes[log]);
      }
      await appendFile(path.join(dir, 'journal'), tail);
      snapshot.push(await measure(dir));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  results.push({ entries, logs: LOGS, full: best(full), snapshot: best(snapshot) });
}
if (values.json) {
  console.log(JSON.stringify(results, null, 2));
} else {
  for (const { entries, full, snapshot } of results) {
    const row = (name: string, m: Measurement): string => `  ${name.padEnd(9)} ${m.ms.toFixed(1).padStart(9)} ms ${String(m.bytesRead).padStart(11)} bytes read ${m.heapMiB.toFixed(2).padStart(7)} MiB heap kept`;
    console.log(`${entries.toLocaleString('en')} journal lines, ${LOGS} logs (best of ${values.runs})\n${row('full', full)}\n${row('snapshot', snapshot)}`);
  }
  const [small, large] = results;
  if (small && large) {
    console.log(`ratio ${large.entries / small.entries}× the journal: full read ${(large.full.ms / small.full.ms).toFixed(1)}×, start from the snapshot ${(large.snapshot.ms / small.snapshot.ms).toFixed(2)}× (shared machine: compare ratios, not times)`);
  }
}
