/**
 * Re-derives every record of a WhatsApp stream from recorded evidence alone, as an auditor
 * would: for each record, in stream order, its raw blob and the records it names, run through
 * the exported mapping ({@link mapWhatsAppEvent}, {@link mapEnvelope}, {@link mapMediaOutcome}),
 * must give the same record. The context is rebuilt from the archive:
 * - `me`: the `whatsapp-identity` record;
 * - aliases and group subjects: folded in stream order from `whatsapp-directory` and
 *   group-metadata records and from what each message envelope states (its v7 key fields);
 * - an encrypted edit's secret: the `messageSecret` inside the raw blob of the message it names;
 * - `resolvesUndecryptable…`: the record named in its `meta`;
 * - a media follow-up: its target message's raw blob (the media key and hashes) plus the file
 *   (a blob) or the reason stated in the follow-up itself.
 * Records whose raw bytes were withheld by design (`system.fields.rawWithheld`: protocol
 * messages carrying account keys) are counted, not compared.
 */
import { createHash } from 'node:crypto';
import type { ArchiveRecord, CaptureInput } from '@offchannel/core';
import { proto } from '@whiskeysockets/baileys';
import { IdentityBook } from '../identity-book.ts';
import { EVENT_FORMAT, HISTORY_PAYLOAD_FORMAT, UNENCODABLE_FORMAT, mapEnvelope, mapMediaOutcome, mapWhatsAppEvent, type MapDependencies, type WhatsAppIdentity } from '../map-whatsapp.ts';
import { RAW_FORMAT, decodeEnvelope } from '../raw-envelope.ts';

export interface RederiveResult {
  /** Records re-derived and found equal. */
  readonly checked: number;
  /** Records whose raw bytes were withheld by design. */
  readonly withheld: number;
  /** One line per record that could not be re-derived or came out different. */
  readonly mismatches: readonly string[];
}

/** Re-derives `records` (one stream, in seq order); `blob` reads a blob by sha256. */
export function rederiveWhatsAppArchive(records: readonly ArchiveRecord[], blob: (sha256: string) => Uint8Array | undefined): RederiveResult {
  const book = new IdentityBook();
  let me: WhatsAppIdentity | undefined;
  let checked = 0;
  let withheld = 0;
  const mismatches: string[] = [];
  const byKey = new Map(records.map((record) => [record.key, record]));
  const messageOf = (chat: string, id: string) => records.find((r) => r.kind === 'message' && r.native?.chat === chat && r.native.id === id && r.raw?.format === RAW_FORMAT);
  const deps = (): MapDependencies => ({ me: me ?? { id: '' }, aliases: (jid) => book.aliases(jid), title: (chat) => book.title(chat) });

  for (const record of records) {
    const where = `seq ${record.seq} (${record.kind} ${record.key})`;
    try {
      if (record.kind === 'system' && record.system?.fields?.['rawWithheld']) {
        withheld++;
        continue;
      }
      if (!record.raw) {
        const derived = followUp(record, messageOf, blob, deps());
        if (derived === undefined) mismatches.push(`${where}: no raw blob and not a media follow-up`);
        else if (compare(derived, record, blob, where, mismatches)) checked++;
        continue;
      }
      const raw = blob(record.raw.sha256);
      if (!raw) {
        mismatches.push(`${where}: raw blob missing`);
        continue;
      }
      if (record.raw.format === RAW_FORMAT) {
        const context: MapDependencies = {
          ...deps(),
          secretOf: (chat, id) => secretIn(messageOf(chat, id), blob),
          ...(typeof record.meta?.['resolvesUndecryptableKey'] === 'string' ? { resolves: { key: record.meta['resolvesUndecryptableKey'], seq: byKey.get(record.meta['resolvesUndecryptableKey'])?.seq ?? -1 } } : {}),
        };
        const mapped = mapEnvelope(decodeEnvelope(raw).envelope, context);
        if (compare(mapped.input, record, blob, where, mismatches)) checked++;
        for (const [a, b] of mapped.aliasPairs ?? []) book.link(a, b);
        if (mapped.newTitle && mapped.ref) book.setTitle(mapped.ref.chat, mapped.newTitle);
        continue;
      }
      if (record.raw.format !== EVENT_FORMAT && record.raw.format !== UNENCODABLE_FORMAT && record.raw.format !== HISTORY_PAYLOAD_FORMAT) {
        mismatches.push(`${where}: raw format ${record.raw.format} is not a WhatsApp evidence format`);
        continue;
      }
      const mapped = mapWhatsAppEvent({ raw, format: record.raw.format }, deps());
      const input = mapped.inputs.find((candidate) => candidate.key === record.key);
      if (!input) mismatches.push(`${where}: the mapping gives no record with this key`);
      else if (compare(input, record, blob, where, mismatches)) checked++;
      if (record.system?.event === 'whatsapp-identity') {
        const fields = record.system.fields ?? {};
        me = { id: fields['id'] ?? '', ...(fields['lid'] ? { lid: fields['lid'] } : {}) };
      }
      for (const [a, b] of mapped.pairs ?? []) book.link(a, b);
      for (const [chat, title] of mapped.titles ?? []) book.setTitle(chat, title);
    } catch (error) {
      mismatches.push(`${where}: ${error instanceof Error ? `${error.name}: ${error.message}` : 'failed'}`);
    }
  }
  return { checked, withheld, mismatches };
}

/** A media follow-up: its message's raw blob gives what was fetched; the file or reason is in the follow-up. */
function followUp(record: ArchiveRecord, messageOf: (chat: string, id: string) => ArchiveRecord | undefined, blob: (sha256: string) => Uint8Array | undefined, deps: MapDependencies): CaptureInput | undefined {
  if (record.meta?.['followUp'] !== 'attachment' || !record.target?.chat) return undefined;
  const message = messageOf(record.target.chat, record.target.id);
  const raw = message?.raw ? blob(message.raw.sha256) : undefined;
  if (!raw) return undefined;
  const media = mapEnvelope(decodeEnvelope(raw).envelope, deps).media;
  const attachment = record.attachments?.[0];
  if (!media || !attachment) return undefined;
  const bytes = attachment.status === 'stored' ? blob(attachment.sha256) : undefined;
  return mapMediaOutcome(media, bytes ? { bytes } : { reason: attachment.status === 'unavailable' ? attachment.reason : 'missing' });
}

/** The `messageSecret` inside a message record's raw blob. */
function secretIn(record: ArchiveRecord | undefined, blob: (sha256: string) => Uint8Array | undefined): Uint8Array | undefined {
  const raw = record?.raw ? blob(record.raw.sha256) : undefined;
  if (!raw) return undefined;
  const info = proto.WebMessageInfo.decode(decodeEnvelope(raw).envelope.bytes);
  const secret = info.message?.messageContextInfo?.messageSecret ?? info.messageSecret;
  return secret && secret.length > 0 ? Uint8Array.from(secret) : undefined;
}

const SAME_FIELDS = ['kind', 'key', 'conversation', 'sender', 'direction', 'native', 'target', 'replyTo', 'forwarded', 'mentions', 'reaction', 'deletion', 'membership', 'problem', 'gap', 'system', 'meta'] as const;

/** Whether the derived input is the record (as the recorder stores it); adds a line per difference. */
function compare(input: CaptureInput, record: ArchiveRecord, blob: (sha256: string) => Uint8Array | undefined, where: string, out: string[]): boolean {
  const before = out.length;
  const differs = (field: string, a: unknown, b: unknown) => {
    if (canonical(a) !== canonical(b)) out.push(`${where}: ${field} differs: derived ${canonical(a)} recorded ${canonical(b)}`);
  };
  for (const field of SAME_FIELDS) differs(field, (input as unknown as Record<string, unknown>)[field], (record as unknown as Record<string, unknown>)[field]);
  const sentAt = input.sentAt === undefined ? undefined : new Date(input.sentAt).toISOString();
  differs('sentAt', sentAt, record.sentAt);
  const text = record.text ?? (record.textBlob ? Buffer.from(blob(record.textBlob.sha256) ?? []).toString('utf8') : undefined);
  differs('text', input.text, text);
  const raw = input.raw && 'bytes' in input.raw ? { format: input.raw.format, sha256: sha256(input.raw.bytes) } : undefined;
  differs('raw', raw, record.raw ? { format: record.raw.format, sha256: record.raw.sha256 } : undefined);
  const attachments = input.attachments?.map((a) => ('bytes' in a ? { status: 'stored', mime: a.mime, ...(a.name ? { name: a.name } : {}), sha256: sha256(a.bytes) } : a));
  const stored = record.attachments?.map((a) => (a.status === 'stored' ? { status: 'stored', mime: a.mime, ...(a.name ? { name: a.name } : {}), sha256: a.sha256 } : a));
  differs('attachments', attachments, stored);
  return out.length === before;
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v)) ?? 'undefined';
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
