/**
 * An archive handed to an auditor may hold anything: a segment with no newline, a FIFO where a
 * blob should be, a symbolic link to a file outside the archive, a device node. Reading it must
 * end promptly with a finding that names the file — never hang, never read through a link,
 * never call the archive clean.
 */
import { spawnSync } from 'node:child_process';
import { constants } from 'node:fs';
import { appendFile, mkdtemp, open, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { HostAttestor, MAX_RECORD_BYTES, Recorder, type VerificationReport, generateEd25519NoteKey, readAttestations, verifyArchive } from '@offchannel/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openFsSink } from './fs-sink.ts';

const stream = 'demo:alice';
const RECORDS = 32;
const clock = () => new Date('2026-11-21T10:00:00Z');
const signer = generateEd25519NoteKey('archive.example/offchannel');
let work: string;
let dir: string;
const fifos: string[] = [];

beforeEach(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-hostile-'));
  dir = path.join(work, 'archive');
});
afterEach(async () => {
  // A reader blocked on a FIFO (the old behaviour) is released by opening its other end.
  for (const fifo of fifos.splice(0)) {
    await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).then((handle) => handle.close(), () => undefined);
  }
  await rm(work, { recursive: true, force: true });
});

/** 32 records (one with an attachment) in small segments — the newest one not full, so not sealed — signed checkpoints and tiles. */
async function record(): Promise<void> {
  const sink = await openFsSink({ dir, segmentBytes: 2_000 });
  const recorder = new Recorder({ sink, clock, checkpoints: { signer, everyRecords: 10 } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } });
  for (let index = 1; index <= RECORDS; index++) {
    await writer.capture({
      kind: 'message',
      sentAt: '2026-11-21T10:00:00Z',
      conversation: { id: 'c', type: 'direct' },
      sender: { id: 'bob' },
      direction: 'inbound',
      native: { id: `m${index}` },
      text: `message ${index}`,
      ...(index === 5 ? { attachments: [{ bytes: new TextEncoder().encode('attachment'), mime: 'text/plain' }] } : {}),
    });
  }
  await recorder.close();
  await sink.close();
}

/** Verifies with a deadline: a hang fails the test instead of stalling the run. */
async function verifyWithin(ms: number, options: Parameters<typeof verifyArchive>[1] = {}): Promise<VerificationReport> {
  const sink = await openFsSink({ dir, readOnly: true });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      verifyArchive(sink, { workers: 0, ...options }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`verify did not finish within ${ms} ms`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await sink.close();
  }
}

function codes(report: VerificationReport): string[] {
  return [...report.failures, ...report.warnings].map((finding) => finding.code);
}

/** Every file kind verify opens, found in a freshly recorded archive. */
async function archiveFile(kind: string): Promise<string> {
  const list = async (sub: string) => (await readdir(path.join(dir, sub), { recursive: true })).map((name) => path.join(dir, sub, name)).sort();
  const files = {
    segment: async () => (await list(`streams/${stream}`)).find((file) => file.endsWith('.jsonl')),
    'last segment': async () => {
      const last = (await list(`streams/${stream}`)).filter((file) => file.endsWith('.jsonl')).at(-1);
      if (last && (await stat(last.replace('.jsonl', '.seal.json')).catch(() => undefined))) throw new Error('the newest segment is sealed; change RECORDS');
      return last;
    },
    seal: async () => (await list(`streams/${stream}`)).find((file) => file.endsWith('.seal.json')),
    checkpoint: async () => (await list(`checkpoints/${stream}`)).find((file) => file.endsWith('.note')),
    tile: async () => {
      for (const file of await list(`tiles/${stream}`)) if ((await stat(file)).isFile()) return file;
      return undefined;
    },
    blob: async () => (await list('blobs/sha256')).at(0),
  } as Record<string, () => Promise<string | undefined>>;
  const file = await files[kind]?.();
  if (!file) throw new Error(`no ${kind} in the test archive`);
  return file;
}

/** Replaces `file` with something that is not a regular file, keeping the original aside. */
async function replaceWith(file: string, what: 'fifo' | 'symlink' | 'device'): Promise<void> {
  await rename(file, `${file}.orig`);
  if (what === 'symlink') await symlink(`${file}.orig`, file);
  else {
    const made = spawnSync('mknod', what === 'fifo' ? [file, 'p'] : [file, 'c', '1', '3'], { timeout: 10_000 });
    if (made.status !== 0) throw new Error(`mknod failed: ${String(made.stderr)}`);
    if (what === 'fifo') fifos.push(file);
  }
}

const isRoot = process.getuid?.() === 0;
const kinds = ['segment', 'last segment', 'seal', 'checkpoint', 'tile', 'blob'];

describe('files that are not regular files', () => {
  for (const kind of kinds) {
    for (const what of ['fifo', 'symlink', 'device'] as const) {
      it.skipIf(what === 'device' && !isRoot)(`a ${what} as a ${kind}: verify names it and ends promptly`, { timeout: 60_000 }, async () => {
        await record();
        const file = await archiveFile(kind);
        await replaceWith(file, what);
        const report = await verifyWithin(20_000, { verifiers: [signer.verifier] });
        expect(report.ok).toBe(false);
        const named = [...report.failures, ...report.warnings].find((finding) => finding.code === 'FILE_NOT_REGULAR' || finding.message.includes('not a regular file'));
        expect(named?.message).toContain(path.basename(file));
      });
    }
  }

  it('a FIFO as the archive marker: opening the archive fails with a typed error', { timeout: 60_000 }, async () => {
    await record();
    await replaceWith(path.join(dir, 'offchannel-archive.json'), 'fifo');
    await expect(openFsSink({ dir, readOnly: true })).rejects.toMatchObject({ code: 'FILE_NOT_REGULAR' });
  });

  it('a linked stream directory is not read through', { timeout: 60_000 }, async () => {
    await record();
    const streamDir = path.join(dir, 'streams', stream);
    await rename(streamDir, path.join(work, 'elsewhere'));
    await symlink(path.join(work, 'elsewhere'), streamDir);
    const report = await verifyWithin(20_000, { streams: [stream] });
    expect(report.ok).toBe(false);
    expect(report.failures.map((failure) => failure.message).join('\n')).toContain('symbolic link');
  });

  for (const linked of ['blobs/sha256', 'blobs', 'streams', 'checkpoints', 'tiles']) {
    it(`a linked ${linked} directory: opening the archive fails, naming it`, { timeout: 60_000 }, async () => {
      await record();
      const target = path.join(dir, ...linked.split('/'));
      await rename(target, path.join(work, 'elsewhere'));
      await symlink(path.join(work, 'elsewhere'), target);
      await expect(openFsSink({ dir, readOnly: true })).rejects.toMatchObject({ code: 'FILE_NOT_REGULAR', message: expect.stringContaining(`${linked} is a symbolic link`) as unknown });
    });
  }

  for (const sub of ['checkpoints', 'tiles']) {
    it(`a linked ${sub}/<stream> directory is not read through`, { timeout: 60_000 }, async () => {
      await record();
      const target = path.join(dir, sub, stream);
      await rename(target, path.join(work, 'elsewhere'));
      await symlink(path.join(work, 'elsewhere'), target);
      const report = await verifyWithin(20_000, { verifiers: [signer.verifier] });
      expect(report.ok).toBe(false);
      expect([...report.failures, ...report.warnings].map((finding) => finding.message).join('\n')).toContain(`${sub}/${stream} is a symbolic link`);
    });
  }

  it('--quick (blob sizes only) refuses a FIFO blob too', { timeout: 60_000 }, async () => {
    await record();
    await replaceWith(await archiveFile('blob'), 'fifo');
    const report = await verifyWithin(20_000, { blobContent: false });
    expect(report.failures.map((failure) => failure.code)).toContain('BLOB_UNREADABLE');
  });
});

describe('lines without an end', () => {
  for (const workers of [0, 2]) {
    it(`a 256 MiB segment without a newline (${workers} workers): verified in seconds, and the archive is not called clean`, { timeout: 120_000 }, async () => {
      await record();
      const file = await archiveFile('last segment');
      const junk = Buffer.alloc(1024 * 1024, 0x7b); // "{{{{…"
      for (let index = 0; index < 256; index++) await appendFile(file, junk);
      const started = performance.now();
      const report = await verifyWithin(100_000, { workers });
      const seconds = (performance.now() - started) / 1000;
      expect(report.ok).toBe(false);
      expect(report.failures.map((failure) => failure.code)).toContain('SEGMENT_TAIL_INVALID');
      expect(report.streams[0]?.records).toBe(RECORDS);
      expect(seconds).toBeLessThan(20); // quadratic before (64 MiB: 10 s; 256 MiB: minutes); about 1 s now
    });
  }

  it('an over-long line followed by records: reported as too large at its seq, read in linear time', { timeout: 120_000 }, async () => {
    await record();
    const file = await archiveFile('last segment');
    const handle = await open(file, 'a');
    for (let index = 0; index < 64; index++) await handle.write(Buffer.alloc(1024 * 1024, 0x7b));
    await handle.write('\n{"not":"a record"}\n');
    await handle.close();
    const started = performance.now();
    const report = await verifyWithin(100_000);
    expect((performance.now() - started) / 1000).toBeLessThan(20);
    expect(report.failures[0]).toMatchObject({ code: 'RECORD_TOO_LARGE', seq: RECORDS + 1 });
  });

  it('a torn tail of the newest segment is a warning naming stream and byte offset', { timeout: 60_000 }, async () => {
    await record();
    const file = await archiveFile('last segment');
    const { size } = await stat(file);
    await appendFile(file, '{"v":1,"stream":"demo:al');
    const report = await verifyWithin(20_000);
    expect(report.ok).toBe(true);
    expect(report.warnings).toEqual([expect.objectContaining({ code: 'TORN_TAIL', stream, message: expect.stringContaining(`at byte offset ${size}`) as unknown })]);
    expect(report.warnings[0]?.message).toContain(path.basename(file));
  });

  it('a partial line longer than any record is a failure, not a torn tail', { timeout: 60_000 }, async () => {
    await record();
    const file = await archiveFile('last segment');
    await appendFile(file, Buffer.alloc(MAX_RECORD_BYTES + 1, 0x7b));
    const report = await verifyWithin(20_000);
    expect(codes(report)).toEqual(['SEGMENT_TAIL_INVALID']);
  });
});

describe('verifying selected streams', () => {
  it('runs the physical audit for the selected streams only', { timeout: 60_000 }, async () => {
    await record();
    const seal = await archiveFile('seal');
    const segment = seal.replace('.seal.json', '.jsonl');
    await rename(segment, `${segment}.orig`);
    await writeFile(segment, ''); // a sealed segment emptied: only the audit sees it
    const selected = await verifyWithin(20_000, { streams: [stream] });
    expect(codes(selected)).toContain('SEGMENT_SEAL_MISMATCH');
    const sink = await openFsSink({ dir });
    await new Recorder({ sink, clock }).writer({ channel: 'demo', account: 'bob', source: { package: 'test', version: '0' } }).capture({ kind: 'system', key: 'x', system: { event: 'capture-started' } });
    await sink.close();
    const other = await verifyWithin(20_000, { streams: ['demo:bob'] });
    expect(other.ok).toBe(true);
    expect(codes(other)).toEqual([]);
  });
});

describe('hostile attestation files', () => {
  /** Two attestations of host cap-1 over the recorded stream. */
  async function attest(): Promise<string> {
    await record();
    const sink = await openFsSink({ dir });
    const recorder = new Recorder({ sink, clock, checkpoints: { signer } });
    await recorder.writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } }).lookup('open');
    const attestor = await HostAttestor.open({ sink, host: 'cap-1', signer, clock });
    const lines = () => recorder.merkleHeads().map((head) => ({ stream: head.stream, size: head.size, root: Buffer.from(head.root).toString('base64'), state: 'connected' }));
    expect(lines()).toHaveLength(1);
    await attestor.attest(lines());
    await attestor.attest(lines());
    await recorder.close();
    await sink.close();
    return path.join(dir, 'attestations', 'cap-1', '2026-11-21');
  }

  it('a FIFO or device where a note belongs is named and never read; the other notes still count', { timeout: 60_000 }, async () => {
    for (const what of ['fifo', 'device'] as const) {
      const day = await attest();
      const file = path.join(day, '0000000000000002.note');
      await rm(file, { force: true });
      const made = spawnSync('mknod', what === 'fifo' ? [file, 'p'] : [file, 'c', '1', '3'], { timeout: 10_000 });
      if (made.status !== 0) {
        expect(what).toBe('device'); // mknod of a device needs privileges some runners lack
        continue;
      }
      if (what === 'fifo') fifos.push(file);
      const report = await verifyWithin(20_000, { verifiers: [signer.verifier] });
      expect(codes(report)).toEqual(['FILE_NOT_REGULAR']);
      expect(report.failures[0]?.message).toContain('attestation cap-1 #2');
      const sink = await openFsSink({ dir, readOnly: true });
      const invalid: number[] = [];
      const read: number[] = [];
      for await (const attestation of readAttestations(sink, { verifier: signer.verifier, onInvalid: (id) => invalid.push(id.seq) })) read.push(attestation.seq);
      await sink.close();
      expect([read, invalid]).toEqual([[1], [2]]);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a symbolic link in place of attestations/ or a host directory is refused, not followed', { timeout: 60_000 }, async () => {
    const day = await attest();
    const outside = path.join(work, 'outside');
    await rename(path.join(dir, 'attestations'), outside);
    await symlink(outside, path.join(dir, 'attestations'));
    const report = await verifyWithin(20_000, { verifiers: [signer.verifier] });
    expect(codes(report)).toContain('UNREADABLE');
    expect(report.failures.find((failure) => failure.code === 'UNREADABLE')?.message).toMatch(/attestations is a symbolic link/);
    await rm(path.join(dir, 'attestations'));
    await rename(outside, path.join(dir, 'attestations'));
    await rename(path.join(dir, 'attestations', 'cap-1'), path.join(work, 'host'));
    await symlink(path.join(work, 'host'), path.join(dir, 'attestations', 'cap-1'));
    const sink = await openFsSink({ dir, readOnly: true });
    await expect(sink.attestations?.('cap-1')).rejects.toMatchObject({ code: 'FILE_NOT_REGULAR' });
    await sink.close();
    expect(day).toContain('2026-11-21');
  });
});
