/**
 * End to end against a real Postfix (Debian's, a throwaway instance on loopback) delivering into
 * a Maildir: every record arrives once, parses with an independent MIME parser (mailparser)
 * with its headers and attachments, and is byte for byte what `export --format eml` writes.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Sink, decodeRecord } from '@offchannel/core';
import { exportArchive } from '@offchannel/export';
import { openFsSink } from '@offchannel/sink-fs';
import { checkDelivery } from './check-delivery.ts';
import { type DelivererOptions, Deliverer } from './deliverer.ts';
import { readReceipts, receiptStream } from './delivery-receipts.ts';
import type { DeliveryTarget } from './delivery-target.ts';
import { type JournalArchive, PDF, PNG, createJournalArchive, removeTempDirs, tempDir } from './__fixtures__/journal-archive.ts';
import { JOURNAL, type PostfixInstance, startPostfix } from './__fixtures__/postfix-instance.ts';

const AFTER_BOTH_DAYS = new Date(Date.UTC(2026, 10, 23, 12));

let tls: PostfixInstance;
let plain: PostfixInstance;
beforeAll(async () => {
  [tls, plain] = await Promise.all([startPostfix('starttls'), startPostfix('plain')]);
}, 120_000);
afterAll(async () => {
  await Promise.all([tls?.stop(), plain?.stop()]);
  await removeTempDirs();
}, 60_000);

function target(postfix: PostfixInstance, name: string, extra: Partial<DeliveryTarget> = {}): DeliveryTarget {
  return { name, smtp: postfix.url.replace('127.0.0.1', 'localhost'), to: JOURNAL, from: 'offchannel@firm.example', ...(postfix.ca ? { ca: postfix.ca } : {}), ...extra };
}

async function deliverAll(archive: JournalArchive, options: Partial<DelivererOptions> & { readonly target: DeliveryTarget }, state?: string): Promise<{ report: Awaited<ReturnType<Deliverer['deliverPending']>>; state: string }> {
  const dir = state ?? (await tempDir('offchannel-delivery-state-'));
  const sink = await openFsSink({ dir: archive.dir });
  try {
    const deliverer = await Deliverer.open({ archive: sink, stateDir: dir, verifiers: [archive.key.verifier], checkpoints: { signer: archive.key }, clock: () => AFTER_BOTH_DAYS, retry: { attempts: 3, initialMs: 10 }, ...options });
    try {
      return { report: await deliverer.deliverPending(), state: dir };
    } finally {
      await deliverer.close();
    }
  } finally {
    await sink.close();
  }
}

function messageIdsOf(messages: readonly Buffer[]): string[] {
  return messages.map((message) => /^Message-ID: (<[^>]+>)/im.exec(message.toString('latin1'))?.[1] ?? 'none');
}

/** The message as sent: Postfix prepends Return-Path, X-Original-To, Delivered-To and Received. */
function asSent(message: Buffer): Buffer {
  const text = message.toString('latin1');
  const start = text.search(/^From: /m);
  return Buffer.from(text.slice(start).replace(/\n/g, '\r\n'), 'latin1');
}

async function withSink<T>(dir: string, use: (sink: Sink) => Promise<T>): Promise<T> {
  const sink = await openFsSink({ dir, readOnly: true });
  try {
    return await use(sink);
  } finally {
    await sink.close();
  }
}

describe('delivery into Postfix', () => {
  it('delivers every record exactly once, as the EML export writes it, with a receipt each', async () => {
    const archive = await createJournalArchive();
    const before = (await tls.messages()).length;
    const { report, state } = await deliverAll(archive, { target: target(tls, 'journal') });
    const total = Object.values(archive.counts).reduce((sum, count) => sum + count, 0);
    expect(report).toMatchObject({ sent: total, backlog: 0, noEmail: 0, inDoubt: 0 });
    const arrived = (await tls.settle(before + total)).slice(before);
    expect(arrived).toHaveLength(total);
    const ids = messageIdsOf(arrived);
    expect(new Set(ids).size).toBe(total);

    // Byte for byte what `export --format eml` writes (the same verified archive, exported now).
    const out = await tempDir('offchannel-delivery-export-');
    await withSink(archive.dir, (sink) => exportArchive({ sink, out: path.join(out, 'x'), formats: ['eml'], verifiers: [archive.key.verifier], streams: archive.streams }));
    const exported = new Map<string, Buffer>();
    for (const entry of await readdir(path.join(out, 'x', 'eml'), { recursive: true })) {
      if (!entry.endsWith('.eml')) continue;
      const bytes = await readFile(path.join(out, 'x', 'eml', entry));
      exported.set(messageIdsOf([bytes])[0] ?? '', bytes);
    }
    expect(exported.size).toBe(total);
    for (const message of arrived) expect(asSent(message).equals(exported.get(messageIdsOf([message])[0] ?? '') ?? Buffer.alloc(0))).toBe(true);

    // An independent MIME parser reads headers and attachments intact.
    const parsed = await Promise.all(arrived.map((message) => simpleParser(message)));
    const withAttachments = parsed.filter((mail) => mail.attachments.length > 0);
    const attachments = withAttachments.flatMap((mail) => mail.attachments.map((item) => ({ filename: item.filename, contentType: item.contentType, sha256: createHash('sha256').update(item.content).digest('hex') })));
    const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
    // File names are export's (the full content hash with an inert extension); the bytes must be the archive's.
    expect(attachments).toHaveLength(3);
    expect(attachments).toEqual(
      expect.arrayContaining([
        { filename: `${sha(PDF)}.pdf`, contentType: 'application/pdf', sha256: sha(PDF) },
        { filename: `${sha(PNG)}.png`, contentType: 'image/png', sha256: sha(PNG) },
      ]),
    );
    expect(attachments.filter((item) => item.sha256 === sha(PDF))).toHaveLength(2);
    for (const mail of parsed) {
      expect(mail.headers.get('x-offchannel-record-sha256')).toMatch(/^[0-9a-f]{64}$/);
      expect(mail.messageId).toMatch(/@(whatsapp|signal)\.offchannel\.invalid>$/);
    }
    const m2 = parsed.find((mail) => mail.text?.includes('Attached, indicative only.'));
    expect(m2?.from?.value[0]?.name).toBe('Alice Moreau');

    // One receipt per record: stream, seq, record hash, Message-ID, the server's 250.
    const receipts = await withSink(archive.dir, async (sink) => {
      const hashes = new Map<string, string>();
      for (const stream of archive.streams) for await (const stored of sink.read(stream)) hashes.set(`${stream}/${stored.seq}`, decodeRecord(stored.bytes).hash);
      const list = [];
      for await (const receipt of readReceipts(sink, 'journal')) list.push({ ...receipt, archived: hashes.get(`${receipt.stream}/${receipt.seqs[0]}`) });
      return list;
    });
    expect(receipts).toHaveLength(total);
    for (const receipt of receipts) {
      expect(receipt.reply).toMatch(/^250 /);
      expect(receipt.recordHash).toBe(receipt.archived);
      expect(ids).toContain(receipt.messageId);
    }
    expect((await withSink(archive.dir, (sink) => checkDelivery({ archive: sink, target: 'journal', verifiers: [archive.key.verifier] }))).ok).toBe(true);

    // A second run sends nothing; the receipts stream verifies with the archive's key.
    const again = await deliverAll(archive, { target: target(tls, 'journal') }, state);
    expect(again.report.sent).toBe(0);
    const cursor = JSON.parse(await readFile(path.join(state, 'journal.cursor.json'), 'utf8')) as { streams: Record<string, number>; inFlight?: unknown };
    expect(cursor.streams).toEqual(archive.counts);
    expect(cursor.inFlight).toBeUndefined();
    const verified = await withSink(archive.dir, async (sink) => (await import('@offchannel/core')).verifyArchive(sink, { verifiers: [archive.key.verifier] }));
    expect(verified.ok).toBe(true);
    expect(verified.streams.find((item) => item.stream === receiptStream('journal'))?.checkpoints?.length).toBeGreaterThan(0);
  });

  it('requires TLS: a server without STARTTLS is refused unless the loopback exception is set', async () => {
    const archive = await createJournalArchive();
    const before = (await plain.messages()).length;
    await expect(deliverAll(archive, { target: target(plain, 'plain') })).rejects.toMatchObject({ code: 'DELIVERY_TLS' });
    expect((await plain.messages()).length).toBe(before);
    const { report } = await deliverAll(archive, { target: target(plain, 'plain', { allowPlaintextLoopback: true }) });
    expect(report.sent).toBe(Object.values(archive.counts).reduce((sum, count) => sum + count, 0));
    await plain.settle(before + report.sent);
  });

  it('verifies the certificate: a self-signed server is refused without its CA', async () => {
    const archive = await createJournalArchive();
    const before = (await tls.messages()).length;
    const { ca: _ca, ...untrusted } = target(tls, 'untrusted');
    await expect(deliverAll(archive, { target: untrusted })).rejects.toMatchObject({ code: 'DELIVERY_TLS' });
    expect((await tls.messages()).length).toBe(before);
  });

  it('day mode: one transcript per closed conversation-day, every record covered by exactly one receipt', async () => {
    const archive = await createJournalArchive();
    const before = (await tls.messages()).length;
    const day1 = new Date(Date.UTC(2026, 10, 21, 12));
    const first = await deliverAll(archive, { target: target(tls, 'days', { mode: 'day' }), clock: () => day1 });
    expect(first.report.notDue).toBeGreaterThan(0);
    const second = await deliverAll(archive, { target: target(tls, 'days', { mode: 'day' }) }, first.state);
    expect(second.report.notDue).toBe(0);
    const arrived = (await tls.settle(before + first.report.sent + second.report.sent)).slice(before);
    const parsed = await Promise.all(arrived.map((message) => simpleParser(message)));
    // WhatsApp client chat and desk on both days, the Signal chat on the first: five transcripts.
    expect(parsed.filter((mail) => /— 2026-11-2[01]$/.test(mail.subject ?? '')).length).toBe(5);
    expect(new Set(parsed.map((mail) => mail.messageId)).size).toBe(parsed.length);
    const covered = await withSink(archive.dir, async (sink) => {
      const seen: string[] = [];
      for await (const receipt of readReceipts(sink, 'days')) for (const seq of receipt.seqs) seen.push(`${receipt.stream}/${seq}`);
      return seen;
    });
    expect(new Set(covered).size).toBe(covered.length);
    expect(covered.length).toBe(Object.values(archive.counts).reduce((sum, count) => sum + count, 0));
    expect((await withSink(archive.dir, (sink) => checkDelivery({ archive: sink, target: 'days' }))).ok).toBe(true);
  });
});
