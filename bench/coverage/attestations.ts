/**
 * bench/coverage/attestations — the cost of host attestations for an idle capture host.
 *
 * Builds a file-system archive of S streams (default 1,000; 3 records each, signed checkpoints),
 * then simulates one day of attestations with an injected clock: N intervals (default 288, one
 * every 5 minutes), each one signed note for all S streams at their current Merkle heads, while a
 * few streams (default 10 per interval) receive one message each. Reports:
 *   objects, bytes        added under attestations/ (and per interval, per stream line)
 *   write                 time to sign and store all attestations (ms per interval)
 *   read                  readAttestations over the day with the verifier key (what coverage reads)
 *   verify                verifyArchive --key of the whole archive, with and without its
 *                         attestations/ directory (the difference is the attestation check)
 *
 * Usage: pnpm bench:attest [--streams S] [--intervals N] [--active A] [--json]
 */
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { HostAttestor, Recorder, generateEd25519NoteKey, readAttestations, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { BENCH_SOURCE, benchInput } from '../shared/bench-input.ts';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '1000' },
    intervals: { type: 'string', default: '288' },
    active: { type: 'string', default: '10' },
    json: { type: 'boolean', default: false },
  },
});
const STREAMS = Number(values.streams);
const INTERVALS = Number(values.intervals);
const ACTIVE = Number(values.active);
const T0 = Date.parse('2026-11-21T00:00:00Z');
const EVERY_MS = 300_000;

async function sizeOf(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    files++;
    bytes += (await stat(path.join(entry.parentPath, entry.name))).size;
  }
  return { files, bytes };
}

const work = await mkdtemp(path.join(tmpdir(), 'offchannel-bench-attest-'));
try {
  const dir = path.join(work, 'archive');
  const key = generateEd25519NoteKey('bench.offchannel.example/archive');
  const sink = await openFsSink({ dir });
  let now = T0;
  const clock = (): Date => new Date(now);
  const recorder = new Recorder({ sink, clock, checkpoints: { signer: key, everyRecords: 1_000_000, everyMs: 86_400_000 } });
  const writers = Array.from({ length: STREAMS }, (_, index) => recorder.writer({ channel: 'bench', account: `custodian-${String(index).padStart(5, '0')}`, source: BENCH_SOURCE }));
  let message = 0;
  for (const writer of writers) for (let index = 0; index < 3; index++) await writer.capture(benchInput(message++));
  await recorder.checkpoint();

  const attestor = await HostAttestor.open({ sink, host: 'bench-host', signer: key, clock });
  const writeTimes: number[] = [];
  for (let interval = 0; interval < INTERVALS; interval++) {
    for (let index = 0; index < ACTIVE; index++) await (writers[(interval * ACTIVE + index) % STREAMS] as (typeof writers)[0]).capture(benchInput(message++));
    const t0 = performance.now();
    const lines = recorder.merkleHeads().map((head) => ({ stream: head.stream, size: head.size, root: Buffer.from(head.root).toString('base64'), state: 'connected' }));
    await attestor.attest(lines);
    writeTimes.push(performance.now() - t0);
    now += EVERY_MS;
  }
  await recorder.close();
  await sink.close();
  const added = await sizeOf(path.join(dir, 'attestations'));

  const reader = await openFsSink({ dir, readOnly: true });
  let t = performance.now();
  let read = 0;
  for await (const attestation of readAttestations(reader, { verifier: key.verifier })) read += attestation.streams.length > 0 ? 1 : 0;
  const readMs = performance.now() - t;
  t = performance.now();
  const report = await verifyArchive(reader, { verifiers: [key.verifier] });
  const verifyMs = performance.now() - t;
  await reader.close();
  if (!report.ok) throw new Error(`verify failed: ${report.failures[0]?.message ?? ''}`);
  await rename(path.join(dir, 'attestations'), path.join(work, 'attestations-aside'));
  const bare = await openFsSink({ dir, readOnly: true });
  t = performance.now();
  const baseline = await verifyArchive(bare, { verifiers: [key.verifier] });
  const baselineMs = performance.now() - t;
  await bare.close();
  if (!baseline.ok) throw new Error('baseline verify failed');

  const total = writeTimes.reduce((sum, ms) => sum + ms, 0);
  const result = {
    streams: STREAMS,
    intervals: INTERVALS,
    records: message,
    objects: added.files,
    bytes: added.bytes,
    bytesPerInterval: Math.round(added.bytes / INTERVALS),
    bytesPerStreamLine: Math.round(added.bytes / INTERVALS / STREAMS),
    writeMsTotal: Math.round(total),
    writeMsPerInterval: Number((total / INTERVALS).toFixed(2)),
    readMs: Math.round(readMs),
    attestationsRead: read,
    verifyMs: Math.round(verifyMs),
    verifyWithoutAttestationsMs: Math.round(baselineMs),
    verifyRatio: Number((verifyMs / baselineMs).toFixed(2)),
  };
  if (values.json) console.log(JSON.stringify(result));
  else {
    console.log(`attestations: ${STREAMS} streams × ${INTERVALS} intervals (5 min, injected clock), ${ACTIVE} streams active per interval`);
    console.log(`  added      ${result.objects} objects, ${(result.bytes / 1e6).toFixed(2)} MB (${result.bytesPerInterval} B per interval, ${result.bytesPerStreamLine} B per stream line)`);
    console.log(`  write      ${result.writeMsTotal} ms total, ${result.writeMsPerInterval} ms per interval`);
    console.log(`  read       ${result.readMs} ms for the day (readAttestations with the verifier key)`);
    console.log(`  verify     ${result.verifyMs} ms with attestations, ${result.verifyWithoutAttestationsMs} ms without (×${result.verifyRatio})`);
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
