/**
 * bench/recorder — main-thread CPU per record, for A/B comparisons on a busy machine.
 *
 * Wall-clock rates swing with whatever else runs; the CPU time of this thread per record
 * (`process.threadCpuUsage`) swings much less. Prints, in one process: the ceiling (build +
 * RFC 8785 canonicalize + SHA-256, as `pnpm bench` times it) and the Recorder with the fs sink
 * (real fdatasync, 4,096 captures in flight), each as µs of main-thread CPU per record, and
 * their ratio. Run old and new code alternately (a `git worktree` of each) and compare ratios.
 *
 * `--key-index` runs the Recorder with the persistent SQLite key index `offchannel capture` uses
 * (`openKeyIndex`) instead of the default in-memory one.
 *
 * Usage: node --conditions=@offchannel/source bench/recorder/recorder-cpu.ts [--records N] [--key-index]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Recorder, ZERO_HASH, canonicalBytes, openKeyIndex, sha256Hex } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { BENCH_SOURCE, benchInput, captureBenchRecords, naiveRecord } from '../shared/bench-input.ts';

const { values } = parseArgs({ options: { records: { type: 'string', default: '200000' }, 'key-index': { type: 'boolean', default: false } } });
const RECORDS = Number(values.records);
const INFLIGHT = 4096;

/** Milliseconds of CPU this thread has used. */
function cpu(): number {
  const usage = process.threadCpuUsage();
  return (usage.user + usage.system) / 1000;
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(tmpdir(), 'offchannel-bench-cpu-'));
  try {
    let prev = ZERO_HASH;
    let started = cpu();
    for (let index = 0; index < RECORDS; index++) prev = sha256Hex(canonicalBytes(naiveRecord(index, prev, 'alice')));
    const ceiling = ((cpu() - started) / RECORDS) * 1000;

    const sink = await openFsSink({ dir: path.join(work, 'sustained') });
    const keyIndex = values['key-index'] ? openKeyIndex({ file: path.join(work, 'state', 'key-index.sqlite') }) : undefined;
    const recorder = new Recorder({ sink, ...(keyIndex ? { keyIndex } : {}) });
    const writer = recorder.writer({ channel: 'bench', account: 'alice', source: BENCH_SOURCE });
    await writer.capture(benchInput(-1)); // open the stream outside the timing
    started = cpu();
    await captureBenchRecords(writer, RECORDS, INFLIGHT);
    const recorded = ((cpu() - started) / RECORDS) * 1000;
    await recorder.close();
    await sink.close();
    keyIndex?.close();
    console.log(JSON.stringify({ node: process.version, records: RECORDS, keyIndex: keyIndex ? 'sqlite' : 'memory', ceilingCpuMicros: +ceiling.toFixed(3), recorderCpuMicros: +recorded.toFixed(3), recorderOverCeiling: +(recorded / ceiling).toFixed(3) }));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
