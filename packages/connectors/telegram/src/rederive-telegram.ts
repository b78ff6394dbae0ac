/**
 * Re-derivation: what an auditor does to check a Telegram record without the capture host.
 * Take the record's raw blob and the records it names, run the exported mapping
 * (`map-telegram.ts`), and compare the record it makes with the archived one.
 *
 * - `selfId` comes from the stream's `telegram-session` record;
 * - the update and peers come from the raw bytes ({@link evidenceOf});
 * - what the connector knew before comes from the record named in `meta.comparedWith` or
 *   `meta.resolvedFrom` ({@link memoryFromRecords}); `meta.previousUnknown` means nothing;
 * - downloaded media are the record's own stored attachments; a receipt time is its `sentAt`.
 *
 * Records the mapping does not make are not re-derived here: `gap` records (their window is
 * their content), `system` records of the connector's session, and `unsupported` records the
 * runtime made because mapping threw (`problem.reason: mapping-failed`, key `unmappable:`).
 */
import { type ArchiveRecord, type AttachmentInput, prepareCapture } from '@offchannel/core';
import { TL_MEDIA_MIME, evidenceOf, mapTelegramUpdate, memoryFromRecords, ptsOf, type MessageMemory } from './map-telegram.ts';
import { TL_RAW_FORMAT } from './tl-evidence.ts';

/** What re-derivation reads from the archive. */
export interface TelegramArchiveReader {
  /** The durable record with this idempotency key in the stream. */
  byKey(key: string): ArchiveRecord | undefined;
  blob(sha256: string): Promise<Uint8Array | undefined>;
}

/** Why a record was not re-derived, or the record the mapping makes from its evidence. */
export type RederivedTelegramRecord =
  | { readonly status: 'not-mapped'; readonly reason: string }
  | { readonly status: 'derived'; readonly record: ArchiveRecord | undefined };

/** Re-derives one record of a `telegram:<account>` stream (see the file comment). */
export async function rederiveTelegramRecord(record: ArchiveRecord, selfId: number, archive: TelegramArchiveReader): Promise<RederivedTelegramRecord> {
  if (record.raw?.format !== TL_RAW_FORMAT) return { status: 'not-mapped', reason: `no TL evidence (${record.kind})` };
  if (record.key.startsWith('unmappable:')) return { status: 'not-mapped', reason: 'made by the runtime: mapping threw' };
  const raw = await archive.blob(record.raw.sha256);
  if (raw === undefined) throw new Error(`raw blob ${record.raw.sha256} of record ${record.seq} is missing`);
  const evidence = evidenceOf(raw, record);
  if (evidence === undefined) return { status: 'not-mapped', reason: 'raw bytes are not an update the mapping reads' };
  const memory = new Map<number, MessageMemory>();
  const named = record.meta?.['comparedWith'] ?? record.meta?.['resolvedFrom'];
  if (typeof named === 'string' && record.target !== undefined) {
    const previous = archive.byKey(named);
    const bytes = previous?.raw === undefined ? undefined : await archive.blob(previous.raw.sha256);
    if (previous === undefined || bytes === undefined) throw new Error(`record ${record.seq} names ${named}, which is not in the archive`);
    memory.set(Number(record.target.id), memoryFromRecords(Number(record.target.id), { record: previous, raw: bytes }, selfId));
  }
  const attachments: AttachmentInput[] = (record.attachments ?? [])
    .filter((attachment) => attachment.mime !== TL_MEDIA_MIME)
    .map((attachment) => (attachment.status === 'stored' ? { blob: { sha256: attachment.sha256, size: attachment.size }, mime: attachment.mime, ...(attachment.name === undefined ? {} : { name: attachment.name }) } : attachment));
  const source = record.meta?.['source'];
  const pts = ptsOf(evidence.update);
  const inputs = mapTelegramUpdate(evidence.update, {
    selfId,
    peers: evidence.peers,
    raw,
    attachments,
    memory,
    receivedAt: new Date(record.sentAt ?? record.capturedAt),
    ...(typeof source === 'string' ? { source } : {}),
    ...(pts === undefined ? {} : { pts }),
  });
  const input = inputs.find((candidate) => candidate.key === record.key);
  if (input === undefined) return { status: 'derived', record: undefined };
  const { template } = prepareCapture(input, { stream: record.stream, channel: record.channel, account: record.account }, record.source);
  return { status: 'derived', record: { ...template, seq: record.seq, prev: record.prev, capturedAt: record.capturedAt } };
}
