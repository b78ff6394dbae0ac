import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ZERO_HASH } from '@offchannel/core';
import { batchAfter } from '@offchannel/core/testing';
import { describe, expect, it } from 'vitest';
import { createBucket, server, sinkOptions } from './__fixtures__/buckets.ts';
import { openS3Sink } from './s3-sink.ts';
import { parseRetentionPeriod } from './retention.ts';
import { parseS3Url } from './s3-layout.ts';

describe('S3 sink: refusals with clear errors', () => {
  it('refuses wrong credentials, naming the standard chain and never the secret', async () => {
    const bucket = await createBucket();
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-creds-'));
    const saved = { ...process.env };
    try {
      await writeFile(path.join(dir, 'credentials'), '[wrong]\naws_access_key_id = AKIAWRONGWRONGWRONG1\naws_secret_access_key = s3cr3t-that-must-not-leak\n', { mode: 0o600 });
      process.env.AWS_SHARED_CREDENTIALS_FILE = path.join(dir, 'credentials');
      delete process.env.AWS_PROFILE;
      const error = await openS3Sink(sinkOptions(bucket, { profile: 'wrong' })).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: 'S3_ACCESS_DENIED', message: expect.stringMatching(/standard chain/) as string });
      expect((error as Error).message).not.toContain('s3cr3t');
    } finally {
      process.env = saved;
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a missing bucket and a bucket without Object Lock, saying how to fix it', async () => {
    await expect(openS3Sink(sinkOptions('oc-test-no-such-bucket-here'))).rejects.toMatchObject({ code: 'S3_NO_SUCH_BUCKET', message: expect.stringMatching(/object-lock-enabled-for-bucket/) as string });
    for (const settings of [{ objectLock: false }, { objectLock: false, versioning: true }]) {
      const bucket = await createBucket(settings);
      await expect(openS3Sink(sinkOptions(bucket))).rejects.toMatchObject({ code: 'S3_OBJECT_LOCK_DISABLED', message: expect.stringMatching(/put-object-lock-configuration/) as string });
      // An auditor may still read such a bucket; the audit says what is wrong.
      const reader = await openS3Sink(sinkOptions(bucket, { readOnly: true }));
      const findings = [];
      for await (const finding of reader.audit()) findings.push(finding.code);
      expect(findings).toContain('S3_OBJECT_LOCK_DISABLED');
      await reader.close();
    }
  });

  it('reports a refused connection as SINK_UNAVAILABLE, quickly', async () => {
    const started = Date.now();
    await expect(openS3Sink({ endpoint: 'http://127.0.0.1:9', bucket: 'any-bucket', maxAttempts: 2 })).rejects.toMatchObject({ code: 'SINK_UNAVAILABLE', message: expect.stringMatching(/ECONNREFUSED/) as string });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('refuses bad names, URLs, prefixes and retention settings before any request', async () => {
    for (const url of ['s3://', 's3://UPPER/x', 's3://a/x', 'http://bucket/x', 's3://bucket/../x', 's3://bucket/a//b']) expect(() => parseS3Url(url), url).toThrow(expect.objectContaining({ code: 'S3_CONFIG_INVALID' }));
    expect(parseS3Url('s3://my-archive/firm/2026/')).toEqual({ bucket: 'my-archive', prefix: 'firm/2026/' });
    for (const text of ['', '7', '7w', '-1y', '0d', '101y']) expect(() => parseRetentionPeriod(text), text).toThrow(expect.objectContaining({ code: 'S3_CONFIG_INVALID' }));
    expect(parseRetentionPeriod('1y30d')).toEqual({ years: 1, days: 30 });
    await expect(openS3Sink({ ...sinkOptions('valid-bucket'), retention: { records: { years: 7 }, checkpoints: { years: 6 } } })).rejects.toMatchObject({ code: 'S3_CONFIG_INVALID', message: expect.stringMatching(/checkpoints is shorter/) as string });
    await expect(openS3Sink({ endpoint: server.endpoint, url: 's3://valid-bucket/x', legalHold: { streams: ['../etc'] } })).rejects.toMatchObject({ code: 'INVALID_STREAM_NAME' });
  });

  it('rejects every write on a read-only sink and every call after close', async () => {
    const bucket = await createBucket();
    const reader = await openS3Sink(sinkOptions(bucket, { readOnly: true }));
    await expect(reader.appendBatch(batchAfter('demo:alice', { seq: 0, hash: ZERO_HASH }, 1))).rejects.toMatchObject({ code: 'SINK_READ_ONLY' });
    await expect(reader.setLegalHold({ stream: 'demo:alice' }, true)).rejects.toMatchObject({ code: 'SINK_READ_ONLY' });
    await reader.close();
    await expect(reader.streams()).rejects.toMatchObject({ code: 'CLOSED' });
  });
});
