import { createHash } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { type CaptureInput, Recorder, buildRecordProof, generateEd25519NoteKey, verifyArchive, verifyRecordProof } from '@offchannel/core';
import { describe, expect, it } from 'vitest';
import { adminClient, createBucket, sinkOptions } from './__fixtures__/buckets.ts';
import { openS3Sink } from './s3-sink.ts';

function message(index: number): CaptureInput {
  return {
    kind: 'message',
    sentAt: '2026-11-21T09:00:00.000Z',
    conversation: { id: `c${index % 7}`, type: 'direct' },
    sender: { id: 'bob' },
    direction: 'inbound',
    native: { id: `m${index}` },
    text: `message ${index} ${'.'.repeat(2000)}`,
    ...(index % 100 === 0 ? { attachments: [{ bytes: new TextEncoder().encode(`attachment ${index}`), mime: 'text/plain', name: `a${index}.txt` }] } : {}),
  };
}

describe('an archive recorded straight into S3', () => {
  it('verifies with the key (in parallel), proves records, and its audit names what does not belong', async () => {
    const bucket = await createBucket();
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const sink = await openS3Sink(sinkOptions(bucket, { prefix: 'firm' }));
    const recorder = new Recorder({ sink, requireRetention: 'compliance-lock', checkpoints: { signer: key, everyRecords: 500 }, maxBatchRecords: 200 });
    for (const account of ['alice', 'bob']) {
      const writer = recorder.writer({ channel: 'demo', account, source: { package: '@offchannel/test', version: '0' } });
      const results = await Promise.all(Array.from({ length: 1200 }, (_, index) => writer.capture(message(index))));
      expect(results.every((result) => result.status === 'recorded')).toBe(true);
    }
    await recorder.close();
    await sink.close();

    const reader = await openS3Sink(sinkOptions(bucket, { prefix: 'firm', readOnly: true }));
    const report = await verifyArchive(reader, { verifiers: [key.verifier], workers: 2 });
    expect(report.failures).toEqual([]);
    expect(report.warnings).toEqual([]);
    expect(report.streams.map((stream) => [stream.stream, stream.records, stream.checkpoints?.at(-1)?.size])).toEqual([
      ['demo:alice', 1200, 1200],
      ['demo:bob', 1200, 1200],
    ]);
    // Batches are read as ~1 MiB chunks and verified on worker threads; the result is the same on one thread.
    expect(report.streams.map((stream) => stream.workers)).toEqual([2, 2]);
    expect({ ...(await verifyArchive(reader, { verifiers: [key.verifier], workers: 1 })), streams: [] }).toEqual({ ...report, streams: [] });
    expect(report.blobsChecked).toBe(12); // both streams carry the same 12 attachments: stored once
    const proof = await buildRecordProof(reader, 'demo:bob', 777);
    expect(verifyRecordProof(JSON.parse(JSON.stringify(proof)), [key.verifier]).record).toMatchObject({ seq: 777, stream: 'demo:bob' });

    // Objects the layout does not know, a token whose note is missing, an unlocked object.
    const client = adminClient();
    const put = (name: string, body: string, locked = true) =>
      client.send(new PutObjectCommand({ Bucket: bucket, Key: `firm/${name}`, Body: body, ContentMD5: createHash('md5').update(body).digest('base64'), ...(locked ? { ObjectLockMode: 'COMPLIANCE' as const, ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000) } : {}) }));
    await put('notes/readme.txt', 'x');
    await put('checkpoints/demo:alice/0000000000000777.rfc3161', 'token');
    await put(`blobs/sha256/${'ab'.repeat(32)}`, 'unlocked', false);
    client.destroy();
    const audited = await verifyArchive(reader, { verifiers: [key.verifier], workers: 1 });
    expect(audited.failures.map((failure) => failure.code).sort()).toEqual(['CHECKPOINT_NOTE_MISSING', 'S3_NOT_LOCKED', 'UNEXPECTED_FILE']);
    await reader.close();
  });

  it('audits an archive at the bucket root without blaming other archives in the same bucket', async () => {
    const bucket = await createBucket();
    const root = await openS3Sink(sinkOptions(bucket));
    const tenant = await openS3Sink(sinkOptions(bucket, { prefix: 'tenant-b' }));
    const recorder = new Recorder({ sink: root });
    await recorder.writer({ channel: 'demo', account: 'root', source: { package: 't', version: '0' } }).capture(message(1));
    await recorder.close();
    const other = new Recorder({ sink: tenant });
    await other.writer({ channel: 'demo', account: 'b', source: { package: 't', version: '0' } }).capture(message(2));
    await other.close();
    const findings = [];
    for await (const finding of root.audit()) findings.push(finding);
    expect(findings).toEqual([]);
    expect(await root.streams()).toEqual(['demo:root']);
    await root.close();
    await tenant.close();
  });
});
