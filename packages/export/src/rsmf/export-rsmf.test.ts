import { readFile, readdir, rm } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { unzipSync } from 'fflate';
import PostalMime from 'postal-mime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CaptureInput, type Ed25519NoteKey, type StreamWriter } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { exportArchive } from '../export-archive.ts';
import { type TradeArchive, alice, bob, client, createTradeArchive, tinyPng } from '../__fixtures__/trade-archive.ts';
import { type RecordedArchive, recordArchive as recordFixtureArchive } from '../__fixtures__/record-archive.ts';
import { RSMF_FIXTURES, errorsOf, rsmfValidator } from '../__fixtures__/rsmf-validator.ts';
import type { RsmfManifest } from './rsmf-slice.ts';

let archive: TradeArchive;
const outs: string[] = [];
const newOut = (): string => {
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'offchannel-rsmf-')), 'out');
  outs.push(path.dirname(dir));
  return dir;
};

async function exportRsmfTo(out: string, from: { readonly dir: string; readonly key: Ed25519NoteKey } = archive): Promise<string[]> {
  const sink = await openFsSink({ dir: from.dir, readOnly: true });
  try {
    await exportArchive({ sink, out, formats: ['rsmf'], verifiers: [from.key.verifier], generator: 'offchannel-test 0.0.0' });
  } finally {
    await sink.close();
  }
  return (await readdir(path.join(out, 'rsmf'))).sort().map((name) => path.join(out, 'rsmf', name));
}

async function openRsmf(file: string): Promise<{ raw: string; email: Awaited<ReturnType<typeof PostalMime.parse>>; manifest: RsmfManifest; zip: Record<string, Uint8Array> }> {
  const bytes = await readFile(file);
  const email = await PostalMime.parse(bytes);
  const zipPart = email.attachments.find((attachment) => attachment.filename === 'rsmf.zip');
  if (!zipPart) throw new Error('no rsmf.zip');
  const zip = unzipSync(new Uint8Array(zipPart.content as ArrayBuffer));
  const manifestBytes = zip['rsmf_manifest.json'];
  if (!manifestBytes) throw new Error('no manifest');
  return { raw: bytes.toString('latin1'), email, manifest: JSON.parse(Buffer.from(manifestBytes).toString('utf8')) as RsmfManifest, zip };
}

/** A signed archive of one `channel:alice` stream (removed after the tests). */
async function recordArchive(channel: string, fill: (writer: StreamWriter) => Promise<void>): Promise<RecordedArchive> {
  const recorded = await recordFixtureArchive(channel, fill);
  outs.push(recorded.dir);
  return recorded;
}

beforeAll(async () => {
  archive = await createTradeArchive();
});
afterAll(async () => {
  await rm(archive.dir, { recursive: true, force: true });
  for (const dir of outs) await rm(dir, { recursive: true, force: true });
});

describe('RSMF export', () => {
  it('writes one .rsmf per conversation whose manifest validates against the official schema with strict RFC 3339 times', async () => {
    const files = await exportRsmfTo(newOut());
    expect(files).toHaveLength(3); // client chat, desk group, account-level events
    const strict = rsmfValidator('strict');
    for (const file of files) {
      const { manifest, raw, email } = await openRsmf(file);
      expect(strict(manifest), errorsOf(strict).join('\n')).toBe(true);
      for (const event of manifest.events) expect(event.timestamp).toMatch(/Z$/);
      // Exact header case survives (an independent MIME parser lower-cases keys; check the raw bytes).
      expect(raw).toMatch(/^X-RSMF-Version: 2\.0\.0\r$/m);
      expect(raw).toMatch(/^X-RSMF-EventCount: \d+\r$/m);
      expect(email.headers.find((header) => header.key === 'x-rsmf-eventcollectionid')?.value).toBe(manifest.eventcollectionid);
      expect(Number(email.headers.find((header) => header.key === 'x-rsmf-eventcount')?.value)).toBe(manifest.events.length);
    }
  });

  it('maps edits, deletions, reactions, replies, attachments and provenance from the records', async () => {
    const files = await exportRsmfTo(newOut());
    const opened = await Promise.all(files.map(openRsmf));
    const chat = opened.find(({ manifest }) => manifest.conversations[0]?.type === 'direct');
    if (!chat) throw new Error('no direct conversation');
    const events = chat.manifest.events as Record<string, unknown>[];
    const byNative = (id: string): Record<string, unknown> => {
      const found = events.find((event) => (event.custom as { name: string; value: string }[]).some((entry) => entry.name === 'offchannel.native_id' && entry.value === id));
      if (!found) throw new Error(`no event ${id}`);
      return found;
    };
    const edited = byNative('m3');
    expect(edited.body).toBe('Could you do 4.05% fixed? Final offer 🙂');
    expect(edited.edits).toEqual([
      { participant: '+15550100@s.whatsapp.net', timestamp: '2026-11-20T09:05:00.000Z', previous: 'Could you do 4.15% fixed?', new: 'Could you do 4.10% fixed?' },
      { participant: '+15550100@s.whatsapp.net', timestamp: '2026-11-20T09:07:00.000Z', previous: 'Could you do 4.10% fixed?', new: 'Could you do 4.05% fixed? Final offer 🙂' },
    ]);
    const deleted = byNative('m5');
    expect(deleted).toMatchObject({ deleted: true, body: 'Call me on my personal phone instead.', direction: 'incoming' });
    const withFiles = byNative('m2');
    expect(withFiles.reactions).toEqual([{ value: '👍', count: 1, participants: ['+15550100@s.whatsapp.net'] }]);
    expect((withFiles.custom as { name: string }[]).filter((entry) => entry.name.startsWith('offchannel.reaction.'))).toHaveLength(3);
    const attachments = withFiles.attachments as { id: string; display: string; size: number }[];
    expect(attachments.map((attachment) => attachment.display)).toEqual(['term sheet (5y).pdf', 'chart.png']);
    expect(chat.zip[attachments[0]?.id ?? '']).toEqual(archive.pdf);
    expect(chat.zip[attachments[1]?.id ?? '']).toEqual(archive.png);
    expect(byNative('m4').parent).toBe(edited.id);
    expect(byNative('m7').body).toHaveLength('Term sheet clause. '.length * 2000 + 3); // long text read back from its blob
    const custom = Object.fromEntries((edited.custom as { name: string; value: string }[]).map((entry) => [entry.name, entry.value]));
    expect(custom['offchannel.stream']).toBe(archive.stream);
    expect(custom['offchannel.record_sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(custom['offchannel.checkpoint']).toMatch(/^size \d+ root [0-9a-f]{64} signed by export-test\.offchannel\.example$/);
    expect(chat.manifest.conversations[0]).toMatchObject({ platform: 'whatsapp', type: 'direct', custodian: 'alice@firm.example' });
    expect(chat.manifest.participants).toContainEqual({ id: '+15550100@s.whatsapp.net', display: 'Bob Chén', email: '+15550100@s.whatsapp.net', custom: [{ name: 'alias', value: '1203@lid' }] });

    const group = opened.find(({ manifest }) => manifest.conversations[0]?.display === 'Rates desk');
    const types = (group?.manifest.events ?? []).map((event) => event.type);
    expect(types).toEqual(['join', 'unknown', 'message', 'unknown', 'unknown', 'message', 'leave']);
  });

  it('is byte-for-byte deterministic', async () => {
    const first = await exportRsmfTo(newOut());
    const second = await exportRsmfTo(newOut());
    expect(first.map((file) => path.basename(file))).toEqual(second.map((file) => path.basename(file)));
    for (let index = 0; index < first.length; index++) {
      expect((await readFile(first[index] ?? '')).equals(await readFile(second[index] ?? ''))).toBe(true);
    }
  });
});

describe('RSMF slicing', () => {
  it('splits a conversation every 10,000 events into linked files that name the same custodian', { timeout: 120_000 }, async () => {
    // The custodian writes only the first message: the second slice has no outbound event of its own.
    const inputs: CaptureInput[] = Array.from({ length: 10_004 }, (_, n) => ({
      kind: 'message',
      key: `message:s${n}`,
      sentAt: new Date(Date.UTC(2026, 10, 20, 9, 0, 0) + n * 1000).toISOString(),
      conversation: client,
      sender: n === 0 ? alice : bob,
      direction: n === 0 ? 'outbound' : 'inbound',
      native: { id: `s${n}`, chat: client.id },
      text: `quote ${n}`,
    }));
    const recorded = await recordArchive('whatsapp', async (writer) => {
      for (let at = 0; at < inputs.length; at += 1000) await Promise.all(inputs.slice(at, at + 1000).map((input) => writer.capture(input)));
    });
    const files = await exportRsmfTo(newOut(), recorded);
    expect(files).toHaveLength(2);
    const [first, second] = await Promise.all(files.map((file) => openRsmf(file)));
    if (!first || !second) throw new Error('two slices expected');
    expect(first.manifest.events).toHaveLength(10_000);
    expect(second.manifest.events).toHaveLength(4);
    expect(second.manifest.events[3]).toMatchObject({ body: 'quote 10003' });
    expect(first.manifest.eventcollectionid).toBe(second.manifest.eventcollectionid);
    expect(first.email.headers.find((header) => header.key === 'x-rsmf-eventcollectionid')?.value).toBe(first.manifest.eventcollectionid);
    for (const slice of [first, second]) {
      expect(slice.manifest.conversations[0]).toMatchObject({ custodian: alice.id });
      expect(slice.email.from?.address).toBe(alice.id);
      const validate = rsmfValidator('strict');
      expect(validate(slice.manifest), errorsOf(validate).join('\n')).toBe(true);
    }
  });
});

describe('RSMF edits that only add attachments', () => {
  it('keeps the text, adds the file and names the record that added it (iMessage: the transfer completes later)', async () => {
    const png = tinyPng();
    let editSeq = 0;
    const recorded = await recordArchive('imessage', async (writer) => {
      await writer.capture({ kind: 'message', key: 'message:p1', sentAt: '2026-11-20T09:00:00.000Z', conversation: client, sender: bob, direction: 'inbound', native: { id: 'p1', chat: client.id }, text: 'chart attached' });
      editSeq = (await writer.capture({ kind: 'edit', key: 'edit:p1:transfer', sentAt: '2026-11-20T09:00:05.000Z', conversation: client, sender: bob, direction: 'inbound', target: { id: 'p1', chat: client.id }, attachments: [{ bytes: png, mime: 'image/png', name: 'chart.png' }] })).seq;
    });
    const [file] = await exportRsmfTo(newOut(), recorded);
    const { manifest, zip } = await openRsmf(file ?? '');
    const [event] = manifest.events as Record<string, unknown>[];
    expect(event).toMatchObject({ type: 'message', body: 'chart attached' });
    expect(event).not.toHaveProperty('edits');
    const attachments = event?.attachments as { id: string }[];
    expect(attachments).toHaveLength(1);
    expect(Buffer.from(zip[attachments[0]?.id ?? ''] ?? []).equals(Buffer.from(png))).toBe(true);
    expect(event?.custom).toContainEqual(expect.objectContaining({ name: 'offchannel.attachment.1', value: expect.stringContaining(`added by ${recorded.stream}/${String(editSeq)}`) as unknown }));
  });
});

describe('RSMF follow-up attachments (WhatsApp: the file follows its message)', () => {
  it('shows the file in place of the download-pending placeholder, and keeps a placeholder that nothing followed', async () => {
    const png = tinyPng();
    let followSeq = 0;
    const pending = { status: 'unavailable', reason: 'download-pending', mime: 'image/png', name: 'chart.png', size: png.length } as const;
    const recorded = await recordArchive('whatsapp', async (writer) => {
      await writer.capture({ kind: 'message', key: 'message:w1', sentAt: '2026-11-20T09:00:00.000Z', conversation: client, sender: bob, direction: 'inbound', native: { id: 'w1', chat: client.id }, text: 'chart', attachments: [pending] });
      await writer.capture({ kind: 'message', key: 'message:w2', sentAt: '2026-11-20T09:00:01.000Z', conversation: client, sender: bob, direction: 'inbound', native: { id: 'w2', chat: client.id }, text: 'never came', attachments: [pending] });
      followSeq = (await writer.capture({ kind: 'edit', key: 'attachment:w1', sentAt: '2026-11-20T09:00:00.000Z', conversation: client, sender: bob, direction: 'inbound', target: { id: 'w1', chat: client.id }, attachments: [{ bytes: png, mime: 'image/png', name: 'chart.png' }], meta: { followUp: 'attachment' } })).seq;
    });
    const [file] = await exportRsmfTo(newOut(), recorded);
    const { manifest, zip } = await openRsmf(file ?? '');
    const [followed, open] = manifest.events as Record<string, unknown>[];
    const attachments = followed?.attachments as { id: string }[];
    expect(attachments).toHaveLength(1);
    expect(Buffer.from(zip[attachments[0]?.id ?? ''] ?? []).equals(Buffer.from(png))).toBe(true);
    expect(followed?.custom).toContainEqual(expect.objectContaining({ name: 'offchannel.attachment.1', value: expect.stringContaining(`added by ${recorded.stream}/${String(followSeq)}`) as unknown }));
    expect((followed?.custom as { name: string }[]).map((entry) => entry.name)).not.toContain('offchannel.attachment_unavailable.1');
    expect(open?.custom).toContainEqual({ name: 'offchannel.attachment_unavailable.1', value: 'download-pending; chart.png; image/png' });
  });
});

describe('the validator itself', () => {
  it("accepts Relativity's sample3 once date-time is relaxed to ISO 8601, and rejects its offset-less times when strict", async () => {
    const email = await PostalMime.parse(await readFile(path.join(RSMF_FIXTURES, 'sample3.rsmf')));
    const zipPart = email.attachments.find((attachment) => attachment.filename === 'rsmf.zip');
    const manifest = JSON.parse(Buffer.from(unzipSync(new Uint8Array(zipPart?.content as ArrayBuffer))['rsmf_manifest.json'] ?? []).toString('utf8')) as unknown;
    const relaxed = rsmfValidator('relaxed');
    expect(relaxed(manifest), errorsOf(relaxed).join('\n')).toBe(true);
    const strict = rsmfValidator('strict');
    expect(strict(manifest)).toBe(false);
    expect(errorsOf(strict)).toEqual(['/events/0/timestamp must match format "date-time"']);
  });

  it("reports exactly the defects Relativity's negative samples were made with", async () => {
    const relaxed = rsmfValidator('relaxed');
    const sample1 = JSON.parse(await readFile(path.join(RSMF_FIXTURES, 'sample1_manifest.json'), 'utf8')) as unknown;
    expect(relaxed(sample1)).toBe(false);
    expect(errorsOf(relaxed)).toEqual(["/participants/0 must have required property 'id'"]);
    const sample4 = JSON.parse(await readFile(path.join(RSMF_FIXTURES, 'sample4_manifest.json'), 'utf8')) as unknown;
    expect(relaxed(sample4)).toBe(false);
    expect(errorsOf(relaxed)).toEqual(['/participants/0/id must be string']);
  });
});
