/**
 * Receipts: one `system` record per delivered message in the target's own stream
 * `delivery:<target>`, recorded through the Recorder (hash-chained, signed with the archive's
 * checkpoints like any stream). A receipt says which records (stream, seqs, record hash) went
 * out as which `Message-ID`, to which journal, when, and what the server answered — the chain
 * of custody from capture to the firm's archive. Its idempotency key is
 * `delivered:<stream>:<first seq>`, so recording it twice after a crash is a no-op. In `day`
 * mode the full list of records and their hashes is the receipt's `raw` blob.
 * A permanent refusal is recorded too (`delivery-refused`), as the compliance incident it is.
 */
import { type ArchiveRecord, type CaptureInput, type Sink, decodeRecord, parseCanonical } from '@offchannel/core';

export const RECEIPT_CHANNEL = 'delivery';
export const RECEIPT_EVENT = 'delivered';
export const REFUSAL_EVENT = 'delivery-refused';
/** Records pruned from capture's spool before this target delivered them (never a receipt). */
export const MISSED_EVENT = 'delivery-missed';
export const RECEIPT_RAW_FORMAT = 'offchannel.delivery-receipt.json';

export function receiptStream(target: string): string {
  return `${RECEIPT_CHANNEL}:${target}`;
}

/** One delivered message as a receipt states it. */
export interface Receipt {
  /** Seq of the receipt record in `delivery:<target>`. */
  readonly receiptSeq: number;
  readonly stream: string;
  readonly seqs: readonly number[];
  /** The journal address it went to. */
  readonly to: string;
  /** The mode it was delivered in (`undefined` for a receipt that does not say). */
  readonly mode: 'record' | 'day' | undefined;
  readonly messageId: string;
  /** Record mode: the record's SHA-256. */
  readonly recordHash: string | undefined;
  readonly deliveredAt: string;
  readonly reply: string;
  readonly inDoubt: boolean;
}

export interface ReceiptInput {
  readonly target: string;
  readonly to: string;
  readonly mode: 'record' | 'day';
  readonly stream: string;
  readonly records: readonly { readonly seq: number; readonly hash: string }[];
  readonly messageId: string;
  readonly emlSha256: string;
  readonly emlSize: number;
  readonly reply: string;
  readonly deliveredAt: Date;
  readonly attempts: number;
  readonly inDoubt: boolean;
}

export function receiptCapture(input: ReceiptInput): CaptureInput {
  const first = input.records[0];
  if (!first) throw new Error('a receipt needs at least one record');
  const seqs = input.records.map((record) => record.seq);
  const summary = seqRanges(seqs);
  const fields: Record<string, string> = {
    target: input.target,
    to: input.to,
    mode: input.mode,
    stream: input.stream,
    seqs: summary.length <= 1000 ? summary : `${first.seq}…${seqs.at(-1) ?? first.seq} (${seqs.length} records, listed in raw)`,
    records: String(seqs.length),
    ...(input.records.length === 1 ? { recordHash: first.hash } : {}),
    messageId: input.messageId,
    emlSha256: input.emlSha256,
    emlSize: String(input.emlSize),
    reply: input.reply,
    deliveredAt: input.deliveredAt.toISOString(),
    attempts: String(input.attempts),
    ...(input.inDoubt ? { inDoubt: 'true' } : {}),
  };
  return {
    kind: 'system',
    key: `${RECEIPT_EVENT}:${input.stream}:${first.seq}`,
    sentAt: input.deliveredAt,
    system: { event: RECEIPT_EVENT, fields },
    ...(input.records.length > 1 ? { raw: { format: RECEIPT_RAW_FORMAT, bytes: new TextEncoder().encode(JSON.stringify({ stream: input.stream, records: input.records })) } } : {}),
  };
}

export function refusalCapture(input: { readonly target: string; readonly to: string; readonly stream: string; readonly seqs: readonly number[]; readonly messageId: string; readonly reply: string; readonly at: Date }): CaptureInput {
  return {
    kind: 'system',
    sentAt: input.at,
    system: { event: REFUSAL_EVENT, fields: { target: input.target, to: input.to, stream: input.stream, seqs: seqRanges(input.seqs).slice(0, 1000), messageId: input.messageId, reply: input.reply, at: input.at.toISOString() } },
  };
}

/** Most characters of seq ranges one `delivery-missed` record lists (more go in further records). */
const MISSED_SEQS_PER_RECORD = 10_000;

/**
 * A gap: `ranges` (`"4-9"`, `"12"`, …) of `stream` were pruned from the spool this target
 * delivers from before it delivered them. One record per up to 10,000 characters of ranges —
 * split between ranges, never inside one — each keyed by its first and last seq: a restart that
 * finds the same gap records it once, and a gap that grew since (a crash before the cursor was
 * written, then another prune) is recorded whole under its own key.
 */
export function missedCaptures(input: { readonly target: string; readonly to: string; readonly stream: string; readonly ranges: readonly string[]; readonly at: Date }): CaptureInput[] {
  const chunks: string[][] = [];
  let chunk: string[] = [];
  let length = 0;
  for (const range of input.ranges) {
    if (chunk.length > 0 && length + 1 + range.length > MISSED_SEQS_PER_RECORD) {
      chunks.push(chunk);
      chunk = [];
      length = 0;
    }
    chunk.push(range);
    length += (chunk.length > 1 ? 1 : 0) + range.length;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks.map((ranges) => {
    const first = (ranges[0] ?? '').split('-')[0] ?? '';
    const last = (ranges.at(-1) ?? '').split('-').at(-1) ?? '';
    return {
      kind: 'system',
      key: `${MISSED_EVENT}:${input.stream}:${first}-${last}`,
      sentAt: input.at,
      system: { event: MISSED_EVENT, fields: { target: input.target, to: input.to, stream: input.stream, seqs: ranges.join(' '), reason: 'pruned-from-spool-before-delivery', at: input.at.toISOString() } },
    };
  });
}

/**
 * Reads the receipts of `delivery:<target>` after `afterSeq`, in order. `seen`, when given, is
 * told the seq and hash of every record read (refusals too), before its receipt is yielded.
 */
export async function* readReceipts(sink: Sink, target: string, afterSeq = 0, seen?: (seq: number, hash: string) => void): AsyncGenerator<Receipt> {
  const stream = receiptStream(target);
  if (!(await sink.streams()).includes(stream)) return;
  for await (const stored of sink.read(stream, { fromSeq: afterSeq + 1 })) {
    const { record, hash } = decodeRecord(stored.bytes);
    seen?.(record.seq, hash);
    const receipt = await toReceipt(sink, record);
    if (receipt) yield receipt;
  }
}

async function toReceipt(sink: Sink, record: ArchiveRecord): Promise<Receipt | undefined> {
  const fields = record.system?.fields;
  if (record.kind !== 'system' || record.system?.event !== RECEIPT_EVENT || !fields) return undefined;
  const stream = fields.stream ?? '';
  let seqs = parseSeqRanges(fields.seqs ?? '');
  if (seqs === undefined && record.raw) {
    const bytes = await sink.getBlob(record.raw.sha256);
    const detail = bytes ? (parseCanonicalLoose(bytes) as { records?: { seq?: unknown }[] } | undefined) : undefined;
    seqs = detail?.records?.map((item) => Number(item.seq)).filter((seq) => Number.isSafeInteger(seq) && seq > 0);
  }
  if (!seqs || seqs.length === 0) return undefined;
  const mode = fields.mode === 'record' || fields.mode === 'day' ? fields.mode : undefined;
  return { receiptSeq: record.seq, stream, seqs, to: fields.to ?? '', mode, messageId: fields.messageId ?? '', recordHash: fields.recordHash, deliveredAt: fields.deliveredAt ?? '', reply: fields.reply ?? '', inDoubt: fields.inDoubt === 'true' };
}

function parseCanonicalLoose(bytes: Uint8Array): unknown {
  try {
    return parseCanonical(bytes);
  } catch {
    try {
      return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    } catch {
      return undefined;
    }
  }
}

/** `1-3 5 7-9` for [1,2,3,5,7,8,9] (input in any order). */
export function seqRanges(seqs: readonly number[]): string {
  const sorted = [...seqs].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let index = 0; index < sorted.length; ) {
    const start = sorted[index] as number;
    let end = start;
    while (sorted[index + 1] === end + 1) end = sorted[++index] as number;
    parts.push(start === end ? String(start) : `${start}-${end}`);
    index++;
  }
  return parts.join(' ');
}

/** Inverse of {@link seqRanges}; undefined when the text is not a range list. */
export function parseSeqRanges(text: string): number[] | undefined {
  if (!/^\d+(-\d+)?( \d+(-\d+)?)*$/.test(text)) return undefined;
  const seqs: number[] = [];
  for (const part of text.split(' ')) {
    const [start, end] = part.split('-').map(Number) as [number, number | undefined];
    if (end !== undefined && end - start > 1_000_000) return undefined;
    for (let seq = start; seq <= (end ?? start); seq++) seqs.push(seq);
  }
  return seqs;
}
