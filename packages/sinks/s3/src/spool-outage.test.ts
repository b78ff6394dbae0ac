import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type BlobsPrunedEvent, type CaptureInput, type CaptureResult, Forwarder, type PrunedEvent, blobNamesIn, isRetryable, openKeyIndex, Recorder, type StreamHead, generateEd25519NoteKey, verifyArchive } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { openFsSink } from '@offchannel/sink-fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBucket, server, sinkOptions } from './__fixtures__/buckets.ts';
import { freePort } from './__fixtures__/ceph-global-setup.ts';
import { type S3Sink, openS3Sink } from './s3-sink.ts';

const run = promisify(execFile);
const source = { package: '@offchannel/test', version: '0' };
const key = generateEd25519NoteKey('archive.example/offchannel');

function message(account: string, index: number): CaptureInput {
  return {
    kind: 'message',
    sentAt: '2026-11-21T09:00:00.000Z',
    conversation: { id: `c${index % 5}`, type: 'group' },
    sender: { id: `${account}-peer` },
    direction: 'inbound',
    native: { id: `${account}-${index}` },
    text: `confidential text ${account} ${index}`,
    ...(index % 50 === 0 ? { attachments: [{ bytes: new TextEncoder().encode(`attachment ${account} ${index}`), mime: 'text/plain' }] } : {}),
  };
}

async function records(sink: { read: S3Sink['read'] }, stream: string): Promise<string[]> {
  const out: string[] = [];
  for await (const stored of sink.read(stream)) out.push(Buffer.from(stored.bytes).toString());
  return out;
}

// These tests stop and restart a radosgw of their own, so they need the local test cluster.
describe.skipIf(server.runDir === undefined)('an S3 outage, on a real Ceph RGW', () => {
  const rgw = (...args: string[]) => run('bash', [path.join(server.scripts, 'rgw.sh'), server.runDir as string, ...args]);
  let endpoint: string;
  let name: string;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    name = `o${port}`;
    endpoint = `http://127.0.0.1:${port}`;
    await rgw('start', name, String(port));
  }, 120_000);
  // Starting and stopping a radosgw takes seconds, more on a busy machine: ample headroom.
  afterAll(async () => {
    await rgw('stop', name);
  }, 120_000);

  it('radosgw stops mid-capture: capture keeps acknowledging from the spool, forwarding completes after restart, nothing lost or duplicated; spool and two buckets verify', async () => {
    const bucket = await createBucket();
    const replicaBucket = await createBucket();
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-spool-'));
    const logger = createRecordingLogger();
    let stopped = false;
    try {
      const spool = await openFsSink({ dir });
      const remote = await openS3Sink(sinkOptions(bucket, { endpoint, maxAttempts: 1, requestTimeoutMs: 5000 }));
      // A second, independent copy through the radosgw that stays up (SEC 17a-4(f)(2)(v)).
      const replica = await openS3Sink(sinkOptions(replicaBucket));
      const forwarder = new Forwarder({ spool, targets: [{ name: 'ceph', sink: remote }, { name: 'replica', sink: replica }], logger, minRetryMs: 100, maxRetryMs: 1000, pollMs: 1000 });
      const recorder = new Recorder({ sink: forwarder.sink, logger, checkpoints: { signer: key, everyRecords: 250, everyMs: 1000 } });
      forwarder.start();
      const writers = ['alice', 'bob'].map((account) => recorder.writer({ channel: 'demo', account, source }));
      const acknowledged: string[] = [];
      const capture = async (from: number, to: number) => {
        for (let index = from; index < to; index++) {
          const results = await Promise.all(writers.map((writer) => writer.capture(message(writer.account, index))));
          for (const result of results) {
            expect(result.status).toBe('recorded');
            acknowledged.push(result.key);
          }
        }
      };
      await capture(0, 300);
      await rgw('stop', name);
      stopped = true;
      // The store is gone; captures are still acknowledged, from the durable spool.
      await capture(300, 700);
      const during = forwarder.status().targets[0]?.streams ?? [];
      expect(during.some((stream) => stream.state === 'retrying')).toBe(true);
      expect((during[0]?.seq ?? 0) < 700).toBe(true);
      // The replica is not held back by the outage of the other target: it reaches the spool's
      // head while radosgw is still down (polled: a busy machine forwards more slowly).
      const replicaSeqs = () => forwarder.status().targets[1]?.streams.map((stream) => stream.seq);
      for (const deadline = Date.now() + 30_000; Date.now() < deadline && JSON.stringify(replicaSeqs()) !== '[700,700]'; ) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(replicaSeqs()).toEqual([700, 700]);
      await rgw('start', name, String(port));
      stopped = false;
      await capture(700, 1000);
      await recorder.close();
      await forwarder.drain({ timeoutMs: 60_000 });
      await forwarder.stop();
      await remote.close();
      await replica.close();

      expect(acknowledged).toHaveLength(2000);
      expect(new Set(acknowledged).size).toBe(2000);
      const reader = await openS3Sink(sinkOptions(bucket, { readOnly: true }));
      const replicaReader = await openS3Sink(sinkOptions(replicaBucket, { readOnly: true }));
      const reports = [await verifyArchive(spool, { verifiers: [key.verifier] }), await verifyArchive(reader, { verifiers: [key.verifier] }), await verifyArchive(replicaReader, { verifiers: [key.verifier] })];
      for (const report of reports) {
        expect(report.failures).toEqual([]);
        expect(report.streams.map((stream) => [stream.stream, stream.records, stream.checkpoints?.at(-1)?.size])).toEqual([
          ['demo:alice', 1000, 1000],
          ['demo:bob', 1000, 1000],
        ]);
      }
      // The same bytes everywhere, the same signed checkpoints, and every acknowledged capture exactly once.
      expect(reports[1]?.streams.map((stream) => stream.checkpoints)).toEqual(reports[0]?.streams.map((stream) => stream.checkpoints));
      expect(reports[2]?.streams.map((stream) => stream.checkpoints)).toEqual(reports[0]?.streams.map((stream) => stream.checkpoints));
      for (const stream of ['demo:alice', 'demo:bob']) {
        const [inSpool, inBucket] = [await records(spool, stream), await records(reader, stream)];
        expect(inBucket).toEqual(inSpool);
        expect(await records(replicaReader, stream)).toEqual(inSpool);
        for (const size of await spool.checkpoints(stream)) {
          const note = Buffer.from((await spool.getCheckpoint(stream, size, 'note')) as Uint8Array);
          expect(Buffer.from((await reader.getCheckpoint(stream, size, 'note')) as Uint8Array).equals(note)).toBe(true);
          expect(Buffer.from((await replicaReader.getCheckpoint(stream, size, 'note')) as Uint8Array).equals(note)).toBe(true);
        }
        const keys = inBucket.map((line) => (JSON.parse(line) as { key: string }).key);
        expect(new Set(keys).size).toBe(1000);
      }
      expect(logger.text()).not.toContain('confidential text');
      await reader.close();
      await replicaReader.close();
      await spool.close();
    } finally {
      // Never leave radosgw down for the next test, whatever failed.
      if (stopped) await rgw('start', name, String(port));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a bounded spool — segments and blobs — grows while radosgw is down and shrinks after it returns; nothing is lost, both verify', async () => {
    const bucket = await createBucket();
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-bounded-'));
    const logger = createRecordingLogger();
    // The forwarder prunes at each poll, beside these reads: a file gone between readdir and stat
    // was pruned, and counts as nothing.
    const sizeOf = async (file: string) => {
      try {
        return (await stat(file)).size;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw error;
      }
    };
    const spoolBytes = async () => {
      let total = 0;
      for (const stream of ['demo:dave', 'demo:erin']) {
        const streamDir = path.join(dir, 'streams', stream);
        for (const name of await readdir(streamDir)) if (name.endsWith('.jsonl')) total += await sizeOf(path.join(streamDir, name));
      }
      return total;
    };
    // Raw evidence is most of a spool's bytes: every fourth message carries a 4 KiB attachment of
    // its own, and every hundredth one both custodians received (one blob, named by two streams).
    const blobBytes = async () => {
      let total = 0;
      for (const name of await readdir(path.join(dir, 'blobs', 'sha256'))) total += await sizeOf(path.join(dir, 'blobs', 'sha256', name));
      return total;
    };
    const evidence = (account: string, index: number): CaptureInput => {
      const attachments = [
        ...(index % 4 === 0 ? [{ bytes: new TextEncoder().encode(`evidence ${account} ${index} `.repeat(200).slice(0, 4096)), mime: 'application/octet-stream' }] : []),
        ...(index % 100 === 7 ? [{ bytes: new TextEncoder().encode(`shared evidence ${index} `.repeat(100)), mime: 'application/octet-stream' }] : []),
      ];
      return { ...message(account, index), ...(attachments.length > 0 ? { attachments } : {}) };
    };
    try {
      const spool = await openFsSink({ dir, segmentBytes: 16_000 });
      const remote = await openS3Sink(sinkOptions(bucket, { endpoint, maxAttempts: 1, requestTimeoutMs: 5000 }));
      const pruned: PrunedEvent[] = [];
      const blobsPruned: BlobsPrunedEvent[] = [];
      const forwarder = new Forwarder({
        spool,
        targets: [{ name: 'ceph', sink: remote }],
        logger,
        minRetryMs: 100,
        maxRetryMs: 1000,
        pollMs: 200,
        // Segments may go as soon as S3 holds them (a real deployment keeps days: minAgeMs).
        prune: { minAgeMs: 0, now: () => new Date('2100-01-01T00:00:00Z') },
        onPruned: (event) => pruned.push(event),
        onBlobsPruned: (event) => blobsPruned.push(event),
      });
      const recorder = new Recorder({ sink: forwarder.sink, logger, checkpoints: { signer: key, everyRecords: 100 } });
      forwarder.start();
      const writers = ['dave', 'erin'].map((account) => recorder.writer({ channel: 'demo', account, source }));
      // As the connector runtime does: a capture refused as retryable is captured again. A pruning
      // pass refuses an append naming a blob it is removing (BLOB_MISSING, nothing written); the
      // retry stores the blob again (blob-prune.ts).
      const captureWithRetry = async (writer: (typeof writers)[number], input: CaptureInput): Promise<CaptureResult> => {
        for (let attempt = 1; ; attempt++) {
          try {
            return await writer.capture(input);
          } catch (error) {
            if (!isRetryable(error) || attempt >= 5) throw error;
          }
        }
      };
      const capture = async (from: number, to: number) => {
        for (let index = from; index < to; index++) {
          for (const result of await Promise.all(writers.map((writer) => captureWithRetry(writer, evidence(writer.account, index))))) expect(result.status).toBe('recorded');
        }
      };
      await capture(0, 400);
      await forwarder.drain({ timeoutMs: 60_000 });
      await forwarder.prune();
      const before = await spoolBytes();
      const blobsBefore = await blobBytes();
      const prunedBefore = (await spool.pruned('demo:dave'))?.seq ?? 0;
      expect(prunedBefore).toBeGreaterThan(0);

      // What S3 holds when it goes away: nothing past it may be pruned during the outage.
      const held = Math.min(...(forwarder.status().targets[0]?.streams ?? []).map((stream) => stream.seq ?? 0));
      expect(held).toBe(400);
      await rgw('stop', name);
      let during: number;
      let blobsDuring: number;
      try {
        await capture(400, 1400);
        await new Promise((resolve) => setTimeout(resolve, 600)); // several polls with the target down
        await forwarder.prune();
        during = await spoolBytes();
        blobsDuring = await blobBytes();
        for (const stream of ['demo:dave', 'demo:erin']) expect((await spool.pruned(stream))?.seq ?? 0).toBeLessThan(held);
        expect(during).toBeGreaterThan(before * 2);
        expect(blobsDuring).toBeGreaterThan(blobsBefore * 2);
      } finally {
        await rgw('start', name, String(port));
      }
      await recorder.close();
      await forwarder.drain({ timeoutMs: 60_000 });
      await forwarder.prune();
      await forwarder.stop();
      const after = await spoolBytes();
      const blobsAfter = await blobBytes();
      expect(after).toBeLessThan(during / 3);
      expect(blobsAfter).toBeLessThan(blobsDuring / 3);
      expect(pruned.length).toBeGreaterThan(0);
      expect(blobsPruned.reduce((sum, event) => sum + event.bytes, 0)).toBeGreaterThan(blobsDuring / 2);

      const reader = await openS3Sink(sinkOptions(bucket, { readOnly: true }));
      const inBucket = await verifyArchive(reader, { verifiers: [key.verifier] });
      expect(inBucket.failures).toEqual([]);
      expect(inBucket.streams.map((stream) => [stream.stream, stream.records, stream.pruned])).toEqual([
        ['demo:dave', 1400, undefined],
        ['demo:erin', 1400, undefined],
      ]);
      // Nothing lost: every blob a record in S3 names is in S3, whole (verify checks each too).
      let named = 0;
      for (const stream of ['demo:dave', 'demo:erin']) {
        for await (const stored of reader.read(stream)) {
          for (const sha256 of blobNamesIn(stored.bytes)) {
            named++;
            expect(await reader.statBlob(sha256), `${stream} seq ${stored.seq}`).toBeDefined();
          }
        }
      }
      expect(named).toBeGreaterThan(700);
      // The spool verifies alone: every record it still holds names a blob it still holds.
      const inSpool = await verifyArchive(spool, { verifiers: [key.verifier] });
      expect(inSpool.failures).toEqual([]);
      expect(inSpool.warnings.filter((warning) => warning.code === 'PRUNED')).toHaveLength(2);
      expect(inSpool.streams.every((stream) => stream.head.seq === 1400 && (stream.pruned ?? 0) > 1000)).toBe(true);
      expect(logger.text()).not.toContain('confidential text');
      await reader.close();
      await remote.close();
      await spool.close();
      console.info(`bounded spool: segments ${before} bytes before the outage, ${during} during, ${after} after (${(after / during).toFixed(2)} of the peak); blobs ${blobsBefore}, ${blobsDuring}, ${blobsAfter} (${(blobsAfter / blobsDuring).toFixed(2)})`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a key index lost on a pruned spool is rebuilt with the pruned records read from S3: replays stay duplicates; with radosgw down the rebuild is refused as retryable and goes through when it returns', async () => {
    const bucket = await createBucket();
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-read-through-'));
    const state = await mkdtemp(path.join(tmpdir(), 'offchannel-read-through-state-'));
    const stream = 'demo:frank';
    const logger = createRecordingLogger();
    let stopped = false;
    try {
      const spool = await openFsSink({ dir, segmentBytes: 8_000 });
      const remote = await openS3Sink(sinkOptions(bucket, { endpoint, maxAttempts: 1, requestTimeoutMs: 5000 }));
      // No poll during the test: it prunes where it means to.
      const forwarder = new Forwarder({ spool, targets: [{ name: 'ceph', sink: remote }], logger, minRetryMs: 100, maxRetryMs: 1000, pollMs: 600_000, prune: { minAgeMs: 0, now: () => new Date('2100-01-01T00:00:00Z') } });
      forwarder.start();
      const open = () => {
        const index = openKeyIndex({ file: path.join(state, 'key-index.sqlite') });
        const recorder = new Recorder({ sink: forwarder.sink, keyIndex: index, logger, checkpoints: { signer: key, everyRecords: 100 } });
        return { index, recorder, writer: recorder.writer({ channel: 'demo', account: 'frank', source }) };
      };
      const first = open();
      for (let index = 0; index < 400; index++) expect((await first.writer.capture(message('frank', index))).seq).toBe(index + 1);
      await first.recorder.close();
      first.index.close();
      await forwarder.drain({ timeoutMs: 60_000 });
      await forwarder.prune();
      const through = (await spool.pruned(stream))?.seq ?? 0;
      expect(through).toBeGreaterThan(100);
      for (const suffix of ['', '-wal', '-shm']) await rm(path.join(state, `key-index.sqlite${suffix}`), { force: true });

      // S3 down while the lost index is rebuilt: refused as retryable, nothing acknowledged.
      await rgw('stop', name);
      stopped = true;
      const second = open();
      for (const index of [5, 400]) {
        const error = await second.writer.capture(message('frank', index)).catch((caught: unknown) => caught);
        expect((error as { code?: string }).code, String(error)).toBe('PRUNED_READ_UNAVAILABLE');
        expect(isRetryable(error)).toBe(true);
      }
      expect((await spool.head(stream)).seq).toBe(400);
      await rgw('start', name, String(port));
      stopped = false;
      // S3 back: the retry rebuilds the index through it; a replay of a pruned message is a duplicate.
      expect(await second.writer.capture(message('frank', 5))).toMatchObject({ status: 'duplicate', seq: 6 });
      for (let index = 400; index < 450; index++) expect((await second.writer.capture(message('frank', index))).seq).toBe(index + 1);
      expect(second.index.head(stream).seq).toBe(450);
      await second.recorder.close();
      second.index.close();
      await forwarder.drain({ timeoutMs: 60_000 });
      await forwarder.stop();
      const reader = await openS3Sink(sinkOptions(bucket, { readOnly: true }));
      const report = await verifyArchive(reader, { verifiers: [key.verifier] });
      expect(report.failures).toEqual([]);
      expect(report.streams.map((summary) => [summary.stream, summary.records])).toEqual([[stream, 450]]);
      const keys = (await records(reader, stream)).map((line) => (JSON.parse(line) as { key: string }).key);
      expect(new Set(keys).size).toBe(450);
      expect(logger.text()).not.toContain('confidential text');
      await reader.close();
      await remote.close();
      await spool.close();
    } finally {
      if (stopped) await rgw('start', name, String(port));
      await rm(dir, { recursive: true, force: true });
      await rm(state, { recursive: true, force: true });
    }
  });

  it('without a spool, a capture during the outage is refused — never acknowledged — and the archive holds exactly what was', async () => {
    const bucket = await createBucket();
    const sink = await openS3Sink(sinkOptions(bucket, { endpoint, maxAttempts: 1, requestTimeoutMs: 5000 }));
    const recorder = new Recorder({ sink });
    const writer = recorder.writer({ channel: 'demo', account: 'carol', source });
    for (let index = 0; index < 20; index++) expect((await writer.capture(message('carol', index))).status).toBe('recorded');
    await rgw('stop', name);
    const refused = await Promise.allSettled(Array.from({ length: 5 }, (_, index) => writer.capture(message('carol', 20 + index))));
    expect(refused.every((result) => result.status === 'rejected' && (result.reason as { code?: string }).code === 'SINK_UNAVAILABLE')).toBe(true);
    await rgw('start', name, String(port));
    // The connector redelivers what was not acknowledged.
    for (let index = 20; index < 25; index++) expect((await writer.capture(message('carol', index))).status).toBe('recorded');
    await recorder.close();
    await sink.close();
    const reader = await openS3Sink(sinkOptions(bucket, { readOnly: true }));
    const report = await verifyArchive(reader);
    expect(report.failures).toEqual([]);
    expect(report.streams[0]).toMatchObject({ stream: 'demo:carol', records: 25, head: expect.objectContaining({ seq: 25 }) as StreamHead });
    await reader.close();
  });
});
