import { spawnSync } from 'node:child_process';
import { chmod, cp, mkdtemp, readFile, readdir, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveRecord, Recorder, type VerificationReport } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../testing/run-cli.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const stream = 'demo:alice';
let work: string;
let pristine: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-verify-'));
  pristine = path.join(work, 'pristine');
  const sink = await openFsSink({ dir: pristine, segmentBytes: 2_500 });
  const recorder = new Recorder({ sink });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } });
  for (let index = 1; index <= 40; index++) {
    await writer.capture({
      kind: 'message',
      sentAt: '2026-11-21T10:00:00Z',
      conversation: { id: 'c', type: 'direct' },
      sender: { id: 'bob' },
      direction: 'inbound',
      native: { id: `m${index}` },
      text: `message number ${index} about the swap`,
      ...(index % 10 === 0 ? { attachments: [{ bytes: new TextEncoder().encode(`attachment ${index}`), mime: 'text/plain' }] } : {}),
    });
  }
  await recorder.writer({ channel: 'demo', account: 'bob', source: { package: 'test', version: '0' } }).capture({ kind: 'system', key: 'x', system: { event: 'capture-started' } });
  await recorder.close();
  await sink.close();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A writable copy of the pristine archive. */
async function copy(name: string): Promise<string> {
  const dir = path.join(work, name);
  await cp(pristine, dir, { recursive: true });
  return dir;
}

/** Changes a (possibly read-only) file the way an intruder would, then restores its mode. */
async function tamper(file: string, change: () => Promise<void>): Promise<void> {
  const { mode } = await stat(file);
  await chmod(file, 0o644);
  await change();
  await chmod(file, mode & 0o777);
}

async function segments(dir: string): Promise<string[]> {
  const streamDir = path.join(dir, 'streams', stream);
  return (await readdir(streamDir)).filter((name) => name.endsWith('.jsonl')).sort().map((name) => path.join(streamDir, name));
}

/** The segment holding `seq`, and the line index within it. */
async function locate(dir: string, seq: number): Promise<{ file: string; lines: string[]; index: number }> {
  const files = await segments(dir);
  for (const [position, file] of files.entries()) {
    const first = Number(path.basename(file).slice(0, 16));
    const next = files[position + 1];
    if (next && Number(path.basename(next).slice(0, 16)) <= seq) continue;
    const lines = (await readFile(file, 'utf8')).split('\n').slice(0, -1);
    return { file, lines, index: seq - first };
  }
  throw new Error(`seq ${seq} not found`);
}

async function verifyJson(dir: string): Promise<{ code: number; report: VerificationReport }> {
  const { code, stdout } = await runCli(['verify', dir, '--json']);
  return { code, report: JSON.parse(stdout) as VerificationReport };
}

describe('offchannel verify', () => {
  it('passes an intact archive (exit 0) with a human summary', async () => {
    const { code, stdout } = await runCli(['verify', pristine]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/ok +demo:alice +40 records/);
    expect(stdout).toMatch(/OK: archive intact — 2 streams, 41 records\./);
    const { report } = await verifyJson(pristine);
    expect(report.ok).toBe(true);
    expect(report.blobsChecked).toBe(4);
    expect((await segments(pristine)).length).toBeGreaterThan(3);
  });

  it('exits 1 naming the stream and seq when one byte of a record is flipped', async () => {
    const dir = await copy('flip');
    const { file, lines, index } = await locate(dir, 12);
    lines[index] = (lines[index] as string).replace('message number 12', 'message number 13');
    await tamper(file, () => writeFile(file, `${lines.join('\n')}\n`));
    const { code, report } = await verifyJson(dir);
    expect(code).toBe(1);
    expect(report.failures[0]).toMatchObject({ stream, seq: 12, code: 'PREV_MISMATCH' });
    const human = await runCli(['verify', dir]);
    expect(human.stdout).toContain(`FAIL: stream ${stream} seq 12:`);
  });

  it('exits 1 naming the record when a flipped byte breaks its JSON', async () => {
    const dir = await copy('flip-syntax');
    const { file, index } = await locate(dir, 25);
    const bytes = await readFile(file);
    let offset = 0;
    for (let line = 0; line < index; line++) offset = bytes.indexOf(0x0a, offset) + 1;
    bytes[offset] = 0x5b; // '{' → '['
    await tamper(file, () => writeFile(file, bytes));
    const { code, report } = await verifyJson(dir);
    expect(code).toBe(1);
    expect(report.failures[0]).toMatchObject({ stream, seq: 25, code: 'NON_CANONICAL_JSON' });
  });

  it('exits 1 naming the seq of a deleted record line', async () => {
    const dir = await copy('delete-line');
    const { file, lines, index } = await locate(dir, 40);
    lines.splice(index - 1, 1); // delete seq 39 (the active segment)
    await tamper(file, () => writeFile(file, `${lines.join('\n')}\n`));
    const { code, report } = await verifyJson(dir);
    expect(code).toBe(1);
    expect(report.failures[0]).toMatchObject({ stream, seq: 39, code: 'SEQ_GAP' });
  });

  it('exits 1 naming the first of two swapped lines', async () => {
    const dir = await copy('swap');
    const { file, lines, index } = await locate(dir, 7);
    if (index + 1 >= lines.length) throw new Error('fixture: seq 8 should share the segment');
    [lines[index], lines[index + 1]] = [lines[index + 1] as string, lines[index] as string];
    await tamper(file, () => writeFile(file, `${lines.join('\n')}\n`));
    const { code, report } = await verifyJson(dir);
    expect(code).toBe(1);
    expect(report.failures[0]).toMatchObject({ stream, seq: 7, code: 'SEQ_GAP' });
  });

  it('exits 1 naming the first missing seq of a truncated sealed segment — even the last sealed one', async () => {
    for (const which of ['first', 'last'] as const) {
      const dir = await copy(`truncate-${which}`);
      const files = await segments(dir);
      const file = which === 'first' ? (files[0] as string) : (files.at(-2) as string);
      const first = Number(path.basename(file).slice(0, 16));
      const content = await readFile(file);
      const cut = content.indexOf(0x0a, content.indexOf(0x0a) + 1) + 1; // keep two records
      await tamper(file, () => truncate(file, cut));
      if (which === 'last') await unlink(files.at(-1) as string); // nothing follows the truncated segment now
      const { code, report } = await verifyJson(dir);
      expect(code, which).toBe(1);
      expect(report.failures[0], which).toMatchObject({ stream, seq: first + 2 });
      expect(report.failures.some((failure) => failure.code === 'SEGMENT_SEAL_MISMATCH' && failure.seq === first + 2), which).toBe(true);
    }
  });

  it('exits 1 naming the record whose blob was deleted or altered', async () => {
    const { lines, index } = await locate(pristine, 20);
    const record = JSON.parse(lines[index] as string) as ArchiveRecord;
    const attachment = record.attachments?.[0];
    if (attachment?.status !== 'stored') throw new Error('fixture: seq 20 has an attachment');
    const deleted = await copy('blob-deleted');
    await unlink(path.join(deleted, 'blobs', 'sha256', attachment.sha256));
    const missing = await verifyJson(deleted);
    expect(missing.code).toBe(1);
    expect(missing.report.failures[0]).toMatchObject({ stream, seq: 20, code: 'BLOB_MISSING' });
    const altered = await copy('blob-altered');
    const blob = path.join(altered, 'blobs', 'sha256', attachment.sha256);
    await tamper(blob, () => writeFile(blob, 'attachment 21'));
    const changed = await verifyJson(altered);
    expect(changed.code).toBe(1);
    expect(changed.report.failures[0]).toMatchObject({ stream, seq: 20, code: 'BLOB_HASH_MISMATCH' });
  });

  it('runs as a real process: exit 0 intact, 1 tampered, 2 usage errors', async () => {
    const bin = path.join(import.meta.dirname, '..', 'bin.ts');
    const cli = (...args: string[]) => spawnSync(process.execPath, ['--conditions=@offchannel/source', '--experimental-strip-types', '--no-warnings', bin, ...args], { encoding: 'utf8' });
    expect(cli('verify', pristine).status).toBe(0);
    const dir = await copy('process');
    const { file, lines, index } = await locate(dir, 3);
    lines.splice(index, 1);
    await tamper(file, () => writeFile(file, `${lines.join('\n')}\n`));
    const tampered = cli('verify', dir);
    expect(tampered.status).toBe(1);
    expect(tampered.stdout).toContain(`FAIL: stream ${stream} seq 3:`);
    expect(cli('verify').status).toBe(2);
    expect(cli('verify', dir, '--frobnicate').status).toBe(2);
    expect(cli('verify', path.join(work, 'no-such-archive')).status).toBe(2);
    expect(cli('nonsense').status).toBe(2);
    expect(cli().status).toBe(2);
    expect(cli('--help').status).toBe(0);
  });

  it('reports a torn tail of the newest segment as a warning with stream and byte offset, in human and JSON output', async () => {
    const dir = await copy('torn');
    const last = (await segments(dir)).at(-1) as string;
    expect(await stat(last.replace('.jsonl', '.seal.json')).catch(() => undefined), 'the newest segment is not sealed').toBeUndefined();
    const { size } = await stat(last);
    await writeFile(last, '{"v":1,"stream":"demo:al', { flag: 'a' });
    const human = await runCli(['verify', dir]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`warning: stream ${stream}: streams/${stream}/${path.basename(last)} ends in a partial line of 24 bytes at byte offset ${size}`);
    expect(human.stdout).toMatch(/\[TORN_TAIL\]/);
    expect(human.stdout).toMatch(/OK: archive intact — 2 streams, 41 records; 1 warning \(see above\)\./);
    const { code, report } = await verifyJson(dir);
    expect(code).toBe(0);
    expect(report.warnings).toEqual([expect.objectContaining({ code: 'TORN_TAIL', stream, message: expect.stringContaining(`at byte offset ${size}`) as unknown })]);
  });

  it('exits 1 when a stream named with --stream is not in the archive', async () => {
    const { code, stdout } = await runCli(['verify', pristine, '--stream', 'demo:nobody']);
    expect(code).toBe(1);
    expect(stdout).toContain('FAIL: stream demo:nobody is not in the archive');
    expect(stdout).toContain('[STREAM_MISSING]');
    expect((await runCli(['verify', pristine, '--stream', stream])).code).toBe(0);
  });

  it('--quick checks blob presence and size without hashing', async () => {
    const { code, stdout } = await runCli(['verify', pristine, '--quick', '--json']);
    expect(code).toBe(0);
    expect((JSON.parse(stdout) as VerificationReport).blobsChecked).toBe(0);
  });
});
