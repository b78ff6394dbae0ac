/**
 * Reconciliation: what the archive holds against what the receipts of one target say was
 * delivered. Lists every record without a receipt (and whether the EML export renders an
 * e-mail for it at all), every receipt whose record hash differs from the archive's record
 * (the archive or the receipts were altered), refusals and in-doubt resends.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { X509Certificate } from 'node:crypto';
import { type NoteVerifier, type Sink, decodeRecord } from '@offchannel/core';
import { MISSED_EVENT, RECEIPT_CHANNEL, REFUSAL_EVENT, type Receipt, readReceipts, receiptStream } from './delivery-receipts.ts';
import { renderMessages } from './render-messages.ts';

export interface UndeliveredRecord {
  readonly seq: number;
  readonly kind: string;
  readonly capturedAt: string;
  /** False when the EML export renders no e-mail for this record (nothing to deliver). */
  readonly hasEmail: boolean;
}

export interface StreamCheck {
  readonly stream: string;
  readonly records: number;
  readonly delivered: number;
  readonly undelivered: readonly UndeliveredRecord[];
  readonly hashMismatches: readonly { readonly seq: number; readonly receipt: string; readonly archive: string }[];
}

export interface DeliveryCheck {
  readonly target: string;
  readonly receipts: number;
  readonly refusals: number;
  readonly inDoubt: number;
  /**
   * Gaps the target recorded (`delivery-missed`): records pruned from capture's spool before it
   * delivered them. They have no receipt, so they are also listed as not delivered.
   */
  readonly missed: readonly { readonly stream: string; readonly seqs: string }[];
  /** Receipts naming a record the archive does not hold. */
  readonly unknownRecords: readonly { readonly stream: string; readonly seq: number }[];
  readonly streams: readonly StreamCheck[];
  /** True when every record with an e-mail form was delivered and every receipt matches. */
  readonly ok: boolean;
}

export async function checkDelivery(options: { readonly archive: Sink; readonly target: string; readonly verifiers?: readonly NoteVerifier[]; readonly tsaCertificates?: readonly X509Certificate[] }): Promise<DeliveryCheck> {
  const { archive, target } = options;
  const byRecord = new Map<string, Receipt>();
  let receipts = 0;
  let inDoubt = 0;
  for await (const receipt of readReceipts(archive, target)) {
    receipts++;
    if (receipt.inDoubt) inDoubt++;
    for (const seq of receipt.seqs) byRecord.set(`${receipt.stream}/${seq}`, receipt);
  }
  let refusals = 0;
  const missed: { stream: string; seqs: string }[] = [];
  if ((await archive.streams()).includes(receiptStream(target))) {
    for await (const stored of archive.read(receiptStream(target))) {
      const { system } = decodeRecord(stored.bytes).record;
      if (system?.event === REFUSAL_EVENT) refusals++;
      if (system?.event === MISSED_EVENT) missed.push({ stream: system.fields?.stream ?? '', seqs: system.fields?.seqs ?? '' });
    }
  }
  const streams = (await archive.streams()).filter((stream) => !stream.startsWith(`${RECEIPT_CHANNEL}:`)).sort();
  const scratch = await mkdtemp(path.join(tmpdir(), 'offchannel-delivery-check-'));
  let withEmail: Set<string>;
  try {
    const rendered = streams.length === 0 ? [] : await renderMessages({ sink: archive, streams, mode: 'message', out: path.join(scratch, 'out'), ...(options.verifiers ? { verifiers: options.verifiers } : {}), ...(options.tsaCertificates ? { tsaCertificates: options.tsaCertificates } : {}) });
    withEmail = new Set(rendered.flatMap((message) => message.seqs.map((seq) => `${message.stream}/${seq}`)));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  const seen = new Set<string>();
  const checks: StreamCheck[] = [];
  for (const stream of streams) {
    let records = 0;
    let delivered = 0;
    const undelivered: UndeliveredRecord[] = [];
    const hashMismatches: StreamCheck['hashMismatches'][number][] = [];
    for await (const stored of archive.read(stream)) {
      const { record, hash } = decodeRecord(stored.bytes);
      const key = `${stream}/${record.seq}`;
      records++;
      seen.add(key);
      const receipt = byRecord.get(key);
      if (!receipt) {
        undelivered.push({ seq: record.seq, kind: record.kind, capturedAt: record.capturedAt, hasEmail: withEmail.has(key) });
        continue;
      }
      delivered++;
      if (receipt.recordHash !== undefined && receipt.recordHash !== hash) hashMismatches.push({ seq: record.seq, receipt: receipt.recordHash, archive: hash });
    }
    checks.push({ stream, records, delivered, undelivered, hashMismatches });
  }
  const unknownRecords = [...byRecord.keys()].filter((key) => !seen.has(key)).map((key) => {
    const slash = key.lastIndexOf('/');
    return { stream: key.slice(0, slash), seq: Number(key.slice(slash + 1)) };
  });
  const ok = unknownRecords.length === 0 && checks.every((check) => check.hashMismatches.length === 0 && check.undelivered.every((item) => !item.hasEmail));
  return { target, receipts, refusals, inDoubt, missed, unknownRecords, streams: checks, ok };
}
