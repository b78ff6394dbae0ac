/**
 * bench/s3 — records delivered into S3 Object Lock (a real Ceph RGW), batching versus one PUT
 * per record, in one process, and the end-to-end lag from capture to "locked in S3".
 *
 * For 1 KiB text records (≈1.4 KB canonical), side by side:
 *   sha256      raw SHA-256 over 1 KiB buffers (the hashing ceiling, for scale)
 *   naive       one locked PUT per record (COMPLIANCE retention + Content-MD5), each awaited
 *               before the next capture is acknowledged — per-message upload
 *   naive ×8    the same with 8 PUTs in flight (a more generous naive design)
 *   direct      Recorder → S3 sink: group commit, one PUT + one version listing per batch
 *   spool       Recorder → fs spool → Forwarder → S3 sink, signed checkpoints every 1,000
 *               records: records/s from the first capture until all are locked in S3
 *   lag         the spool path at a fixed offered load (100 and 1,000 records/s): time from
 *               capture() to the record's batch being locked in S3 (p50/p99/max)
 *
 * Starts a throwaway single-node Ceph (scripts/ceph/up.sh) unless OFFCHANNEL_S3_ENDPOINT is set
 * (then AWS credentials come from the environment as usual).
 *
 * Usage: pnpm bench:s3 [--records N] [--naive N] [--seconds S] [--json]
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Forwarder, Recorder, ZERO_HASH, canonicalBytes, generateEd25519NoteKey, sha256Hex } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { openS3Sink } from '@offchannel/sink-s3';
import { BENCH_SOURCE, benchInput, naiveRecord, percentile } from '../shared/bench-input.ts';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '100000' },
    naive: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '10' },
    inflight: { type: 'string', default: '4096' },
    json: { type: 'boolean', default: false },
  },
});
const RECORDS = Number(values.records);
const NAIVE = Number(values.naive);
const SECONDS = Number(values.seconds);
const INFLIGHT = Number(values.inflight);
const run = promisify(execFile);
const scripts = fileURLToPath(new URL('../../scripts/ceph/', import.meta.url));
const key = generateEd25519NoteKey('bench.example/archive');

async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const probe = createServer();
      probe.once('error', reject);
      probe.listen(0, '127.0.0.1', () => {
        const { port: chosen } = probe.address() as { port: number };
        probe.close(() => { resolve(chosen); });
      });
    });
    if (port + 10 < 65_536) return port;
  }
}

/** Starts Ceph unless an endpoint is given; returns the endpoint and a stop function. */

async function startStore(work: string): Promise<{ endpoint: string; stop: () => Promise<void> }> {
  if (process.env.OFFCHANNEL_S3_ENDPOINT) return { endpoint: process.env.OFFCHANNEL_S3_ENDPOINT, stop: async () => undefined };
  const runDir = path.join(work, 'ceph');
  await run('bash', [path.join(scripts, 'up.sh'), runDir, String(await freePort())], { maxBuffer: 16 * 1024 * 1024 });
  const env = Object.fromEntries((await readFile(path.join(runDir, 'env'), 'utf8')).trim().split('\n').map((line) => line.split('=', 2) as [string, string]));
  process.env.AWS_ACCESS_KEY_ID = env.AWS_ACCESS_KEY_ID;
  process.env.AWS_SECRET_ACCESS_KEY = env.AWS_SECRET_ACCESS_KEY;
  process.env.AWS_REGION ??= 'us-east-1';
  return { endpoint: env.OFFCHANNEL_S3_ENDPOINT as string, stop: async () => {
      await run('bash', [path.join(scripts, 'down.sh'), runDir]);
    },
  };
}

/** Runs `total` captures with up to `inflight` outstanding; resolves with records/s. */

async function sustained(capture: (index: number) => Promise<unknown>, total: number, inflight: number): Promise<number> {
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const launch = (): void => {
      while (next < total && next - done < inflight) {
        const index = next++;
        capture(index).then(() => {
          done++;
          if (done === total) resolve();
          else launch();
        }, reject);
      }
    };
    launch();
  });
  return total / ((performance.now() - t0) / 1000);
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(tmpdir(), 'offchannel-bench-s3-'));
  const store = await startStore(work);
  const results: Record<string, unknown> = { node: process.version, endpoint: store.endpoint, records: RECORDS, recordBytes: canonicalBytes(naiveRecord(0, ZERO_HASH, 'naive')).length };
  const admin = new S3Client({ endpoint: store.endpoint, forcePathStyle: true, region: 'us-east-1' });
  try {
    const bucket = `oc-bench-${randomBytes(4).toString('hex')}`;
    await admin.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
    // The store's first writes create its pools; keep that out of every timing.
    for (let index = 0; index < 20; index++) await admin.send(new PutObjectCommand({ Bucket: bucket, Key: `warm-up/${index}`, Body: 'x' }));
    const sinkOptions = { endpoint: store.endpoint, bucket, retention: { records: { days: 1 } } };

    // Baseline: raw SHA-256.
    const buffer = Buffer.alloc(1024, 7);
    let t0 = performance.now();
    for (let index = 0; index < RECORDS; index++) createHash('sha256').update(buffer).digest();
    const sha256PerSecond = RECORDS / ((performance.now() - t0) / 1000);

    // Naive: one locked PUT per record (awaited), and with 8 in flight.
    const naive = async (inflight: number, prefix: string): Promise<number> => {
      let prev = ZERO_HASH;
      const bodies = Array.from({ length: NAIVE }, (_, index) => {
        const bytes = canonicalBytes(naiveRecord(index, prev, 'naive'));
        prev = sha256Hex(bytes);
        return bytes;
      });
      return sustained(
        (index) => {
          const body = bodies[index] as Uint8Array;
          return admin.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: `${prefix}/${String(index + 1).padStart(16, '0')}.json`,
              Body: body,
              ContentMD5: createHash('md5').update(body).digest('base64'),
              ObjectLockMode: 'COMPLIANCE',
              ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000),
            }),
          );
        },
        NAIVE,
        inflight,
      );
    };
    const naivePerSecond = await naive(1, 'naive-1');
    const naive8PerSecond = await naive(8, 'naive-8');

    // Direct: Recorder → S3 sink.
    {
      const sink = await openS3Sink({ ...sinkOptions, prefix: 'direct' });
      const recorder = new Recorder({ sink });
      const writer = recorder.writer({ channel: 'bench', account: 'direct', source: BENCH_SOURCE });
      await writer.capture(benchInput(-1));
      results.directPerSecond = await sustained((index) => writer.capture(benchInput(index)), RECORDS, INFLIGHT);
      await recorder.close();
      await sink.close();
    }

    // Spool: Recorder → fs → Forwarder → S3, until every record is locked in S3.
    {
      const spool = await openFsSink({ dir: path.join(work, 'spool') });
      const remote = await openS3Sink({ ...sinkOptions, prefix: 'spool' });
      const forwarder = new Forwarder({ spool, targets: [{ name: 'ceph', sink: remote }] });
      const recorder = new Recorder({ sink: forwarder.sink, checkpoints: { signer: key, everyRecords: 1000 } });
      forwarder.start();
      const writer = recorder.writer({ channel: 'bench', account: 'spool', source: BENCH_SOURCE });
      await writer.capture(benchInput(-1));
      await forwarder.drain();
      t0 = performance.now();
      const acknowledged = await sustained((index) => writer.capture(benchInput(index)), RECORDS, INFLIGHT);
      await forwarder.drain({ timeoutMs: 600_000 });
      results.spool = { acknowledgedPerSecond: acknowledged, lockedPerSecond: RECORDS / ((performance.now() - t0) / 1000) };
      await recorder.close();
      await forwarder.drain({ timeoutMs: 600_000 });
      await forwarder.stop();
      await remote.close();
      await spool.close();
    }

    // Lag at a fixed offered load, through the spool.
    const lags: Record<string, unknown> = {};
    for (const rate of [100, 1000]) {
      const spool = await openFsSink({ dir: path.join(work, `lag-${rate}`) });
      const remote = await openS3Sink({ ...sinkOptions, prefix: `lag-${rate}` });
      const locked: { seq: number; at: number }[] = [];
      const forwarder = new Forwarder({ spool, targets: [{ name: 'ceph', sink: remote }], onForwarded: (event) => locked.push({ seq: event.lastSeq, at: performance.now() }) });
      const recorder = new Recorder({ sink: forwarder.sink, checkpoints: { signer: key, everyRecords: 1000 } });
      forwarder.start();
      const writer = recorder.writer({ channel: 'bench', account: `lag${rate}`, source: BENCH_SOURCE });
      await writer.capture(benchInput(-1));
      await forwarder.drain();
      const total = rate * SECONDS;
      const started = new Map<number, number>();
      const pending: Promise<unknown>[] = [];
      t0 = performance.now();
      for (let index = 0; index < total; index++) {
        const due = t0 + (index * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
        const at = performance.now();
        pending.push(writer.capture(benchInput(index)).then((result) => started.set(result.seq, at)));
      }
      await Promise.all(pending);
      await forwarder.drain({ timeoutMs: 120_000 });
      const latencies = new Float64Array(total);
      let event = 0;
      [...started.entries()].sort((a, b) => a[0] - b[0]).forEach(([seq, at], index) => {
        while ((locked[event]?.seq ?? Number.POSITIVE_INFINITY) < seq) event++;
        latencies[index] = (locked[event]?.at ?? Number.NaN) - at;
      });
      latencies.sort();
      lags[`${rate}`] = { offeredPerSecond: rate, seconds: SECONDS, batches: locked.length, p50ms: percentile(latencies, 50), p99ms: percentile(latencies, 99), maxMs: latencies[total - 1] };
      await recorder.close();
      await forwarder.stop();
      await remote.close();
      await spool.close();
    }

    const directPerSecond = results.directPerSecond as number;
    const spool = results.spool as { acknowledgedPerSecond: number; lockedPerSecond: number };
    Object.assign(results, {
      sha256PerSecond,
      naivePerSecond,
      naive8PerSecond,
      lag: lags,
      ratios: {
        spoolVsNaive: spool.lockedPerSecond / naivePerSecond,
        spoolVsNaive8: spool.lockedPerSecond / naive8PerSecond,
        directVsNaive: directPerSecond / naivePerSecond,
        spoolVsSha256: spool.lockedPerSecond / sha256PerSecond,
      },
    });
    if (values.json) {
      console.log(JSON.stringify(results, null, 2));
      return;
    }
    const rate = (value: number): string => `${Math.round(value).toLocaleString('en-US')} records/s`;
    console.log(`bench/s3 — Node ${process.version}, ${String(results.recordBytes)}-byte records, Ceph RGW at ${store.endpoint} (Object Lock COMPLIANCE on every object)`);
    console.log(`  sha256 over 1 KiB               ${rate(sha256PerSecond)}`);
    console.log(`  naive: 1 locked PUT per record  ${rate(naivePerSecond)}   (${NAIVE} records, one at a time)`);
    console.log(`  naive, 8 PUTs in flight         ${rate(naive8PerSecond)}`);
    console.log(`  recorder → S3 sink (direct)     ${rate(directPerSecond)}   = ${(directPerSecond / naivePerSecond).toFixed(1)}× naive`);
    console.log(`  recorder → spool → S3 (locked)  ${rate(spool.lockedPerSecond)}   = ${(spool.lockedPerSecond / naivePerSecond).toFixed(1)}× naive, ${(spool.lockedPerSecond / naive8PerSecond).toFixed(1)}× naive×8 (acknowledged from the spool at ${rate(spool.acknowledgedPerSecond)})`);
    for (const [offered, lag] of Object.entries(lags) as [string, { p50ms: number; p99ms: number; maxMs: number; batches: number }][]) {
      console.log(`  lag capture → locked in S3 at ${offered.padStart(5)} records/s for ${SECONDS} s: p50 ${lag.p50ms.toFixed(1)} ms, p99 ${lag.p99ms.toFixed(1)} ms, max ${lag.maxMs.toFixed(1)} ms (${lag.batches} batches)`);
    }
  } finally {
    admin.destroy();
    await store.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
