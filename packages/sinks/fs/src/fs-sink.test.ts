import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFile, chmod, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder, ZERO_HASH, generateEd25519NoteKey, sha256Hex, verifyArchive } from '@offchannel/core';
import { batchAfter, runSinkConformance } from '@offchannel/core/testing';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { openFsSink } from './fs-sink.ts';
import { syncDirectory } from './fs-utils.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

async function temporaryArchive(): Promise<string> {
  return path.join(await mkdtemp(path.join(tmpdir(), 'offchannel-fs-')), 'archive');
}

for (const segmentBytes of [undefined, 700]) {
  describe(segmentBytes ? `fs sink with ${segmentBytes}-byte segments` : 'fs sink', () => {
    runSinkConformance({
      test: it,
      checkpointRanges: true,
      createFixture: async () => {
        const dir = await temporaryArchive();
        return {
          open: () => openFsSink({ dir, ...(segmentBytes ? { segmentBytes } : {}) }),
          openReadOnly: () => openFsSink({ dir, readOnly: true }),
          destroy: () => rm(path.dirname(dir), { recursive: true, force: true }),
        };
      },
    });
  });
}

describe('fs sink layout and recovery', () => {
  let dir: string;
  const stream = 'demo:alice';
  beforeEach(async () => {
    dir = await temporaryArchive();
  });
  afterEach(async () => {
    await rm(path.dirname(dir), { recursive: true, force: true });
  });

  /** Real records through the Recorder, so verifyArchive can check them. */
  async function record(count: number, segmentBytes = 1500) {
    const sink = await openFsSink({ dir, segmentBytes });
    const writer = new Recorder({ sink }).writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } });
    for (let index = 0; index < count; index++) {
      await writer.capture({ kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` });
    }
    return { sink, head: await sink.head(stream) };
  }

  async function fill(records: number, segmentBytes = 500) {
    const sink = await openFsSink({ dir, segmentBytes });
    let head = { seq: 0, hash: ZERO_HASH };
    for (let index = 0; index < records; index++) head = await sink.appendBatch(batchAfter(stream, head, 1, `r${index}`));
    return { sink, head };
  }

  it('writes the documented layout: sealed read-only segments whose seals sha256sum can check', async () => {
    const { sink, head } = await record(20);
    const blob = new TextEncoder().encode('photo');
    await sink.putBlob(sha256Hex(blob), blob);
    await sink.close();
    expect(JSON.parse(await readFile(path.join(dir, 'offchannel-archive.json'), 'utf8'))).toEqual({ format: 'offchannel-archive', version: 1 });
    const files = (await readdir(path.join(dir, 'streams', stream))).sort();
    const segments = files.filter((name) => name.endsWith('.jsonl'));
    expect(segments[0]).toBe('0000000000000001.jsonl');
    expect(segments.length).toBeGreaterThan(2);
    let lines = 0;
    for (const segment of segments) {
      const file = path.join(dir, 'streams', stream, segment);
      const content = await readFile(file);
      lines += content.toString('utf8').split('\n').length - 1;
      const sealFile = file.replace('.jsonl', '.seal.json');
      if (!files.includes(path.basename(sealFile))) {
        expect(segment).toBe(segments.at(-1));
        expect((await stat(file)).mode & 0o777).toBe(0o644);
        continue;
      }
      const seal = JSON.parse(await readFile(sealFile, 'utf8')) as { sha256: string; bytes: number; firstSeq: number; lastSeq: number; lastHash: string };
      expect(seal.sha256).toBe(createHash('sha256').update(content).digest('hex'));
      expect(seal.bytes).toBe(content.length);
      expect(seal.firstSeq).toBe(Number(segment.slice(0, 16)));
      const lastLine = content.toString('utf8').trimEnd().split('\n').at(-1) ?? '';
      expect(seal.lastHash).toBe(sha256Hex(new TextEncoder().encode(lastLine)));
      expect((await stat(file)).mode & 0o777).toBe(0o444);
      expect((await stat(sealFile)).mode & 0o777).toBe(0o444);
    }
    expect(lines).toBe(head.seq);
    expect((await stat(path.join(dir, 'blobs', 'sha256', sha256Hex(blob)))).mode & 0o777).toBe(0o444);
    const reader = await openFsSink({ dir, readOnly: true });
    expect([...(await collectAudit(reader))]).toEqual([]);
    expect((await verifyArchive(reader)).ok).toBe(true);
    await reader.close();
  });

  it('cuts a torn, never-acknowledged tail at restart, keeps a copy in quarantine, and continues', async () => {
    const { sink, head } = await fill(3, 1_000_000);
    await sink.close();
    const segment = path.join(dir, 'streams', stream, '0000000000000001.jsonl');
    const acknowledged = await readFile(segment);
    await appendFile(segment, '{"partial":"rec');
    const reader = await openFsSink({ dir, readOnly: true });
    expect(await reader.head(stream)).toEqual(head);
    await reader.close();
    const reopened = await openFsSink({ dir });
    expect(await reopened.head(stream)).toEqual(head);
    expect(Buffer.compare(await readFile(segment), acknowledged)).toBe(0);
    const quarantined = await readdir(path.join(dir, 'quarantine', stream));
    expect(quarantined).toHaveLength(1);
    expect(await readFile(path.join(dir, 'quarantine', stream, quarantined[0] as string), 'utf8')).toBe('{"partial":"rec');
    const next = await reopened.appendBatch(batchAfter(stream, head, 2));
    expect(next.seq).toBe(5);
    await reopened.close();
  });

  it('refuses to write after a complete line that breaks the chain, instead of discarding it', async () => {
    const { sink, head } = await fill(3, 1_000_000);
    await sink.close();
    await appendFile(path.join(dir, 'streams', stream, '0000000000000001.jsonl'), '{"seq":4,"prev":"not the hash"}\n');
    const reopened = await openFsSink({ dir });
    await expect(reopened.head(stream)).rejects.toMatchObject({ code: 'ARCHIVE_CORRUPT', seq: 4 });
    await expect(reopened.appendBatch(batchAfter(stream, head, 1))).rejects.toMatchObject({ code: 'ARCHIVE_CORRUPT' });
    await reopened.close();
  });

  it('finishes a seal interrupted after the seal was written', async () => {
    const { sink } = await fill(12);
    await sink.close();
    const seals = (await readdir(path.join(dir, 'streams', stream))).filter((name) => name.endsWith('.seal.json')).sort();
    const segment = path.join(dir, 'streams', stream, (seals.at(-1) as string).replace('.seal.json', '.jsonl'));
    await chmod(segment, 0o644);
    const reopened = await openFsSink({ dir, segmentBytes: 500 });
    await reopened.head(stream);
    expect((await stat(segment)).mode & 0o777).toBe(0o444);
    await reopened.close();
  });

  it('removes staging files a crashed writer left behind, but not fresh ones', async () => {
    const { sink } = await fill(1);
    await sink.close();
    const stale = path.join(dir, 'tmp', 'abc.jsonl.0123456789ab');
    const fresh = path.join(dir, 'tmp', 'def.jsonl.0123456789ab');
    // Staged names are `<name>.<per-process prefix><counter>` (fs-utils.ts); cleanup goes by age.
    const staleBlob = path.join(dir, 'tmp', `${'e'.repeat(64)}.0123456789ab2s`);
    await writeFile(stale, 'half');
    await writeFile(staleBlob, 'half');
    await writeFile(fresh, 'in progress');
    const old = new Date(Date.now() - 3_600_000);
    await utimes(stale, old, old);
    await utimes(staleBlob, old, old);
    const reopened = await openFsSink({ dir });
    expect((await readdir(path.join(dir, 'tmp'))).sort()).toEqual(['def.jsonl.0123456789ab']);
    await reopened.close();
  });

  it('verify reports a renamed segment and stray files instead of throwing', async () => {
    const { sink } = await record(8, 1_000_000);
    await sink.close();
    const streamDir = path.join(dir, 'streams', stream);
    await rename(path.join(streamDir, '0000000000000001.jsonl'), path.join(streamDir, '0000000000000005.jsonl'));
    await writeFile(path.join(dir, 'streams', 'demo:bob'), 'a file where a stream directory should be');
    const reader = await openFsSink({ dir, readOnly: true });
    const report = await verifyArchive(reader);
    expect(report.failures[0]).toMatchObject({ stream, seq: 1, code: 'SEQ_POSITION' });
    expect(report.failures).toContainEqual(expect.objectContaining({ code: 'UNEXPECTED_FILE' }));
    await reader.close();
  });

  it('refuses a stream whose name differs from an existing one only in letter case', async () => {
    const { sink, head } = await fill(1);
    await expect(sink.appendBatch(batchAfter('demo:Alice', { seq: 0, hash: ZERO_HASH }, 1))).rejects.toMatchObject({ code: 'INVALID_STREAM_NAME' });
    expect((await sink.appendBatch(batchAfter(stream, head, 1))).seq).toBe(2);
    await sink.close();
  });

  it('refuses a non-empty directory that is not an archive, and a missing one read-only', async () => {
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'notes.txt'), 'x');
    await expect(openFsSink({ dir })).rejects.toMatchObject({ code: 'SINK_UNSUITABLE' });
    await expect(openFsSink({ dir: `${dir}-missing`, readOnly: true })).rejects.toThrow(/no offchannel archive/);
  });

  it('lets only one process write a stream, and frees it when that process is killed', { timeout: 30_000 }, async () => {
    const { sink, head } = await fill(1);
    await sink.close();
    const holder = spawn(process.execPath, ['--conditions=@offchannel/source', '--experimental-strip-types', '--no-warnings', path.join(import.meta.dirname, '__fixtures__', 'hold-stream.ts'), dir, stream], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) => {
      holder.stdout.once('data', () => {
        resolve();
      });
    });
    const contender = await openFsSink({ dir });
    await expect(contender.appendBatch(batchAfter(stream, head, 1))).rejects.toMatchObject({ code: 'SINK_CONFLICT' });
    await expect(contender.head(stream)).rejects.toMatchObject({ code: 'SINK_CONFLICT' });
    expect((await contender.appendBatch(batchAfter('demo:bob', { seq: 0, hash: ZERO_HASH }, 1))).seq).toBe(1);
    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));
    expect((await contender.appendBatch(batchAfter(stream, head, 1))).seq).toBe(2);
    await contender.close();
  });

  it('stores a burst of 3,000 blobs at once under a 256 file-descriptor limit (no EMFILE)', { timeout: 60_000 }, async () => {
    const { sink } = await fill(1);
    await sink.close();
    const fixture = path.join(import.meta.dirname, '__fixtures__', 'blob-burst.ts');
    // `ulimit -n` is a shell builtin: the child gets the limit that a stock system service often has.
    const child = spawn('/bin/sh', ['-c', `ulimit -n 256 && exec "$0" --conditions=@offchannel/source --experimental-strip-types --no-warnings "$1" "$2" 3000`, process.execPath, fixture, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(err).not.toMatch(/EMFILE/);
    expect(code).toBe(0);
    expect(out.trim()).toBe('3000');
    expect((await readdir(path.join(dir, 'blobs', 'sha256'))).length).toBeGreaterThanOrEqual(3000);
  });

  it('audits sealed segments: truncation, edits, writable seals and stray files', async () => {
    const { sink } = await record(20, 900);
    await sink.close();
    const streamDir = path.join(dir, 'streams', stream);
    const sealed = (await readdir(streamDir)).filter((name) => name.endsWith('.seal.json')).sort();
    const second = path.join(streamDir, (sealed[1] as string).replace('.seal.json', '.jsonl'));
    const seal = JSON.parse(await readFile(path.join(streamDir, sealed[1] as string), 'utf8')) as { firstSeq: number; lastSeq: number };
    await chmod(second, 0o644);
    const content = await readFile(second);
    const firstLineEnd = content.indexOf(0x0a) + 1;
    await truncate(second, firstLineEnd);
    await writeFile(path.join(dir, 'streams', stream, 'notes.txt'), 'x');
    const reader = await openFsSink({ dir, readOnly: true });
    const findings = await collectAudit(reader);
    expect(findings).toContainEqual(expect.objectContaining({ code: 'SEGMENT_SEAL_MISMATCH', stream, seq: seal.firstSeq + 1 }));
    expect(findings).toContainEqual(expect.objectContaining({ code: 'SEALED_FILE_WRITABLE', stream }));
    expect(findings).toContainEqual(expect.objectContaining({ code: 'UNEXPECTED_FILE', stream }));
    const report = await verifyArchive(reader);
    expect(report.ok).toBe(false);
    expect(report.failures[0]).toMatchObject({ stream, seq: seal.firstSeq + 1, code: 'SEQ_GAP' });
    await reader.close();
  });

  it('reads from any seq correctly while the stream grows and rolls over segments (resumed reads)', async () => {
    const sink = await openFsSink({ dir, segmentBytes: 700 });
    const all: Uint8Array[] = [];
    let head = { seq: 0, hash: ZERO_HASH };
    for (let round = 0; round < 60; round++) {
      const batch = batchAfter(stream, head, 1 + (round % 5), `round-${round}`);
      head = await sink.appendBatch(batch);
      all.push(...batch.records);
      for (const from of [head.seq - batch.records.length + 1, Math.max(1, head.seq - 7), 1 + ((round * 13) % head.seq), head.seq]) {
        const read = [];
        for await (const stored of sink.read(stream, { fromSeq: from })) read.push(stored);
        expect(read.map((stored) => stored.seq), `round ${round} from ${from}`).toEqual(all.slice(from - 1).map((_, index) => from + index));
        expect(read.every((stored, index) => Buffer.from(stored.bytes).equals(all[from - 1 + index] as Uint8Array))).toBe(true);
      }
    }
    await sink.close();
  });

  it('still verifies a stream whose segments were emptied, and notices a note removed from beside its token', async () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const sink = await openFsSink({ dir });
    const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 10 } });
    for (const account of ['alice', 'bob']) {
      const writer = recorder.writer({ channel: 'demo', account, source: { package: 'test', version: '0' } });
      for (let index = 0; index < 20; index++) {
        await writer.capture({ kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` });
      }
    }
    await recorder.close();
    await sink.close();
    for (const segment of await readdir(path.join(dir, 'streams', 'demo:bob'))) {
      const file = path.join(dir, 'streams', 'demo:bob', segment);
      await chmod(file, 0o644);
      await truncate(file, 0);
    }
    await writeFile(path.join(dir, 'checkpoints', 'demo:alice', '0000000000000010.rfc3161'), 'token');
    await rm(path.join(dir, 'checkpoints', 'demo:alice', '0000000000000010.note'));
    const reader = await openFsSink({ dir, readOnly: true });
    expect(await reader.streams()).toEqual(['demo:alice', 'demo:bob']);
    const report = await verifyArchive(reader, { verifiers: [key.verifier] });
    expect(report.ok).toBe(false);
    expect(report.failures).toContainEqual(expect.objectContaining({ stream: 'demo:bob', code: 'CHECKPOINT_BEYOND_STREAM', severity: 'critical' }));
    expect(report.failures).toContainEqual(expect.objectContaining({ stream: 'demo:alice', code: 'CHECKPOINT_NOTE_MISSING', seq: 10 }));
    await reader.close();
  });
});

async function collectAudit(sink: Awaited<ReturnType<typeof openFsSink>>) {
  const findings = [];
  for await (const finding of sink.audit()) findings.push(finding);
  return findings;
}

describe('directory fsyncs are coalesced', () => {
  it('many blobs stored at once are each durable before they resolve, and a failing sync fails only its callers', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-dirsync-'));
    try {
      const sink = await openFsSink({ dir });
      const blobs = Array.from({ length: 200 }, (_, index) => Buffer.from(`blob ${index}`));
      const results = await Promise.all(blobs.map((bytes) => sink.putBlob(sha256Hex(bytes), bytes)));
      expect(results.every((result) => result.created)).toBe(true);
      await sink.close();
      const reader = await openFsSink({ dir, readOnly: true });
      for (const bytes of blobs) expect(Buffer.from((await reader.getBlob(sha256Hex(bytes))) ?? []).equals(bytes)).toBe(true);
      await reader.close();
      const missing = path.join(dir, 'no-such-dir');
      const settled = await Promise.allSettled(Array.from({ length: 5 }, () => syncDirectory(missing)));
      expect(settled.every((result) => result.status === 'rejected' && (result.reason as { code?: string }).code === 'ENOENT')).toBe(true);
      await expect(syncDirectory(dir)).resolves.toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
