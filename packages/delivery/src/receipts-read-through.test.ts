/**
 * A day-mode receipt whose seq list is in its `raw` blob (too long for the `seqs` field), read
 * in capture after the spool pruned both the receipt and the blob: the forwarder's sink reads
 * the record and the blob back from the archive of record, so the receipt is not dropped (a
 * dropped receipt means its records look undelivered: sent again). Real fs spool and archive,
 * pruned by a real Forwarder.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Forwarder, Recorder, decodeRecord, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RECEIPT_CHANNEL, readReceipts, receiptCapture, receiptStream } from './delivery-receipts.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const target = 'journal';
const FAR_FUTURE = new Date('2100-01-01T00:00:00Z');
let work: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-receipts-read-through-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function receipt(first: number, count: number) {
  // Every other seq: the range list is longer than the field holds, so it goes to `raw`.
  const records = Array.from({ length: count }, (_, index) => ({ seq: first + index * 2, hash: 'ab'.repeat(32) }));
  return receiptCapture({ target, to: 'journal@example.com', mode: 'day', stream: 'demo:alice', records, messageId: `<m${first}@offchannel>`, emlSha256: 'cd'.repeat(32), emlSize: 1000, reply: '250 ok', deliveredAt: new Date('2026-12-01T10:00:00Z'), attempts: 1, inDoubt: false });
}

it('a receipt whose seq list is in a blob the spool pruned is read whole through the archive of record', { timeout: 60_000 }, async () => {
  const spool = await openFsSink({ dir: path.join(work, 'spool'), segmentBytes: 4_000 });
  const archive = await openFsSink({ dir: path.join(work, 'archive') });
  const forwarder = new Forwarder({ spool, targets: [{ name: 'record', sink: archive }], pollMs: 60_000, prune: { minAgeMs: 0, now: () => FAR_FUTURE } });
  const recorder = new Recorder({ sink: forwarder.sink, checkpoints: { signer: key, everyRecords: 20 } });
  const writer = recorder.writer({ channel: RECEIPT_CHANNEL, account: target, source: { package: 't', version: '0' } });
  // The first receipt lists 600 records in its blob; the rest fill segments to prune.
  expect((await writer.capture(receipt(1, 600))).status).toBe('recorded');
  for (let index = 1; index <= 120; index++) expect((await writer.capture(receipt(10_000 + index * 10, 1))).status).toBe('recorded');
  await recorder.close();
  forwarder.start();
  await forwarder.drain({ timeoutMs: 30_000 });
  expect((await forwarder.prune()).at(0)?.throughSeq).toBeGreaterThan(1);
  const stream = receiptStream(target);
  const raw = await (async () => {
    for await (const stored of archive.read(stream)) return decodeRecord(stored.bytes).record.raw;
    return undefined;
  })();
  // Both the receipt record and its blob are gone from the spool.
  expect((await spool.pruned(stream))?.seq).toBeGreaterThan(1);
  expect(raw).toBeDefined();
  expect(await spool.getBlob(raw?.sha256 as string)).toBeUndefined();
  const receipts = [];
  for await (const read of readReceipts(forwarder.sink, target)) receipts.push(read);
  await forwarder.stop();
  await spool.close();
  await archive.close();
  // Before the fix the first receipt was dropped: its blob was looked for in the spool only.
  expect(receipts).toHaveLength(121);
  expect(receipts[0]?.receiptSeq).toBe(1);
  expect(receipts[0]?.seqs).toHaveLength(600);
  expect(receipts[0]?.seqs.at(-1)).toBe(1 + 599 * 2);
});
