import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type CaptureInput, Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { openS3Sink } from '@offchannel/sink-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createBucket, server } from '../../../sinks/s3/src/__fixtures__/buckets.ts';
import { runCli } from '../testing/run-cli.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const key = generateEd25519NoteKey('archive.example/offchannel');
let work: string;
let bucket: string;
let url: string;

function message(index: number): CaptureInput {
  return {
    kind: 'message',
    sentAt: '2026-11-21T10:00:00Z',
    conversation: { id: 'c', type: 'direct' },
    sender: { id: 'bob' },
    direction: 'inbound',
    native: { id: `m${index}` },
    text: `message number ${index}`,
    ...(index % 10 === 0 ? { attachments: [{ bytes: new TextEncoder().encode(`attachment ${index}`), mime: 'text/plain' }] } : {}),
  };
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-s3-cli-'));
  bucket = await createBucket();
  url = `s3://${bucket}/firm/archive`;
  const sink = await openS3Sink({ endpoint: server.endpoint, url, retention: { records: { days: 1 } } });
  const recorder = new Recorder({ sink, requireRetention: 'compliance-lock', checkpoints: { signer: key, everyRecords: 20 } });
  for (const account of ['alice', 'bob']) {
    const writer = recorder.writer({ channel: 'demo', account, source: { package: 'test', version: '0' } });
    for (let index = 1; index <= 45; index++) await writer.capture(message(index));
  }
  await recorder.close();
  await sink.close();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('offchannel with s3:// archives', () => {
  it('verifies an archive in a bucket, with its signed checkpoints and Object Lock audit', async () => {
    const human = await runCli(['verify', url, '--endpoint', server.endpoint, '--key', key.verifierKey]);
    expect(human.stderr).toBe('');
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`Archive s3://${bucket}/firm/archive/`);
    expect(human.stdout).toMatch(/demo:alice\s+45 records/);
    const json = await runCli(['verify', url, '--endpoint', server.endpoint, '--key', key.verifierKey, '--json']);
    const report = JSON.parse(json.stdout) as { archive: string; ok: boolean; streams: { stream: string; records: number }[]; blobsChecked: number };
    expect(report).toMatchObject({ archive: `s3://${bucket}/firm/archive/`, ok: true, blobsChecked: 4 });
    expect(report.streams.map((stream) => [stream.stream, stream.records])).toEqual([
      ['demo:alice', 45],
      ['demo:bob', 45],
    ]);
  });

  it('proves a record from the bucket; the proof verifies with only the key', async () => {
    const out = path.join(work, 'proof.json');
    const proved = await runCli(['prove', url, 'demo:bob', '17', '--endpoint', server.endpoint, '--out', out]);
    expect(proved.code).toBe(0);
    expect(JSON.parse(await readFile(out, 'utf8'))).toMatchObject({ stream: 'demo:bob', seq: 17, treeSize: 45 });
    const checked = await runCli(['verify-proof', out, '--key', key.verifierKey]);
    expect(checked.code).toBe(0);
  });

  it('says clearly when the bucket is missing or the options do not fit', async () => {
    const missing = await runCli(['verify', 's3://oc-test-absent-bucket/x', '--endpoint', server.endpoint]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/bucket "oc-test-absent-bucket" does not exist.*\[S3_NO_SUCH_BUCKET\]/s);
    const local = await runCli(['verify', work, '--endpoint', server.endpoint]);
    expect(local.code).toBe(2);
    expect(local.stderr).toMatch(/apply to s3:\/\/ archives only/);
    const both = await runCli(['verify', url, '--path-style', '--virtual-host']);
    expect(both.code).toBe(2);
  });

  it('sink-check reports every guarantee on Ceph, and fails a bucket without Object Lock', { timeout: 60_000 }, async () => {
    const good = await runCli(['sink-check', `s3://${bucket}/scratch`, '--endpoint', server.endpoint, '--retention-seconds', '3']);
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(/PASS {2}A locked version cannot be deleted: refused \(AccessDenied\)/);
    expect(good.stdout).toMatch(/INFO {2}If-None-Match/);
    expect(good.stdout).toContain('Every guarantee the S3 sink relies on holds on this store.');
    const unlocked = await createBucket({ objectLock: false });
    const bad = await runCli(['sink-check', `s3://${unlocked}`, '--endpoint', server.endpoint, '--json']);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, checks: [{ id: 'versioning', status: 'fail' }, { id: 'object-lock', status: 'fail' }] });
    expect((await runCli(['sink-check', work])).code).toBe(2);
  });

  it('copies a bucket into a directory that verifies — with offchannel and by hand — and back into another bucket', { timeout: 60_000 }, async () => {
    const copy = path.join(work, 'copy');
    const copied = await runCli(['copy', url, copy, '--endpoint', server.endpoint]);
    expect(copied.stderr).toBe('');
    expect(copied.code).toBe(0);
    expect(copied.stdout).toMatch(/2 streams, 90 records added \(demo:alice at seq 45, demo:bob at seq 45\)/);
    expect((await runCli(['verify', copy, '--key', key.verifierKey])).code).toBe(0);
    const byHand = spawnSync('bash', [path.join(import.meta.dirname, '..', '..', '..', '..', 'docs', 'verify-by-hand.sh'), copy, key.verifierKey], { encoding: 'utf8' });
    expect(byHand.stderr).toBe('');
    expect(byHand.stdout).toContain('OK: 90 records verified by hand');
    // Running it again copies nothing; copying on into a second bucket gives a second verified copy.
    expect((await runCli(['copy', url, copy, '--endpoint', server.endpoint])).stdout).toMatch(/0 records added/);
    const second = `s3://${await createBucket()}/replica`;
    expect((await runCli(['copy', copy, second, '--endpoint', server.endpoint, '--retention', '1d'])).code).toBe(0);
    const verified = await runCli(['verify', second, '--endpoint', server.endpoint, '--key', key.verifierKey, '--json']);
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, warnings: [] });
  });

  it('places and lifts a legal hold on a stream', async () => {
    const placed = await runCli(['legal-hold', url, '--endpoint', server.endpoint, '--stream', 'demo:alice', '--on', '--reason', 'matter 2026-17']);
    expect(placed.stderr).toBe('');
    expect(placed.code).toBe(0);
    expect(placed.stdout).toMatch(/Legal hold placed on \d+ object versions of demo:alice\./);
    const one = await runCli(['legal-hold', url, '--endpoint', server.endpoint, '--stream', 'demo:alice', '--seq', '3', '--off']);
    // The whole stream is still held: lifting the record's own hold releases nothing.
    expect(one.stdout).toMatch(/Legal hold lifted from 0 object versions of demo:alice seq 3; \d+ stay held by other holds in force\./);
    expect((await runCli(['legal-hold', url, '--stream', 'demo:alice', '--on', '--off'])).code).toBe(2);
    expect((await runCli(['legal-hold', url, '--endpoint', server.endpoint, '--stream', 'demo:alice', '--seq', '999', '--on'])).stderr).toMatch(/has no record 999.*\[S3_NO_SUCH_RECORD\]/s);
  });
});
