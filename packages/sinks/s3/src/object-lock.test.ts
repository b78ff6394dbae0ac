import { DeleteObjectCommand, GetObjectRetentionCommand, ListObjectVersionsCommand, PutObjectRetentionCommand } from '@aws-sdk/client-s3';
import { ZERO_HASH, canonicalBytes, sha256Hex } from '@offchannel/core';
import { batchAfter, fakeRecord } from '@offchannel/core/testing';
import { describe, expect, it } from 'vitest';
import { adminClient, createBucket, sinkOptions } from './__fixtures__/buckets.ts';
import { openS3Sink } from './s3-sink.ts';

const stream = 'demo:alice';
const encoder = new TextEncoder();

async function versionsOf(bucket: string, prefix: string) {
  const client = adminClient();
  try {
    const listed = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix }));
    return (listed.Versions ?? []).map((version) => ({ key: version.Key as string, versionId: version.VersionId as string }));
  } finally {
    client.destroy();
  }
}

async function retainUntil(bucket: string, key: string, versionId: string): Promise<Date | undefined> {
  const client = adminClient();
  try {
    return (await client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: key, VersionId: versionId }))).Retention?.RetainUntilDate;
  } finally {
    client.destroy();
  }
}

async function deleteVersion(bucket: string, key: string, versionId: string): Promise<string> {
  const client = adminClient();
  try {
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId, BypassGovernanceRetention: true }));
    return 'deleted';
  } catch (error) {
    return (error as { name: string }).name;
  } finally {
    client.destroy();
  }
}

/** A record that names a blob, so holds can be seen to follow it. */
function recordWithBlob(seq: number, prev: string, blob: string): Uint8Array {
  return canonicalBytes({ attachments: [{ sha256: blob, size: 4, status: 'stored' }], prev, seq, stream });
}

describe('Object Lock on a real Ceph RGW', () => {
  it('locks every object it writes in COMPLIANCE mode until the configured date, per class and channel', async () => {
    const bucket = await createBucket();
    const sink = await openS3Sink(sinkOptions(bucket, { retention: { records: { days: 30 }, channels: { demo: { days: 10 } }, blobs: { days: 40 }, checkpoints: { days: 50 }, tiles: { days: 60 } } }));
    const before = Date.now();
    await sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 2));
    await sink.appendBatch(batchAfter('other:bob', { seq: 0, hash: ZERO_HASH }, 1));
    const blob = encoder.encode('blob');
    await sink.putBlob(sha256Hex(blob), blob);
    await sink.putCheckpoint(stream, 2, 'note', encoder.encode('note'));
    await sink.putTile(stream, { level: 0, index: 0, width: 2 }, new Uint8Array(64));
    await sink.close();
    const expected: [string, number][] = [
      ['streams/demo:alice/', 10],
      ['streams/other:bob/', 30],
      ['blobs/', 40.4], // blobs get a 1% margin (at most a day) over their period
      ['checkpoints/', 50],
      ['tiles/', 60],
    ];
    for (const [prefix, days] of expected) {
      const [version] = await versionsOf(bucket, prefix);
      expect(version, prefix).toBeDefined();
      const until = (await retainUntil(bucket, version?.key as string, version?.versionId as string))?.getTime() ?? 0;
      expect(until - before, prefix).toBeGreaterThanOrEqual(days * 86_400_000 - 1000);
      expect(until - before, prefix).toBeLessThan(days * 86_400_000 + 60_000);
    }
  });

  it('cannot delete a locked version or shorten its retention; a plain delete only adds a marker', async () => {
    const bucket = await createBucket();
    const sink = await openS3Sink(sinkOptions(bucket));
    const head = await sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 3));
    const [version] = await versionsOf(bucket, 'streams/');
    const { key, versionId } = version as { key: string; versionId: string };
    expect(await deleteVersion(bucket, key, versionId)).toBe('AccessDenied');
    const client = adminClient();
    try {
      await expect(client.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, VersionId: versionId, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: new Date(Date.now() + 3600_000) } }))).rejects.toMatchObject({ name: 'AccessDenied' });
      await expect(client.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, VersionId: versionId, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 3 * 86_400_000) } }))).rejects.toMatchObject({ name: 'AccessDenied' });
      const marker = await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      expect(marker.DeleteMarker).toBe(true);
    } finally {
      client.destroy();
    }
    // The record is still there, read from its locked version, and the audit names the attempt.
    const reader = await openS3Sink(sinkOptions(bucket, { readOnly: true }));
    expect(await reader.head(stream)).toEqual(head);
    const findings = [];
    for await (const finding of reader.audit()) findings.push(finding);
    expect(findings).toEqual([expect.objectContaining({ code: 'S3_DELETE_MARKER', severity: 'warning', stream })]);
    await reader.close();
    await sink.close();
  });

  it('keeps a legal hold beyond expiry; a short-retention object becomes deletable once it expires', async () => {
    const bucket = await createBucket();
    const short = { seconds: 3 };
    const sink = await openS3Sink(sinkOptions(bucket, { retention: { records: short, blobs: short, checkpoints: short, tiles: short } }));
    const blob = encoder.encode('held');
    await sink.putBlob(sha256Hex(blob), blob);
    const first = recordWithBlob(1, ZERO_HASH, sha256Hex(blob));
    await sink.appendBatch({ stream, firstSeq: 1, prev: ZERO_HASH, records: [first] });
    await sink.appendBatch({ stream: 'demo:bob', firstSeq: 1, prev: ZERO_HASH, records: [fakeRecord('demo:bob', 1, ZERO_HASH)] });
    await sink.putCheckpoint(stream, 1, 'note', encoder.encode('note'));
    expect(await sink.setLegalHold({ stream }, true, { reason: 'matter 2026-17' })).toEqual({ objects: 3, kept: 0 });
    await new Promise((resolve) => setTimeout(resolve, 4500));
    const held = await versionsOf(bucket, 'streams/demo:alice/');
    const heldBlob = await versionsOf(bucket, 'blobs/');
    const free = await versionsOf(bucket, 'streams/demo:bob/');
    for (const version of [...held, ...heldBlob]) expect(await deleteVersion(bucket, version.key, version.versionId), version.key).toBe('AccessDenied');
    expect(await deleteVersion(bucket, free[0]?.key as string, free[0]?.versionId as string)).toBe('deleted');
    // Lifting the hold makes the expired versions deletable too.
    await sink.setLegalHold({ stream }, false);
    for (const version of [...held, ...heldBlob]) expect(await deleteVersion(bucket, version.key, version.versionId), version.key).toBe('deleted');
    // Both changes were logged as locked objects.
    expect((await versionsOf(bucket, 'legal-holds/')).length).toBe(2);
    await sink.close();
  }, 30_000);

  it('holds one record: its batch and its blobs only, and holds new objects of a held stream', async () => {
    const bucket = await createBucket();
    const sink = await openS3Sink(sinkOptions(bucket));
    const blobs = ['one', 'two'].map((text) => encoder.encode(text));
    for (const bytes of blobs) await sink.putBlob(sha256Hex(bytes), bytes);
    const first = recordWithBlob(1, ZERO_HASH, sha256Hex(blobs[0] as Uint8Array));
    const second = recordWithBlob(2, sha256Hex(first), sha256Hex(blobs[1] as Uint8Array));
    const head = await sink.appendBatch({ stream, firstSeq: 1, prev: ZERO_HASH, records: [first] });
    await sink.appendBatch({ stream, firstSeq: 2, prev: head.hash, records: [second] });
    expect(await sink.setLegalHold({ stream, seq: 2 }, true)).toEqual({ objects: 2, kept: 0 });
    await expect(sink.setLegalHold({ stream, seq: 3 }, true)).rejects.toMatchObject({ code: 'S3_NO_SUCH_RECORD' });
    const client = adminClient();
    const hold = async (key: string) => {
      const [version] = await versionsOf(bucket, key);
      const { GetObjectLegalHoldCommand } = await import('@aws-sdk/client-s3');
      return (await client.send(new GetObjectLegalHoldCommand({ Bucket: bucket, Key: key, VersionId: version?.versionId }))).LegalHold?.Status ?? 'OFF';
    };
    try {
      expect(await hold('streams/demo:alice/0000000000000002.jsonl')).toBe('ON');
      expect(await hold(`blobs/sha256/${sha256Hex(blobs[1] as Uint8Array)}`)).toBe('ON');
      expect(await hold('streams/demo:alice/0000000000000001.jsonl').catch(() => 'OFF')).toBe('OFF');
      expect(await hold(`blobs/sha256/${sha256Hex(blobs[0] as Uint8Array)}`).catch(() => 'OFF')).toBe('OFF');
      // Holding the whole stream also holds what is appended afterwards.
      await sink.setLegalHold({ stream }, true);
      const third = fakeRecord(stream, 3, sha256Hex(second));
      await sink.appendBatch({ stream, firstSeq: 3, prev: sha256Hex(second), records: [third] });
      expect(await hold('streams/demo:alice/0000000000000003.jsonl')).toBe('ON');
    } finally {
      client.destroy();
    }
    await sink.close();
  });

  it('holds the blobs of new records in a held stream, and keeps what another hold still covers when one is lifted', async () => {
    const bucket = await createBucket();
    const configured = await openS3Sink(sinkOptions(bucket, { legalHold: { streams: [stream] } }));
    const blobs = ['one', 'two', 'shared'].map((text) => encoder.encode(text));
    for (const bytes of blobs) await configured.putBlob(sha256Hex(bytes), bytes);
    const [one, two, shared] = blobs.map((bytes) => sha256Hex(bytes)) as [string, string, string];
    // A held stream (configured): its new batch and the blob that batch names are held.
    const first = recordWithBlob(1, ZERO_HASH, one);
    await configured.appendBatch({ stream, firstSeq: 1, prev: ZERO_HASH, records: [first] });
    const client = adminClient();
    const { GetObjectLegalHoldCommand } = await import('@aws-sdk/client-s3');
    const hold = async (key: string): Promise<string> => {
      const [version] = await versionsOf(bucket, key);
      try {
        return (await client.send(new GetObjectLegalHoldCommand({ Bucket: bucket, Key: key, VersionId: version?.versionId }))).LegalHold?.Status ?? 'OFF';
      } catch {
        return 'OFF';
      }
    };
    try {
      expect([await hold('streams/demo:alice/0000000000000001.jsonl'), await hold(`blobs/sha256/${one}`)]).toEqual(['ON', 'ON']);
      await configured.close();
      // Another stream shares a blob with demo:alice; both are held, then holds are lifted one by one.
      const sink = await openS3Sink(sinkOptions(bucket));
      const second = recordWithBlob(2, sha256Hex(first), shared);
      await sink.appendBatch({ stream, firstSeq: 2, prev: sha256Hex(first), records: [second] });
      const bobRecord = canonicalBytes({ attachments: [{ sha256: shared, size: 6, status: 'stored' }, { sha256: two, size: 3, status: 'stored' }], prev: ZERO_HASH, seq: 1, stream: 'demo:bob' });
      await sink.appendBatch({ stream: 'demo:bob', firstSeq: 1, prev: ZERO_HASH, records: [bobRecord] });
      await sink.setLegalHold({ stream }, true);
      await sink.setLegalHold({ stream, seq: 2 }, true);
      await sink.setLegalHold({ stream: 'demo:bob' }, true);
      // Lifting the record hold changes nothing: the stream hold covers it.
      expect(await sink.setLegalHold({ stream, seq: 2 }, false)).toEqual({ objects: 0, kept: 2 });
      expect([await hold('streams/demo:alice/0000000000000002.jsonl'), await hold(`blobs/sha256/${shared}`)]).toEqual(['ON', 'ON']);
      // Lifting demo:alice releases its own objects but not the blob demo:bob still needs.
      const lifted = await sink.setLegalHold({ stream }, false);
      expect(lifted.kept).toBe(1);
      expect([await hold('streams/demo:alice/0000000000000002.jsonl'), await hold(`blobs/sha256/${one}`), await hold(`blobs/sha256/${shared}`), await hold(`blobs/sha256/${two}`)]).toEqual(['OFF', 'OFF', 'ON', 'ON']);
      await sink.close();
    } finally {
      client.destroy();
    }
  });

  it('extends the retention of an existing blob when it is stored again for a newer record', async () => {
    const bucket = await createBucket();
    const bytes = encoder.encode('shared attachment');
    const early = await openS3Sink(sinkOptions(bucket, { retention: { records: { days: 1 } } }));
    expect(await early.putBlob(sha256Hex(bytes), bytes)).toEqual({ created: true });
    await early.close();
    const later = await openS3Sink(sinkOptions(bucket, { retention: { records: { days: 5 } } }));
    expect(await later.putBlob(sha256Hex(bytes), bytes)).toEqual({ created: false });
    await later.close();
    const [version] = await versionsOf(bucket, 'blobs/');
    expect(await versionsOf(bucket, 'blobs/')).toHaveLength(1);
    const until = (await retainUntil(bucket, version?.key as string, version?.versionId as string))?.getTime() ?? 0;
    expect(until - Date.now()).toBeGreaterThan(4.9 * 86_400_000);
  });
});
