import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import PostalMime from 'postal-mime';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { OffchannelError, verifyRecordProof } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type ExportOptions, exportArchive } from './export-archive.ts';
import { HOSTILE_TEXT, type TradeArchive, createTradeArchive } from './__fixtures__/trade-archive.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let archive: TradeArchive;
let scratch: string;

async function run(options: Omit<ExportOptions, 'sink' | 'out'> & { readonly out?: string }): Promise<{ out: string; result: Awaited<ReturnType<typeof exportArchive>> }> {
  const out = options.out ?? (await mkdtemp(path.join(scratch, 'out-')));
  const sink = await openFsSink({ dir: archive.dir, readOnly: true });
  try {
    return { out, result: await exportArchive({ verifiers: [archive.key.verifier], ...options, sink, out }) };
  } finally {
    await sink.close();
  }
}

async function files(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

beforeAll(async () => {
  // A wall clock far from the fixture's times: anything that leaks "now" into an export shows.
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(new Date('2031-06-15T12:00:00Z'));
  try {
    archive = await createTradeArchive();
  } finally {
    vi.useRealTimers();
  }
  scratch = await mkdtemp(path.join(os.tmpdir(), 'offchannel-export-'));
});
afterAll(async () => {
  await rm(archive.dir, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

describe('JSONL', () => {
  it('writes every record with an inclusion proof that verifies with only the verifier key', async () => {
    const { out, result } = await run({ formats: ['jsonl'] });
    const lines = (await readFile(path.join(out, 'jsonl', 'whatsapp_alice.jsonl'), 'utf8')).trimEnd().split('\n');
    expect(lines).toHaveLength(21);
    expect(result.counts.jsonl).toBe(21);
    lines.forEach((line, index) => {
      const verified = verifyRecordProof(JSON.parse(line), [archive.key.verifier]);
      expect(verified.record.seq).toBe(index + 1);
      expect(verified.signedBy).toEqual(['export-test.offchannel.example']);
    });
  });

  it('marks records without a verified checkpoint as unproven (export without a key)', async () => {
    const { out } = await run({ formats: ['jsonl'], verifiers: [] });
    const first = JSON.parse((await readFile(path.join(out, 'jsonl', 'whatsapp_alice.jsonl'), 'utf8')).split('\n')[0] ?? '') as Record<string, unknown>;
    expect(first).toMatchObject({ format: 'offchannel-record', v: 1, seq: 1, unproven: 'the stream has no verified signed checkpoint' });
  });
});

describe('EML', () => {
  it('one message per record, stable Message-IDs, threaded edits, attachments; parses with an independent MIME parser', async () => {
    const first = await run({ formats: ['eml'], conversations: ['+15550100@s.whatsapp.net'] });
    const second = await run({ formats: ['eml'], conversations: ['+15550100@s.whatsapp.net'] });
    const names = (await files(path.join(first.out, 'eml'))).filter((name) => name.endsWith('.eml'));
    expect(names).toHaveLength(13); // 7 messages + 2 edits + 3 reactions + 1 delete
    for (const name of names) expect(await readFile(path.join(first.out, 'eml', name))).toEqual(await readFile(path.join(second.out, 'eml', name)));
    const parse = async (suffix: string) => {
      const name = names.find((item) => item.endsWith(suffix));
      if (!name) throw new Error(`no ${suffix}`);
      return PostalMime.parse(await readFile(path.join(first.out, 'eml', name)));
    };
    const original = await parse('00000005-message.eml');
    const edit = await parse('00000006-edit.eml');
    expect(edit.inReplyTo).toBe(original.messageId);
    expect(edit.text).toContain('Previous text:\nCould you do 4.15% fixed?');
    expect(original.from?.address).toBe('+15550100@s.whatsapp.net');
    expect(original.from?.name).toBe('Bob Chén');
    const withFiles = await parse('00000003-message.eml');
    expect(withFiles.attachments.map((attachment) => attachment.mimeType)).toEqual(['application/pdf', 'image/png']);
    expect(new Uint8Array(withFiles.attachments[1]?.content as ArrayBuffer)).toEqual(archive.png);
    const reply = await parse('00000009-message.eml');
    expect(reply.inReplyTo).toBe(original.messageId);
    expect(withFiles.headers.find((header) => header.key === 'x-offchannel-record-sha256')?.value).toMatch(/^[0-9a-f]{64}$/);
  });

  it('day mode: one transcript per conversation per day with text and HTML alternatives', async () => {
    const { out } = await run({ formats: ['eml'], emlMode: 'day' });
    const names = (await files(path.join(out, 'eml'))).filter((name) => name.endsWith('.eml'));
    expect(names.map((name) => path.basename(name))).toEqual(['2026-11-20.eml', '2026-11-20.eml', '2026-11-21.eml'].sort());
    const chat = names.find((name) => name.includes('B'));
    const email = await PostalMime.parse(await readFile(path.join(out, 'eml', chat ?? '')));
    expect(email.text).toContain('Could you do 4.05% fixed? Final offer 🙂');
    expect(email.html).toContain('Edit history');
    expect(email.html).not.toContain('<script>');
  });
});

describe('HTML', () => {
  it('escapes archive text and shows the verification summary', async () => {
    const { out } = await run({ formats: ['html'] });
    const pages = (await files(path.join(out, 'html'))).filter((name) => name.endsWith('.html'));
    expect(pages).toHaveLength(3);
    const chat = await readFile(path.join(out, 'html', pages.find((name) => name.includes('B_') || name.includes('Bob')) ?? ''), 'utf8');
    expect(chat).not.toContain(HOSTILE_TEXT);
    expect(chat).toContain('&#60;script&#62;');
    expect(chat).toContain('Signed checkpoint: size 21');
    expect(chat).toContain("default-src 'none'");
  });
});

describe('summary and checksums', () => {
  it('lists every file with its SHA-256; sha256sum -c accepts the export', async () => {
    const { out, result } = await run({ formats: ['rsmf', 'eml', 'jsonl', 'html'], clock: () => new Date('2026-12-01T08:00:00Z') });
    const summary = JSON.parse(await readFile(path.join(out, 'export-summary.json'), 'utf8')) as { exportedAt: string; verification: { ok: boolean; signedCheckpointsChecked: boolean }; files: unknown[] };
    expect(summary.exportedAt).toBe('2026-12-01T08:00:00.000Z');
    expect(summary.verification).toMatchObject({ ok: true, signedCheckpointsChecked: true });
    expect(summary.files.length + 1).toBe(result.files.length);
    const check = execFileSync('sha256sum', ['-c', '--strict', 'SHA256SUMS'], { cwd: out, encoding: 'utf8' });
    expect(check.trim().split('\n')).toHaveLength(result.files.length);
    expect((await files(out)).some((name) => name.endsWith('.partial'))).toBe(false);
  });
});

describe('filters', () => {
  it('--from/--to select by platform time; --conversation by id', async () => {
    // A date-time `to` is exclusive; a date `to` covers that whole day.
    const { result } = await run({ formats: ['jsonl'], from: '2026-11-20T09:20:00Z', to: '2026-11-20T09:22:00Z' });
    expect(result.counts.jsonl).toBe(2);
    const { result: day } = await run({ formats: ['jsonl'], from: '2026-11-20', to: '2026-11-20' });
    expect(day.counts.jsonl).toBe(20);
    const { result: group } = await run({ formats: ['html'], conversations: ['120363@g.us'] });
    expect(group.conversations).toBe(1);
  });
});

describe('bad input', () => {
  it('refuses to export a corrupted archive and writes nothing', async () => {
    const copy = await mkdtemp(path.join(scratch, 'corrupt-'));
    execFileSync('cp', ['-a', `${archive.dir}/.`, copy]);
    const blob = path.join(copy, 'blobs', 'sha256', (await readdir(path.join(copy, 'blobs', 'sha256')))[0] ?? '');
    await chmod(blob, 0o644);
    await writeFile(blob, 'tampered');
    const out = path.join(scratch, 'never-written');
    const sink = await openFsSink({ dir: copy, readOnly: true });
    try {
      const error = await exportArchive({ sink, out, formats: ['rsmf', 'html'], verifiers: [archive.key.verifier] }).catch((caught: unknown) => caught);
      expect(OffchannelError.hasCode(error, 'EXPORT_UNVERIFIED')).toBe(true);
      expect((error as Error).message).toMatch(/does not verify, so nothing was exported: BLOB_/);
    } finally {
      await sink.close();
    }
    expect(await readdir(out)).toEqual([]);
  });

  it('refuses a non-empty or unwritable output directory, bad dates, unknown streams and conversations', async () => {
    const full = await mkdtemp(path.join(scratch, 'full-'));
    await writeFile(path.join(full, 'existing.txt'), 'x');
    const codeOf = async (options: Omit<ExportOptions, 'sink' | 'out'> & { readonly out?: string }): Promise<string | undefined> =>
      run(options).then(
        () => undefined,
        (error: unknown) => (OffchannelError.isInstance(error) ? `${error.code}: ${error.message}` : String(error)),
      );
    expect(await codeOf({ formats: ['html'], out: full })).toMatch(/^EXPORT_OUTPUT: output directory .* is not empty/);
    const file = path.join(scratch, 'a-file');
    await writeFile(file, 'x');
    expect(await codeOf({ formats: ['html'], out: path.join(file, 'sub') })).toMatch(/^EXPORT_OUTPUT: cannot write to output directory .*ENOTDIR/);
    expect(await codeOf({ formats: ['html'], from: '20-11-2026' })).toMatch(/^EXPORT_OPTIONS: --from must be a date/);
    expect(await codeOf({ formats: ['html'], from: '2026-11-21', to: '2026-11-20' })).toMatch(/^EXPORT_OPTIONS: --from must be before --to/);
    expect(await codeOf({ formats: ['html'], streams: ['signal:bob'] })).toMatch(/^EXPORT_OPTIONS: the archive has no stream "signal:bob"/);
    expect(await codeOf({ formats: ['html'], conversations: ['nope'] })).toMatch(/^EXPORT_OPTIONS: no conversation matches "nope"/);
    expect(await codeOf({ formats: ['pdf' as 'html'] })).toMatch(/^EXPORT_OPTIONS: unknown format "pdf"/);
  });
});
