import { ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { adminClient, createBucket, server } from './__fixtures__/buckets.ts';
import { startLaxS3Server } from './__fixtures__/lax-s3-server.ts';
import { type ProbeCheck, probeObjectLock } from './object-lock-probe.ts';

const statuses = (checks: readonly ProbeCheck[]) => Object.fromEntries(checks.map((check) => [check.id, check.status]));

describe('the Object Lock probe (offchannel sink-check)', () => {
  it('finds every guarantee holding on Ceph RGW, and leaves nothing behind', async () => {
    const bucket = await createBucket();
    const seen: string[] = [];
    const report = await probeObjectLock({ endpoint: server.endpoint, url: `s3://${bucket}/archive`, retentionSeconds: 5, onCheck: (check) => seen.push(check.id) });
    expect(report.checks.filter((check) => check.status === 'fail')).toEqual([]);
    expect(report).toMatchObject({ ok: true, cleanedUp: true, bucket });
    expect(report.scratch).toMatch(/^archive\/offchannel-sink-check\//);
    expect(statuses(report.checks)).toEqual({
      versioning: 'pass',
      'object-lock': 'pass',
      'write-locked': 'pass',
      'retention-recorded': 'pass',
      'digest-checked': 'pass',
      'digest-required': 'info',
      'delete-refused': 'pass',
      'bypass-refused': 'pass',
      'shorten-refused': 'pass',
      'mode-change-refused': 'pass',
      'conditional-write': 'info',
      'original-kept': 'pass',
      'version-order': 'pass',
      'compare-and-append': 'pass',
      'legal-hold': 'pass',
      expiry: 'pass',
    });
    expect(seen).toEqual(report.checks.map((check) => check.id));
    // RGW 16 accepts locked uploads without a checksum and ignores If-None-Match: reported as facts.
    expect(report.checks.find((check) => check.id === 'digest-required')?.detail).toMatch(/not required/);
    expect(report.checks.find((check) => check.id === 'conditional-write')?.detail).toMatch(/not enforced/);
    const client = adminClient();
    const left = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: 'archive/' }));
    client.destroy();
    expect([...(left.Versions ?? []), ...(left.DeleteMarkers ?? [])]).toEqual([]);
  });

  it('fails a bucket without Object Lock at once', async () => {
    const bucket = await createBucket({ objectLock: false });
    const report = await probeObjectLock({ endpoint: server.endpoint, bucket, retentionSeconds: 1 });
    expect(report.ok).toBe(false);
    expect(statuses(report.checks)).toEqual({ versioning: 'fail', 'object-lock': 'fail' });
  });

  it('exposes a store that accepts Object Lock headers but enforces nothing', async () => {
    const lax = await startLaxS3Server();
    try {
      const report = await probeObjectLock({ endpoint: lax.endpoint, bucket: 'lax-bucket', retentionSeconds: 1 });
      expect(report.ok).toBe(false);
      const result = statuses(report.checks);
      // It looks fine on paper …
      expect(result).toMatchObject({ versioning: 'pass', 'object-lock': 'pass', 'write-locked': 'pass', 'retention-recorded': 'pass' });
      // … and enforces none of it.
      expect(result).toMatchObject({ 'digest-checked': 'fail', 'delete-refused': 'fail', 'bypass-refused': 'fail', 'shorten-refused': 'fail', 'mode-change-refused': 'fail', 'legal-hold': 'fail' });
    } finally {
      await lax.close();
    }
  });
});
