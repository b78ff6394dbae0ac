/**
 * bench/verify — how fast an auditor can verify an archive, and how fast a proof is made.
 *
 * Builds (or reuses) a file-system archive of N records (default 1,000,000; 1 KiB text each)
 * captured through the Recorder with signed checkpoints, then, in one process:
 *   sha256      node:crypto SHA-256 of every record line, read from the same segment files,
 *               on ONE thread (the main thread)
 *   verify      full verifyArchive with the verifier key (canonical form, schema, chain,
 *               recomputed Merkle roots against every signed checkpoint, tiles, audit), as
 *               `offchannel verify` runs it: its worker threads (2 by default) plus the main
 *               thread. The ratio "verify / per-record sha256" therefore compares a parallel
 *               verify with a one-thread hash; the output says how many threads and cores, and
 *               also gives the CPU time each took (verify's summed over its threads), which
 *               does not depend on the core count or on other load on the machine.
 *   prove       buildRecordProof for random records against the newest checkpoint
 *   incremental 10,000 more records captured (and checkpointed) after the full verify, then
 *               verifyArchive with `since` = the state the full verify saved (verify --since):
 *               time as a ratio to the full verify (target ≤ 0.05)
 *
 * Usage: pnpm bench:verify [--records N] [--archive <dir>] [--workers N] [--json]
 *   --workers sets verify's worker threads (default: one per CPU, as `offchannel verify`).
 *   --archive reuses an archive built by an earlier run (its key is <dir>.key).
 */
import { hash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Recorder, buildRecordProof, generateEd25519NoteKey, parseSignerKey, readVerifiedState, verifiedStateOf, verifyArchive, verifyRecordProof } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { BENCH_SOURCE, benchInput, captureBenchRecords } from '../shared/bench-input.ts';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    archive: { type: 'string' },
    workers: { type: 'string' },
    proofs: { type: 'string', default: '25' },
    more: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const RECORDS = Number(values.records);
const stream = 'bench:alice';

async function build(dir: string, keyFile: string): Promise<void> {
  const key = generateEd25519NoteKey('bench.offchannel.example/archive');
  await writeFile(keyFile, `${key.signerKeyText()}\n`, { mode: 0o600 });
  const sink = await openFsSink({ dir });
  const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 100_000, everyMs: 3_600_000 } });
  const writer = recorder.writer({ channel: 'bench', account: 'alice', source: BENCH_SOURCE });
  await captureBenchRecords(writer, RECORDS, 4096);
  await recorder.close();
  await sink.close();
}

/** Captures `count` more records into the archive, with checkpoints, as a capture host would. */
async function append(dir: string, key: ReturnType<typeof parseSignerKey>, from: number, count: number): Promise<void> {
  const sink = await openFsSink({ dir });
  const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 100_000, everyMs: 3_600_000 } });
  const writer = recorder.writer({ channel: 'bench', account: 'alice', source: BENCH_SOURCE });
  const pending = [];
  for (let index = from; index < from + count; index++) pending.push(writer.capture(benchInput(index)));
  await Promise.all(pending);
  await recorder.close();
  await sink.close();
}

function cpuSeconds(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1e6;
}

async function segmentFiles(dir: string): Promise<string[]> {
  const streamDir = path.join(dir, 'streams', stream);
  return (await readdir(streamDir)).filter((name) => name.endsWith('.jsonl')).sort().map((name) => path.join(streamDir, name));
}

async function main(): Promise<void> {
  const work = values.archive === undefined ? await mkdtemp(path.join(tmpdir(), 'offchannel-bench-verify-')) : undefined;
  const dir = values.archive ?? path.join(work as string, 'archive');
  const keyFile = `${dir}.key`;
  const results: Record<string, unknown> = { node: process.version };
  try {
    if (!existsSync(keyFile)) {
      const t0 = performance.now();
      await build(dir, keyFile);
      results.buildSeconds = (performance.now() - t0) / 1000;
    }
    const key = parseSignerKey(await readFile(keyFile, 'utf8'));

    // Baseline: SHA-256 of every record line, read from the same files (warm page cache for both).
    let bytes = 0;
    let lines = 0;
    let cpu0 = process.cpuUsage();
    let t0 = performance.now();
    for (const file of await segmentFiles(dir)) {
      const content = await readFile(file);
      bytes += content.length;
      for (let start = 0, end = content.indexOf(0x0a); end !== -1; start = end + 1, end = content.indexOf(0x0a, start)) {
        hash('sha256', content.subarray(start, end));
        lines++;
      }
    }
    const shaSeconds = (performance.now() - t0) / 1000;
    const shaCpuSeconds = cpuSeconds(process.cpuUsage(cpu0));
    // The same bytes hashed in 1 MiB chunks: the raw streaming speed of node:crypto here.
    t0 = performance.now();
    for (const file of await segmentFiles(dir)) {
      const handle = await open(file, 'r');
      const chunk = Buffer.allocUnsafe(1024 * 1024);
      for (let read = await handle.read(chunk, 0, chunk.length, null); read.bytesRead > 0; read = await handle.read(chunk, 0, chunk.length, null)) hash('sha256', chunk.subarray(0, read.bytesRead));
      await handle.close();
    }
    const streamSeconds = (performance.now() - t0) / 1000;

    const sink = await openFsSink({ dir, readOnly: true });
    cpu0 = process.cpuUsage();
    t0 = performance.now();
    const report = await verifyArchive(sink, { verifiers: [key.verifier], ...(values.workers === undefined ? {} : { workers: Number(values.workers) }) });
    const verifySeconds = (performance.now() - t0) / 1000;
    const verifyCpuSeconds = cpuSeconds(process.cpuUsage(cpu0));
    if (!report.ok) throw new Error(`verification failed: ${report.failures[0]?.message ?? ''}`);

    const timings: number[] = [];
    let proofHashes = 0;
    for (let probe = 0; probe < Number(values.proofs); probe++) {
      const seq = 1 + Math.floor(Math.random() * lines);
      const started = performance.now();
      const proof = await buildRecordProof(sink, stream, seq);
      timings.push(performance.now() - started);
      proofHashes = proof.inclusion.length;
      verifyRecordProof(proof, [key.verifier]);
    }
    await sink.close();
    timings.sort((a, b) => a - b);

    // The auditor's next visit: 10,000 more records (a copy of the archive, so a reused one stays as built).
    const grown = `${dir}.grown`;
    await rm(grown, { recursive: true, force: true });
    await cp(dir, grown, { recursive: true });
    const saved = readVerifiedState(verifiedStateOf(report, new Date(0)));
    const more = values.more === undefined ? 10_000 : Number(values.more);
    await append(grown, key, lines, more);
    const grownSink = await openFsSink({ dir: grown, readOnly: true });
    t0 = performance.now();
    const incremental = await verifyArchive(grownSink, { verifiers: [key.verifier], since: saved });
    const incrementalSeconds = (performance.now() - t0) / 1000;
    await grownSink.close();
    await rm(grown, { recursive: true, force: true });
    if (!incremental.ok) throw new Error(`incremental verification failed: ${incremental.failures[0]?.message ?? ''}`);

    const mb = bytes / 1024 / 1024;
    Object.assign(results, {
      records: lines,
      megabytes: mb,
      checkpoints: report.streams[0]?.checkpoints?.length,
      sha256: { threads: 1, seconds: shaSeconds, cpuSeconds: shaCpuSeconds, megabytesPerSecond: mb / shaSeconds, recordsPerSecond: lines / shaSeconds },
      sha256Streaming: { seconds: streamSeconds, megabytesPerSecond: mb / streamSeconds },
      verify: { workers: report.streams[0]?.workers ?? 0, cores: availableParallelism(), seconds: verifySeconds, cpuSeconds: verifyCpuSeconds, megabytesPerSecond: mb / verifySeconds, recordsPerSecond: lines / verifySeconds },
      verifyVsSha256: shaSeconds / verifySeconds,
      verifyCpuVsSha256Cpu: verifyCpuSeconds / shaCpuSeconds,
      verifyVsSha256Streaming: streamSeconds / verifySeconds,
      incremental: { records: more, seconds: incrementalSeconds, vsFullVerify: incrementalSeconds / verifySeconds, memoryMiB: process.memoryUsage().rss / 1024 / 1024 },
      prove: { firstMs: timings.length ? (timings.at(0) ?? 0) : 0, medianMs: timings[Math.floor(timings.length / 2)], maxMs: timings.at(-1), hashes: proofHashes },
    });
    if (values.json) {
      console.log(JSON.stringify(results, null, 2));
      return;
    }
    const r = results as { verify: { megabytesPerSecond: number; recordsPerSecond: number; seconds: number; workers: number; cores: number; cpuSeconds: number }; sha256: { megabytesPerSecond: number; recordsPerSecond: number; cpuSeconds: number }; sha256Streaming: { megabytesPerSecond: number }; prove: { medianMs: number; maxMs: number; hashes: number } };
    console.log(`bench/verify — Node ${process.version}, ${lines.toLocaleString('en-US')} records, ${mb.toFixed(0)} MiB, ${String(results.checkpoints)} checkpoints`);
    console.log(`  sha256 per record line      ${r.sha256.megabytesPerSecond.toFixed(0)} MiB/s  ${Math.round(r.sha256.recordsPerSecond).toLocaleString('en-US')} records/s  (1 thread, ${r.sha256.cpuSeconds.toFixed(1)} CPU-s)`);
    console.log(`  sha256 streaming (1 MiB)    ${r.sha256Streaming.megabytesPerSecond.toFixed(0)} MiB/s`);
    console.log(`  full verify --key           ${r.verify.megabytesPerSecond.toFixed(0)} MiB/s  ${Math.round(r.verify.recordsPerSecond).toLocaleString('en-US')} records/s  (${r.verify.seconds.toFixed(1)} s)`);
    console.log(`      ${r.verify.workers} worker threads + main on ${r.verify.cores} cores, ${r.verify.cpuSeconds.toFixed(1)} CPU-s = ${(results.verifyCpuVsSha256Cpu as number).toFixed(1)}× the per-record sha256's CPU`);
    console.log(`      = ${(100 * (results.verifyVsSha256 as number)).toFixed(0)}% of per-record sha256 (wall time), ${(100 * (results.verifyVsSha256Streaming as number)).toFixed(0)}% of streaming sha256`);
    const inc = results.incremental as { records: number; seconds: number; vsFullVerify: number };
    console.log(`  incremental verify --since  ${inc.records.toLocaleString('en-US')} new records in ${inc.seconds.toFixed(2)} s = ${inc.vsFullVerify.toFixed(3)} of the full verify (target ≤ 0.05)`);
    console.log(`  prove one record            median ${r.prove.medianMs.toFixed(1)} ms, max ${r.prove.maxMs.toFixed(1)} ms (${r.prove.hashes} hashes)`);
  } finally {
    if (work) await rm(work, { recursive: true, force: true });
  }
}

await main();
