import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder, verifyArchive } from '@offchannel/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openFsSink } from './fs-sink.ts';
import { localSegmentHash, workerSegmentHash } from './segment-hasher.ts';

// One test spawns a process: ample time on a busy machine.
vi.setConfig({ testTimeout: 60_000 });

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('workerSegmentHash', () => {
  it('hashes what was appended, in order, per segment, read back from each file, even when the caller reuses its buffer at once', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-segment-hash-'));
    dirs.push(dir);
    const buffer = Buffer.alloc(64 * 1024);
    const segments = await Promise.all(
      Array.from({ length: 3 }, async (_, index) => {
        const file = await open(path.join(dir, `segment-${index}`), 'w+');
        return { file, size: 0, hash: workerSegmentHash(() => createHash('sha256'), file.fd), local: localSegmentHash(createHash('sha256')), expected: createHash('sha256') };
      }),
    );
    for (let round = 0; round < 200; round++) {
      const segment = segments[round % segments.length] as (typeof segments)[number];
      const size = 1 + ((round * 7919) % buffer.length);
      randomBytes(size).copy(buffer);
      // A view into a larger buffer at an offset, as the sink's batches are.
      const bytes = buffer.subarray(round % 5, size);
      await segment.file.write(bytes, 0, bytes.length, segment.size);
      segment.hash.update(bytes, segment.size);
      segment.local.update(bytes, segment.size);
      segment.expected.update(bytes);
      segment.size += bytes.length;
      buffer.fill(round); // the caller's next batch overwrites the buffer
    }
    const spare = await open(path.join(dir, 'discarded'), 'w+');
    await spare.write(Buffer.from('never sealed'), 0, 12, 0);
    const discarded = workerSegmentHash(() => createHash('sha256'), spare.fd);
    discarded.update(Buffer.from('never sealed'), 0);
    await discarded.discard();
    await spare.close();
    for (const segment of segments) {
      const expected = segment.expected.digest('hex');
      expect(await segment.hash.digest()).toBe(expected);
      expect(await segment.local.digest()).toBe(expected);
      await segment.file.close();
    }
  });

  it('refuses a digest when a batch cannot be read back (the file is shorter than appended), so the seal hashes the file', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-segment-hash-'));
    dirs.push(dir);
    const file = await open(path.join(dir, 'segment'), 'w+');
    try {
      await file.write(Buffer.from('0123456789'), 0, 10, 0);
      const hash = workerSegmentHash(() => createHash('sha256'), file.fd);
      hash.update(Buffer.from('0123456789'), 0);
      hash.update(Buffer.from('abcdef'), 10); // never written
      await expect(hash.digest()).rejects.toThrow(/could not read the segment back.*ended at 10/);
      // Another segment on the same worker is unaffected.
      const other = workerSegmentHash(() => createHash('sha256'), file.fd);
      other.update(Buffer.from('0123456789'), 0);
      expect(await other.digest()).toBe(createHash('sha256').update('0123456789').digest('hex'));
    } finally {
      await file.close();
    }
  });

  it('seals every full segment with the size and SHA-256 of its file', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-seal-hash-'));
    dirs.push(dir);
    const sink = await openFsSink({ dir, segmentBytes: 3000 });
    const recorder = new Recorder({ sink });
    const writer = recorder.writer({ channel: 'demo', account: 'seal', source: { package: 'seal-test', version: '0' } });
    for (let batch = 0; batch < 8; batch++) {
      await Promise.all(
        Array.from({ length: 1 + batch }, (_, index) =>
          writer.capture({ kind: 'message', sentAt: '2026-11-21T09:30:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 's' }, direction: 'inbound', native: { id: `m${batch}-${index}` }, text: 'y'.repeat(200 + batch * 40) }),
        ),
      );
    }
    await recorder.close();
    await sink.close();
    const streamDir = path.join(dir, 'streams', 'demo:seal');
    const seals = (await readdir(streamDir)).filter((name) => name.endsWith('.seal.json'));
    expect(seals.length).toBeGreaterThanOrEqual(3);
    for (const name of seals) {
      const seal = JSON.parse(await readFile(path.join(streamDir, name), 'utf8')) as { bytes: number; sha256: string };
      const content = await readFile(path.join(streamDir, name.replace('.seal.json', '.jsonl')));
      expect(seal).toMatchObject({ bytes: content.length, sha256: createHash('sha256').update(content).digest('hex') });
    }
    const reopened = await openFsSink({ dir, readOnly: true });
    expect((await verifyArchive(reopened)).ok).toBe(true);
    await reopened.close();
  });

  it.each([
    ['after sealing segments', 'sealed', 3],
    ['when no segment was ever sealed (no digest asked for)', 'unsealed', 0],
  ] as const)('never keeps a finished process alive %s', async (_name, mode, seals) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-seal-exit-'));
    dirs.push(dir);
    const child = path.join(import.meta.dirname, '__fixtures__', 'seal-and-exit-child.ts');
    const run = spawn(process.execPath, ['--conditions=@offchannel/source', '--no-warnings', child, path.join(dir, 'archive'), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    run.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    run.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const timer = setTimeout(() => run.kill('SIGKILL'), 45_000);
    const code = await new Promise<number | null>((resolve) => run.on('exit', resolve));
    clearTimeout(timer);
    expect({ code, output }).toEqual({ code: 0, output: 'done\n' });
    const sealed = (await readdir(path.join(dir, 'archive', 'streams', 'demo:exit'))).filter((name) => name.endsWith('.seal.json'));
    if (seals === 0) expect(sealed).toEqual([]);
    else expect(sealed.length).toBeGreaterThanOrEqual(seals);
  });
});
