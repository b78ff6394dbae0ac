/**
 * Host attestations on S3: written by a capture host to its spool, forwarded to the bucket under
 * Object Lock, read back and verified there with the key alone — so `offchannel coverage s3://…`
 * sees the same liveness evidence as the spool — and the bucket's audit knows them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Forwarder, HostAttestor, Recorder, generateEd25519NoteKey, readAttestations, verifyArchive } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { describe, expect, it } from 'vitest';
import { createBucket, sinkOptions } from './__fixtures__/buckets.ts';
import { openS3Sink } from './s3-sink.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const T0 = Date.UTC(2026, 11, 6, 23, 45);

describe('host attestations on a real Ceph RGW', () => {
  it('are forwarded from the spool, locked, listed by host and day, verified, and pass the audit', { timeout: 120_000 }, async () => {
    const bucket = await createBucket();
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-s3-attest-'));
    try {
      const spool = await openFsSink({ dir });
      const s3 = await openS3Sink(sinkOptions(bucket));
      const forwarder = new Forwarder({ spool, targets: [{ name: 's3', sink: s3 }], pollMs: 200 });
      const recorder = new Recorder({ sink: forwarder.sink, checkpoints: { signer: key, everyRecords: 5 }, clock: () => new Date(T0) });
      forwarder.start();
      const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 't', version: '0' } });
      let now = T0;
      const attestor = await HostAttestor.open({ sink: forwarder.sink, host: 'h-s3test', signer: key, clock: () => new Date(now) });
      for (let round = 0; round < 4; round++) {
        for (let index = 0; index < 5; index++) await writer.capture({ kind: 'message', key: `m-${round}-${index}`, sentAt: new Date(T0).toISOString(), conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m-${round}-${index}` }, text: `round ${round}` });
        await recorder.checkpoint();
        const [head] = recorder.merkleHeads();
        await attestor.attest(head ? [{ stream: 'demo:alice', size: head.size, root: Buffer.from(head.root).toString('base64'), state: 'connected' }] : []);
        now += 5 * 60_000; // crosses midnight UTC: two days' folders
      }
      await recorder.close();
      await forwarder.drain({ timeoutMs: 60_000 });
      await forwarder.stop();
      await s3.close();

      const reader = await openS3Sink(sinkOptions(bucket, { readOnly: true }));
      expect(await reader.attestationHosts()).toEqual(['h-s3test']);
      expect((await reader.attestations('h-s3test')).map((id) => [id.day, id.seq])).toEqual([
        ['2026-12-06', 1],
        ['2026-12-06', 2],
        ['2026-12-06', 3],
        ['2026-12-07', 4],
      ]);
      expect((await reader.attestations('h-s3test', { fromDay: '2026-12-07' })).map((id) => id.seq)).toEqual([4]);
      const read: number[] = [];
      for await (const attestation of readAttestations(reader, { verifier: key.verifier })) read.push(attestation.seq);
      expect(read).toEqual([1, 2, 3, 4]);
      const report = await verifyArchive(reader, { verifiers: [key.verifier] });
      expect(report.failures).toEqual([]);
      expect(report.warnings.filter((warning) => warning.code === 'UNEXPECTED_FILE')).toEqual([]);
      await reader.close();
      await spool.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
