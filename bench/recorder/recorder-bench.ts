/**
 * bench/recorder — what group commit buys, measured in one process on one disk.
 *
 * For 1 KiB text records, side by side:
 *   sha256      raw SHA-256 over 1 KiB buffers (the hashing ceiling)
 *   ceiling     build record + RFC 8785 canonicalize + SHA-256, no I/O (the CPU ceiling)
 *   naive       canonicalize + hash + write one line + fdatasync, per record (one fsync each)
 *   recorder    Recorder + FsSink with real fdatasync, hundreds in flight (sustained)
 *   offered     Recorder + FsSink at a fixed offered load (default 1,000 records/s): latency
 *
 * Usage: pnpm bench [--records N] [--rate R] [--seconds S] [--json]
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Recorder, ZERO_HASH, canonicalBytes, generateEd25519NoteKey, openKeyIndex, sha256Hex } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { BENCH_SOURCE, benchInput, naiveRecord, percentile } from '../shared/bench-input.ts';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '200000' },
    naive: { type: 'string', default: '5000' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '5' },
    inflight: { type: 'string', default: '4096' },
    json: { type: 'boolean', default: false },
  },
});
const RECORDS = Number(values.records);
const NAIVE = Number(values.naive);
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const INFLIGHT = Number(values.inflight);

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(tmpdir(), 'offchannel-bench-'));
  const results: Record<string, unknown> = { node: process.version, records: RECORDS, recordBytes: canonicalBytes(naiveRecord(0, ZERO_HASH, 'alice')).length };
  try {
    // sha256 baseline
    const buffer = Buffer.alloc(1024, 7);
    let t0 = performance.now();
    for (let index = 0; index < RECORDS; index++) createHash('sha256').update(buffer).digest();
    const sha256PerSecond = RECORDS / ((performance.now() - t0) / 1000);

    // ceiling: canonicalize + hash, chained, no I/O
    let prev = ZERO_HASH;
    t0 = performance.now();
    for (let index = 0; index < RECORDS; index++) prev = sha256Hex(canonicalBytes(naiveRecord(index, prev, 'alice')));
    const ceilingPerSecond = RECORDS / ((performance.now() - t0) / 1000);

    // naive: one fdatasync per record
    const naiveFile = path.join(work, 'naive.jsonl');
    const handle = await open(naiveFile, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, 0o644);
    prev = ZERO_HASH;
    const newline = Buffer.from('\n');
    t0 = performance.now();
    for (let index = 0; index < NAIVE; index++) {
      const bytes = canonicalBytes(naiveRecord(index, prev, 'alice'));
      prev = sha256Hex(bytes);
      await handle.write(Buffer.concat([bytes, newline]));
      await handle.datasync();
    }
    const naivePerSecond = NAIVE / ((performance.now() - t0) / 1000);
    await handle.close();

    // recorder: sustained, INFLIGHT captures in flight — the default (keys in memory), with
    // signed checkpoints, and with the persistent key index `offchannel capture` uses
    for (const mode of ['sustained', 'sustainedSigned', 'sustainedKeyIndex'] as const) {
      const signed = mode === 'sustainedSigned';
      const keyIndex = mode === 'sustainedKeyIndex' ? openKeyIndex({ file: path.join(work, 'state', 'key-index.sqlite') }) : undefined;
      const sink = await openFsSink({ dir: path.join(work, mode) });
      const recorder = new Recorder({ sink, ...(keyIndex ? { keyIndex } : {}), ...(signed ? { checkpoints: { signer: generateEd25519NoteKey('bench.example/archive'), everyRecords: 1000 } } : {}) });
      const writer = recorder.writer({ channel: 'bench', account: 'alice', source: BENCH_SOURCE });
      await writer.capture(benchInput(-1)); // open the stream (lock, head) outside the timing
      const latencies = new Float64Array(RECORDS);
      let next = 0;
      let done = 0;
      t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        const launch = (): void => {
          while (next < RECORDS && next - done < INFLIGHT) {
            const index = next++;
            const started = performance.now();
            writer.capture(benchInput(index)).then(
              () => {
                latencies[index] = performance.now() - started;
                done++;
                if (done === RECORDS) resolve();
                else launch();
              },
              reject,
            );
          }
        };
        launch();
      });
      const seconds = (performance.now() - t0) / 1000;
      latencies.sort();
      results[mode] = { recordsPerSecond: RECORDS / seconds, p50ms: percentile(latencies, 50), p99ms: percentile(latencies, 99), inflight: INFLIGHT };
      await recorder.close();
      await sink.close();
      keyIndex?.close();
    }

    // offered load: open loop at RATE records/s
    {
      const sink = await openFsSink({ dir: path.join(work, 'offered') });
      const writer = new Recorder({ sink }).writer({ channel: 'bench', account: 'alice', source: BENCH_SOURCE });
      await writer.capture(benchInput(-1));
      const total = RATE * SECONDS;
      const latencies = new Float64Array(total);
      const pending: Promise<unknown>[] = [];
      t0 = performance.now();
      for (let index = 0; index < total; index++) {
        const due = t0 + (index * 1000) / RATE;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
        const started = performance.now();
        pending.push(writer.capture(benchInput(index)).then(() => (latencies[index] = performance.now() - started)));
      }
      await Promise.all(pending);
      const achieved = total / ((performance.now() - t0) / 1000);
      latencies.sort();
      results.offered = { offeredPerSecond: RATE, achievedPerSecond: achieved, p50ms: percentile(latencies, 50), p99ms: percentile(latencies, 99), maxMs: latencies[total - 1] };
      await sink.close();
    }

    const sustained = results.sustained as { recordsPerSecond: number; p50ms: number; p99ms: number };
    const offered = results.offered as { p50ms: number; p99ms: number; maxMs: number; achievedPerSecond: number };
    Object.assign(results, {
      sha256PerSecond,
      ceilingPerSecond,
      naivePerSecond,
      ratios: {
        recorderVsNaive: sustained.recordsPerSecond / naivePerSecond,
        recorderVsCeiling: sustained.recordsPerSecond / ceilingPerSecond,
        ceilingVsSha256: ceilingPerSecond / sha256PerSecond,
      },
    });
    if (values.json) {
      console.log(JSON.stringify(results, null, 2));
      return;
    }
    const rate = (value: number): string => `${Math.round(value).toLocaleString('en-US')} records/s`;
    console.log(`bench/recorder — Node ${process.version}, ${String(results.recordBytes)}-byte canonical records (1 KiB text)`);
    console.log(`  sha256 over 1 KiB          ${rate(sha256PerSecond)}`);
    console.log(`  ceiling (canonical+sha256) ${rate(ceilingPerSecond)}   (${(ceilingPerSecond / sha256PerSecond).toFixed(2)}× sha256)`);
    console.log(`  naive (fsync per record)   ${rate(naivePerSecond)}`);
    console.log(`  recorder + fs sink         ${rate(sustained.recordsPerSecond)}   p50 ${sustained.p50ms.toFixed(2)} ms, p99 ${sustained.p99ms.toFixed(2)} ms at ${INFLIGHT} in flight`);
    console.log(`      = ${(sustained.recordsPerSecond / naivePerSecond).toFixed(1)}× naive, ${((100 * sustained.recordsPerSecond) / ceilingPerSecond).toFixed(0)}% of ceiling`);
    const signed = results.sustainedSigned as { recordsPerSecond: number; p50ms: number; p99ms: number };
    console.log(`  … with signed checkpoints   ${rate(signed.recordsPerSecond)}   p50 ${signed.p50ms.toFixed(2)} ms, p99 ${signed.p99ms.toFixed(2)} ms (tiles + a checkpoint every 1,000 records)`);
    const indexed = results.sustainedKeyIndex as { recordsPerSecond: number; p50ms: number; p99ms: number };
    console.log(`  … with a persistent key index ${rate(indexed.recordsPerSecond)}   p50 ${indexed.p50ms.toFixed(2)} ms, p99 ${indexed.p99ms.toFixed(2)} ms (SQLite, as offchannel capture runs; ${((100 * indexed.recordsPerSecond) / ceilingPerSecond).toFixed(0)}% of ceiling)`);
    console.log(`  offered ${RATE.toLocaleString('en-US')} records/s for ${SECONDS} s   p50 ${offered.p50ms.toFixed(2)} ms, p99 ${offered.p99ms.toFixed(2)} ms, max ${offered.maxMs.toFixed(2)} ms (achieved ${Math.round(offered.achievedPerSecond)}/s)`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
