/**
 * bench/startup/archive-log — what it costs a capture host to reopen its archive log.
 *
 * For each size N (default 10,000 and 1,000,000 entries), writes an archive log of N entries
 * straight as tiles (synthetic stream-checkpoint leaves, 2,000 streams in the index) into a
 * file-system archive, signs its checkpoint, and records an archive log index valid for it.
 * Then opens the ArchiveLog:
 *   indexed   with the index: the right edge restored from the newest checkpoint's tiles
 *   scan      without it (the fallback, and a rebuild): every level-0 tile read
 * and prints the open time, the archive log's tile reads, the heap the open keeps (heapUsed
 * plus array buffers, after a GC, before and after; run with --expose-gc, as the package script does) and the peak
 * heap during the open (sampled between tile reads), which a rebuild must keep bounded.
 *
 * Usage: pnpm bench:archive-log [--entries 10000,1000000] [--runs 3] [--json]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ARCHIVE_LOG, ArchiveLog, CompactRange, type Sink, TileBuilder, formatCheckpoint, generateEd25519NoteKey, leafHash, openArchiveLogIndex, signNote } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';

const { values } = parseArgs({
  options: {
    entries: { type: 'string', default: '10000,1000000' },
    runs: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});

const STREAMS = 2000;
const silent = { error() {}, warn() {}, info() {}, debug() {}, child: () => silent };
const gc = (globalThis as { gc?: () => void }).gc;

interface Measurement {
  readonly ms: number;
  readonly tileReads: number;
  readonly heapMiB: number;
  readonly peakMiB: number;
}

async function build(dir: string, entries: number, key: ReturnType<typeof generateEd25519NoteKey>): Promise<void> {
  const sink = await openFsSink({ dir: path.join(dir, 'archive') });
  const compact = new CompactRange();
  const tiles = new TileBuilder();
  const encoder = new TextEncoder();
  for (let index = 0; index < entries; index++) {
    const leaf = leafHash(encoder.encode(`bench stream ${index % STREAMS} checkpoint ${index}`));
    compact.append(leaf);
    for (const tile of tiles.append(leaf)) await sink.putTile(ARCHIVE_LOG, tile, tile.bytes);
  }
  for (const tile of tiles.partialTiles()) await sink.putTile(ARCHIVE_LOG, tile, tile.bytes);
  const root = compact.root();
  await sink.putCheckpoint(ARCHIVE_LOG, entries, 'note', encoder.encode(signNote(formatCheckpoint({ origin: key.name, size: entries, root }), [key])));
  await sink.close();
  const index = openArchiveLogIndex({ file: path.join(dir, 'state', 'archive-log-index.sqlite') });
  const streams = new Map(Array.from({ length: STREAMS }, (_, stream) => [`bench:s${stream}`, entries]));
  index.record(ARCHIVE_LOG, { size: entries, root: Buffer.from(root).toString('hex') }, streams, true);
  index.close();
}

async function measure(dir: string, key: ReturnType<typeof generateEd25519NoteKey>, indexed: boolean): Promise<Measurement> {
  const sink = await openFsSink({ dir: path.join(dir, 'archive') });
  let tileReads = 0;
  const counted = new Proxy(sink, {
    get(target, property, receiver) {
      if (property === 'getTile') {
        return (...args: Parameters<Sink['getTile']>) => {
          if (args[0] === ARCHIVE_LOG) tileReads++;
          return target.getTile(...args);
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  const index = indexed ? openArchiveLogIndex({ file: path.join(dir, 'state', 'archive-log-index.sqlite') }) : undefined;
  gc?.();
  const before = held();
  // The open awaits each tile read, so a sampler sees the heap between them: its peak is what
  // the open held at once (garbage included), which is what a rebuild must keep bounded.
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, held());
  }, 2);
  const started = performance.now();
  const archiveLog = await ArchiveLog.open({ sink: counted, signer: key, logger: silent, everyMs: 3_600_000, ...(index ? { index } : {}) });
  const ms = performance.now() - started;
  clearInterval(sampler);
  peak = Math.max(peak, held());
  const peakMiB = (peak - before) / 2 ** 20;
  // Twice: array buffers are freed after the collection that finds them unreachable.
  gc?.();
  gc?.();
  const heapMiB = (held() - before) / 2 ** 20;
  if (archiveLog.refused !== undefined || archiveLog.signedSize === 0) throw new Error(`archive log not restored: ${archiveLog.refused ?? 'nothing signed'}`);
  // No close(): it would sign; the schedule is unref'd.
  index?.close();
  await sink.close();
  return { ms, tileReads, heapMiB, peakMiB };
}

/** JS heap plus array-buffer backing stores (tiles and flat arrays live outside the heap). */
const held = (): number => {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
};

const best = (runs: Measurement[]): Measurement => runs.reduce((a, b) => (b.ms < a.ms ? b : a));

async function main(): Promise<void> {
  if (!gc) console.warn('run with node --expose-gc for heap figures (pnpm bench:archive-log does)');
  const sizes = values.entries.split(',').map(Number);
  const runs = Number(values.runs);
  const key = generateEd25519NoteKey('bench.offchannel.example/archive');
  const results = [];
  for (const entries of sizes) {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-archive-log-bench-'));
    try {
      const started = performance.now();
      await build(dir, entries, key);
      const buildSeconds = (performance.now() - started) / 1000;
      const indexed: Measurement[] = [];
      const scan: Measurement[] = [];
      for (let run = 0; run < runs; run++) {
        indexed.push(await measure(dir, key, true));
        scan.push(await measure(dir, key, false));
      }
      results.push({ entries, buildSeconds, indexed: best(indexed), scan: best(scan) });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  if (values.json) {
    console.log(JSON.stringify({ node: process.version, runs, results }, null, 2));
    return;
  }
  console.log(`archive log open, best of ${runs}, node ${process.version}`);
  for (const row of results) {
    console.log(`  ${row.entries.toLocaleString('en')} entries (built in ${row.buildSeconds.toFixed(1)} s)`);
    for (const mode of ['indexed', 'scan'] as const) {
      const m = row[mode];
      console.log(`    ${mode.padEnd(8)} ${m.ms.toFixed(1).padStart(8)} ms ${String(m.tileReads).padStart(6)} tile reads ${m.heapMiB.toFixed(2).padStart(8)} MiB heap kept, ${m.peakMiB.toFixed(1).padStart(7)} MiB peak during open`);
    }
  }
}

await main();
