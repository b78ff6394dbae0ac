import { createHash } from 'node:crypto';
import { ZERO_HASH, sha256Hex } from '@offchannel/core';
import { batchAfter } from '@offchannel/core/testing';
import { describe, expect, it } from 'vitest';
import { createBucket, sinkOptions } from './__fixtures__/buckets.ts';
import { openS3Sink } from './s3-sink.ts';

interface SentPut {
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
}

/** Records every PUT the sink's own client sends, as it goes on the wire (after signing). */
function recordPuts(sink: Awaited<ReturnType<typeof openS3Sink>>): SentPut[] {
  const sent: SentPut[] = [];
  sink.client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { method: string; path: string; headers: Record<string, string>; body: unknown; query?: Record<string, unknown> };
      if (request.method === 'PUT' && !Object.keys(request.query ?? {}).some((name) => name === 'legal-hold' || name === 'retention')) {
        sent.push({ path: request.path, headers: { ...request.headers }, body: Uint8Array.from(request.body as Uint8Array) });
      }
      return next(args);
    },
    { step: 'finalizeRequest', name: 'recordPuts', priority: 'low' },
  );
  return sent;
}

describe('integrity headers (AWS refuses Object Lock uploads without them; Ceph would not notice)', () => {
  it('sends Content-MD5, a SHA-256 checksum and COMPLIANCE retention with every object it writes', async () => {
    const bucket = await createBucket();
    const sink = await openS3Sink(sinkOptions(bucket));
    const sent = recordPuts(sink);
    const stream = 'demo:alice';
    const head = await sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 3));
    await sink.appendBatch(batchAfter(stream, head, 1));
    const blob = new Uint8Array(100_000).map((_, index) => index % 256);
    await sink.putBlob(sha256Hex(blob), blob);
    await sink.putCheckpoint(stream, 4, 'note', new TextEncoder().encode('note'));
    await sink.putCheckpoint(stream, 4, 'rfc3161', new TextEncoder().encode('token'));
    await sink.putTile(stream, { level: 0, index: 0, width: 4 }, new Uint8Array(128));
    await sink.setLegalHold({ stream }, true);
    await sink.close();
    const kinds = sent.map((put) => decodeURIComponent(put.path).replace(/^\/[^/]+\//, '').split('/')[0]);
    expect(kinds.sort()).toEqual(['blobs', 'checkpoints', 'checkpoints', 'legal-holds', 'streams', 'streams', 'tiles']);
    for (const put of sent) {
      expect(put.headers['content-md5'], put.path).toBe(createHash('md5').update(put.body).digest('base64'));
      expect(put.headers['x-amz-checksum-sha256'], put.path).toBe(createHash('sha256').update(put.body).digest('base64'));
      expect(put.headers['x-amz-object-lock-mode'], put.path).toBe('COMPLIANCE');
      expect(Date.parse(put.headers['x-amz-object-lock-retain-until-date'] ?? '') - Date.now(), put.path).toBeGreaterThan(86_000_000);
      expect(put.headers['if-none-match'], put.path).toBe('*');
    }
  });

  it('stores nothing when the store finds the body does not match its Content-MD5', async () => {
    const bucket = await createBucket();
    const sink = await openS3Sink(sinkOptions(bucket, { maxAttempts: 1 }));
    // Corrupt the digest before signing, as a faulty network path would corrupt the body.
    sink.client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { method: string; headers: Record<string, string> };
        if (request.method === 'PUT') request.headers['content-md5'] = createHash('md5').update('something else').digest('base64');
        return next(args);
      },
      { step: 'build', name: 'corruptDigest', priority: 'low' },
    );
    const stream = 'demo:alice';
    await expect(sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 2))).rejects.toMatchObject({ code: 'S3_REQUEST_FAILED', status: 400, message: expect.stringMatching(/BadDigest/) as string });
    expect(await sink.head(stream)).toEqual({ seq: 0, hash: ZERO_HASH });
    expect(await sink.streams()).toEqual([]);
    await sink.close();
  });
});
