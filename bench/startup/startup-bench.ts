/**
 * bench/startup — what it costs a capture host to reopen a stream with years of history.
 *
 * For each size N (default 10,000 and 1,000,000 records of 1 KiB text in one stream), builds a
 * file-system archive through the Recorder with signed checkpoints and a persistent key index,
 * as a capture host keeps them. Then, in a fresh child process per measurement:
 *   indexed   open the sink, the key index and a Recorder (checkpoints on), capture one new
 *             record: the design of today (reads only what the index and the newest checkpoint
 *             do not cover)
 *   baseline  the same with the keys in memory (the design before: every key re-indexed and
 *             the stream read back from its first record)
 * and prints time to the first durable capture and the child's peak RSS, with ratios between
 * sizes (target: the largest within 1.5× of the smallest, under 0.5 s and 128 MiB).
 *
 * Usage: pnpm bench:startup [--records 10000,1000000] [--runs 3] [--json]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Recorder, generateEd25519NoteKey, memoryKeyIndex, openKeyIndex, parseSignerKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { BENCH_SOURCE, benchInput, captureBenchRecords } from '../shared/bench-input.ts';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '10000,1000000' },
    runs: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    child: { type: 'string' },
  },
});

interface Measurement {
  readonly ms: number;
  readonly rssMiB: number;
}

async function build(dir: string, records: number): Promise<void> {
  const key = generateEd25519NoteKey('bench.offchannel.example/archive');
  await writeFile(path.join(dir, 'signing.key'), `${key.signerKeyText()}\n`, { mode: 0o600 });
  const sink = await openFsSink({ dir: path.join(dir, 'archive') });
  const keyIndex = openKeyIndex({ file: path.join(dir, 'state', 'key-index.sqlite') });
  const recorder = new Recorder({ sink, keyIndex, checkpoints: { signer: key, everyRecords: 100_000, everyMs: 3_600_000 } });
  const writer = recorder.writer({ channel: 'bench', account: 'alice', source: BENCH_SOURCE });
  await captureBenchRecords(writer, records, 4096);
  await recorder.close();
  keyIndex.close();
  await sink.close();
}

/** In the child: open everything and capture one new record; print time and peak RSS. */
async function child(spec: string): Promise<void> {
  const { dir, mode, index } = JSON.parse(spec) as { dir: string; mode: 'indexed' | 'baseline'; index: number };
  const signer = parseSignerKey(await readFile(path.join(dir, 'signing.key'), 'utf8'));
  const t0 = performance.now();
  const sink = await openFsSink({ dir: path.join(dir, 'archive') });
  const keyIndex = mode === 'indexed' ? openKeyIndex({ file: path.join(dir, 'state', 'key-index.sqlite') }) : memoryKeyIndex();
  const recorder = new Recorder({ sink, keyIndex, checkpoints: { signer, everyRecords: 100_000, everyMs: 3_600_000 } });
  const writer = recorder.writer({ channel: 'bench', account: 'alice', source: BENCH_SOURCE });
  const result = await writer.capture(benchInput(10_000_000 + index));
  const ms = performance.now() - t0;
  const replay = await writer.capture(benchInput(0));
  if (result.status !== 'recorded' || replay.status !== 'duplicate') throw new Error(`unexpected results ${result.status} / ${replay.status}`);
  const rssMiB = process.resourceUsage().maxRSS / 1024;
  await recorder.close();
  keyIndex.close();
  await sink.close();
  process.stdout.write(`${JSON.stringify({ ms, rssMiB })}\n`);
}

function measure(dir: string, mode: 'indexed' | 'baseline', index: number): Promise<Measurement> {
  return new Promise((resolve, reject) => {
    const script = path.join(import.meta.dirname, 'startup-bench.ts');
    const proc = spawn(process.execPath, [...process.execArgv, script, '--child', JSON.stringify({ dir, mode, index })], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    proc.once('error', reject);
    proc.once('exit', (code) => {
      if (code !== 0) reject(new Error(`startup child exited with ${code}`));
      else resolve(JSON.parse(out.trim()) as Measurement);
    });
  });
}

const best = (list: Measurement[]): Measurement => ({ ms: Math.min(...list.map((m) => m.ms)), rssMiB: Math.min(...list.map((m) => m.rssMiB)) });

async function main(): Promise<void> {
  const sizes = (values.records ?? '').split(',').map(Number);
  const runs = Number(values.runs);
  const results: Record<string, { records: number; buildSeconds: number; indexed: Measurement; baseline: Measurement }> = {};
  let counter = 0;
  for (const records of sizes) {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-bench-startup-'));
    try {
      const t0 = performance.now();
      await build(dir, records);
      const buildSeconds = (performance.now() - t0) / 1000;
      const indexed: Measurement[] = [];
      const baseline: Measurement[] = [];
      for (let run = 0; run < runs; run++) {
        indexed.push(await measure(dir, 'indexed', counter++));
        baseline.push(await measure(dir, 'baseline', counter++));
      }
      results[String(records)] = { records, buildSeconds, indexed: best(indexed), baseline: best(baseline) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const rows = Object.values(results);
  const small = rows[0];
  const large = rows.at(-1);
  const ratios = small && large ? {
    timeLargeOverSmall: large.indexed.ms / small.indexed.ms,
    rssLargeOverSmall: large.indexed.rssMiB / small.indexed.rssMiB,
    baselineOverIndexedAtLargest: large.baseline.ms / large.indexed.ms,
  } : {};
  if (values.json) {
    console.log(JSON.stringify({ node: process.version, runs, results, ratios }, null, 2));
    return;
  }
  console.log(`start-up (open + first capture), best of ${runs} fresh processes, node ${process.version}`);
  for (const row of rows) {
    console.log(`  ${row.records.toLocaleString('en')} records (built in ${row.buildSeconds.toFixed(1)} s)`);
    console.log(`    indexed   ${row.indexed.ms.toFixed(0).padStart(7)} ms  ${row.indexed.rssMiB.toFixed(0).padStart(5)} MiB peak RSS`);
    console.log(`    baseline  ${row.baseline.ms.toFixed(0).padStart(7)} ms  ${row.baseline.rssMiB.toFixed(0).padStart(5)} MiB peak RSS  (keys in memory, full read-back)`);
  }
  if (small && large && small !== large) {
    console.log(`  largest / smallest, indexed: time ${ratios.timeLargeOverSmall?.toFixed(2)}×, RSS ${ratios.rssLargeOverSmall?.toFixed(2)}× (target ≤ 1.5×)`);
    console.log(`  baseline / indexed at ${large.records.toLocaleString('en')}: ${ratios.baselineOverIndexedAtLargest?.toFixed(1)}× the time`);
  }
}

if (values.child !== undefined) await child(values.child);
else await main();
