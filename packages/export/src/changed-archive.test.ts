/**
 * The archive changes between the export's verification pass and the pass that builds its
 * output (someone with write access, or a second copy synced over it): what is exported must be
 * exactly what was verified. Each test changes the real files on disk from the export's own
 * progress hook, at the moment verification has finished and the index build begins.
 */
import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptureInput, OffchannelError, verifyRecordProof } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type ExportFormat, exportArchive } from './export-archive.ts';
import { type RecordedArchive, recordArchive } from './__fixtures__/record-archive.ts';
import { bob, client } from './__fixtures__/trade-archive.ts';

const message = (n: number, text: string, extra: Partial<CaptureInput> = {}): CaptureInput => ({
  kind: 'message',
  key: `message:c${n}`,
  sentAt: new Date(Date.UTC(2026, 10, 20, 9, n)).toISOString(),
  conversation: client,
  sender: bob,
  direction: 'inbound',
  native: { id: `c${n}`, chat: client.id },
  text,
  ...extra,
});
const PDF = new TextEncoder().encode('%PDF-1.4\n% trade ticket\n%%EOF\n');
const ORIGINAL = [message(1, 'Buy 100 at 4.05'), message(2, 'Confirmed', { attachments: [{ bytes: PDF, mime: 'application/pdf', name: 'ticket.pdf' }] }), message(3, 'Thanks')];

const made: string[] = [];
let scratch: string;
let rewritten: RecordedArchive;
let truncated: RecordedArchive;
let appended: RecordedArchive;

const record = async (inputs: readonly CaptureInput[]): Promise<RecordedArchive> => {
  const archive = await recordArchive('whatsapp', async (writer) => {
    for (const input of inputs) await writer.capture(input);
  });
  made.push(archive.dir);
  return archive;
};

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'offchannel-changed-'));
  // Same stream, same recorder clock: identical bytes up to where the histories differ.
  rewritten = await record([ORIGINAL[0] as CaptureInput, message(2, 'Cancelled', { attachments: [{ bytes: PDF, mime: 'application/pdf', name: 'ticket.pdf' }] }), ORIGINAL[2] as CaptureInput]);
  truncated = await record(ORIGINAL.slice(0, 2));
  appended = await record([...ORIGINAL, message(4, 'One more, after verification')]);
}, 60_000);
afterAll(async () => {
  for (const dir of made) await rm(dir, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

/** Replaces the archive's stream files with another archive's, as a writer with file access would. */
function swapStream(archive: string, from: string): void {
  execFileSync('chmod', ['-R', 'u+w', path.join(archive, 'streams')]);
  execFileSync('rm', ['-rf', path.join(archive, 'streams')]);
  execFileSync('cp', ['-a', path.join(from, 'streams'), path.join(archive, 'streams')]);
}

/** Exports a fresh copy of the original archive; `change` runs once, when verification is done. */
async function exportChanged(formats: readonly ExportFormat[], change: (archive: string) => void, seen?: (archive: RecordedArchive) => void): Promise<{ readonly error: unknown; readonly out: string; readonly jsonlLines?: number }> {
  const original = await record(ORIGINAL);
  seen?.(original);
  const out = await mkdtemp(path.join(scratch, 'out-'));
  const sink = await openFsSink({ dir: original.dir, readOnly: true });
  let changed = false;
  try {
    const result = await exportArchive({
      sink,
      out,
      formats,
      verifiers: [original.key.verifier],
      onProgress: ({ phase }) => {
        if (phase === 'index' && !changed) {
          changed = true;
          change(original.dir);
        }
      },
    });
    expect(changed).toBe(true);
    return { error: undefined, out, jsonlLines: result.counts.jsonl ?? 0 };
  } catch (error) {
    expect(changed).toBe(true);
    return { error, out };
  } finally {
    await sink.close();
  }
}

function expectRefused(error: unknown, pattern: RegExp): void {
  expect(OffchannelError.hasCode(error, 'EXPORT_UNVERIFIED'), String(error)).toBe(true);
  expect((error as Error).message).toMatch(pattern);
}

describe('an archive that changes after verification', () => {
  it('is refused when its records were rewritten with a consistent chain', async () => {
    const { error } = await exportChanged(['jsonl', 'html'], (dir) => {
      swapStream(dir, rewritten.dir);
    });
    expectRefused(error, /stream whatsapp:alice changed between verification and export \(detected at seq \d\); nothing was exported/);
  });

  it('is refused when its newest records were removed', async () => {
    const { error } = await exportChanged(['rsmf'], (dir) => {
      swapStream(dir, truncated.dir);
    });
    expectRefused(error, /stream whatsapp:alice changed between verification and export \(detected at seq 3\)/);
  });

  it('is refused when a record was damaged in place', async () => {
    const { error } = await exportChanged(['eml'], (dir) => {
      const segments = path.join(dir, 'streams', 'whatsapp:alice');
      execFileSync('chmod', ['-R', 'u+w', segments]);
      execFileSync('sed', ['-i', 's/Thanks/Thanx!/', ...execFileSync('ls', [segments], { encoding: 'utf8' }).trim().split('\n').map((name) => path.join(segments, name))]);
    });
    expectRefused(error, /stream whatsapp:alice changed between verification and export \(detected at seq 3\)/);
  });

  it('is refused, never crashes, when a record was replaced by bytes that are no record at all', { timeout: 60_000 }, async () => {
    // The index trusts the chain, not a second validation: whatever stands in for a verified
    // record must still end in EXPORT_UNVERIFIED, as the middle record or as the head.
    const hostile: [string, (record: Record<string, unknown>) => string][] = [
      ['a number', () => '5'],
      ['null', () => 'null'],
      ['an array', () => '[1,2]'],
      ['broken JSON', (record) => JSON.stringify(record).slice(0, -3)],
      ['a float native', (record) => JSON.stringify({ ...record, native: { id: 1.5 } })],
      ['a number for a time', (record) => JSON.stringify({ ...record, sentAt: 7, capturedAt: 8 })],
      ['a number for a conversation', (record) => JSON.stringify({ ...record, conversation: 5, target: 'x' })],
    ];
    for (const [name, replace] of hostile) {
      for (const line of [1, 2]) {
        const { error } = await exportChanged(['rsmf', 'jsonl'], (dir) => {
          const segments = path.join(dir, 'streams', 'whatsapp:alice');
          execFileSync('chmod', ['-R', 'u+w', segments]);
          const file = path.join(segments, execFileSync('ls', [segments], { encoding: 'utf8' }).trim().split('\n')[0] as string);
          const lines = execFileSync('cat', [file], { encoding: 'utf8' }).split('\n');
          lines[line] = replace(JSON.parse(lines[line] as string) as Record<string, unknown>);
          execFileSync('sh', ['-c', 'printf "%s" "$1" > "$2"', 'sh', lines.join('\n'), file]);
        });
        expect(error, `${name} at line ${line + 1}`).toBeDefined();
        expectRefused(error, /stream whatsapp:alice changed between verification and export/);
      }
    }
  });

  it('exports only the verified records when more were appended (a live archive)', async () => {
    const { error, out, jsonlLines } = await exportChanged(['jsonl'], (dir) => {
      swapStream(dir, appended.dir);
    });
    expect(error).toBeUndefined();
    expect(jsonlLines).toBe(3);
    const lines = (await readFile(path.join(out, 'jsonl', 'whatsapp_alice.jsonl'), 'utf8')).trimEnd().split('\n');
    expect(lines.map((line) => (JSON.parse(line) as { seq: number }).seq)).toEqual([1, 2, 3]);
  });

  it('is refused when an attachment blob was replaced, leaving no partial file', async () => {
    const { error, out } = await exportChanged(['html'], (dir) => {
      const blobs = path.join(dir, 'blobs', 'sha256');
      execFileSync('chmod', ['-R', 'u+w', blobs]);
      for (const name of execFileSync('ls', [blobs], { encoding: 'utf8' }).trim().split('\n')) execFileSync('sh', ['-c', 'printf "<svg/>" > "$1"', 'sh', path.join(blobs, name)]);
    });
    expectRefused(error, /blob [0-9a-f]{64} changed in the archive during export/);
    expect((await readdir(out, { recursive: true })).filter((name) => name.endsWith('.partial'))).toEqual([]);
  });

  it('proves JSONL lines with the checkpoint note it verified, even when the note is replaced later', async () => {
    let key: RecordedArchive['key'] | undefined;
    const { error, out } = await exportChanged(['jsonl'], (dir) => {
      const notes = path.join(dir, 'checkpoints');
      execFileSync('chmod', ['-R', 'u+w', notes]);
      execFileSync('rm', ['-rf', notes]);
      execFileSync('cp', ['-a', path.join(rewritten.dir, 'checkpoints'), notes]);
    }, (archive) => (key = archive.key));
    expect(error).toBeUndefined();
    const lines = (await readFile(path.join(out, 'jsonl', 'whatsapp_alice.jsonl'), 'utf8')).trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(verifyRecordProof(JSON.parse(line), [key?.verifier ?? rewritten.key.verifier]).signedBy).toEqual(['export-test.offchannel.example']);
  });
});

describe('files written', () => {
  it('SHA256SUMS lists the hash of the bytes written, and the export writes nothing it did not hash', async () => {
    const { error, out } = await exportChanged(['html', 'eml', 'rsmf', 'jsonl'], () => undefined);
    expect(error).toBeUndefined();
    const sums = (await readFile(path.join(out, 'SHA256SUMS'), 'utf8')).trimEnd().split('\n');
    const listed = new Set(sums.map((line) => line.slice(66)));
    const all = (await readdir(out, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile()).map((entry) => path.relative(out, path.join(entry.parentPath, entry.name)));
    expect(all.filter((file) => file !== 'SHA256SUMS' && !listed.has(file))).toEqual([]);
    execFileSync('sha256sum', ['-c', '--strict', '--quiet', 'SHA256SUMS'], { cwd: out });
    // A written file changed afterwards is caught by the sums (they are not the archive's claims).
    const attachment = all.find((file) => file.startsWith('html/attachments/'));
    if (attachment === undefined) throw new Error('no attachment written');
    await chmod(path.join(out, attachment), 0o644);
    await writeFile(path.join(out, attachment), 'x');
    expect(() => execFileSync('sha256sum', ['-c', '--strict', '--quiet', 'SHA256SUMS'], { cwd: out, stdio: 'pipe' })).toThrow();
  });
});
