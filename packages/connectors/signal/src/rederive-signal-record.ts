/**
 * Re-derivation, for auditors: the capture input the mapping in `map-signal-content.ts` makes
 * from an archived record's raw bytes plus what the archive itself records — the record's own
 * envelope metadata (`meta['signal.*']`, its sender and, for attachments, what was stored) and
 * the device's `linked-device` record (`selfAci`). Run it over an archive and compare with
 * `prepareCapture` (see the test beside it): any difference is a record the mapping did not make.
 *
 * Records without raw bytes are not derived from evidence: those whose raw was withheld because
 * it holds secrets (a shared profile key, account-key sync messages) and the device's own
 * statements (linked device, unlink risk, offline gap, unlinked, identity change) — their
 * fields are the evidence.
 */
import type { ArchiveRecord, AttachmentInput, CaptureInput } from '@offchannel/core';
import {
  type AttachmentResults,
  type EnvelopeFacts,
  type EnvelopeHeader,
  RAW_CONTENT_FORMAT,
  RAW_ENVELOPE_FORMAT,
  attachmentPointersOf,
  envelopeHeader,
  mapContentless,
  mapSignalContent,
  mapUndecryptable,
  mapUnreadable,
} from './map-signal-content.ts';
import { decodeContent, decodeEnvelope } from './proto/signal-content.ts';

/** What the stream records once: the device's own ACI (its `linked-device` record). */
export interface SignalStreamContext {
  readonly selfAci: string;
}

/**
 * The capture input the mapping makes again from `raw` (the record's raw blob) for `record`, or
 * `undefined` when the record has no raw evidence or a format this mapping does not produce.
 * Throws when the bytes do not decode (they were not what the mapping recorded).
 */
export function rederiveSignalRecord(record: ArchiveRecord, raw: Uint8Array, context: SignalStreamContext): CaptureInput | undefined {
  const format = record.raw?.format;
  const problem = record.problem;
  if (record.kind === 'unsupported' && problem !== undefined && UNREADABLE.has(problem.reason)) {
    // Decrypted bytes the mapping could not read: recorded as they were, with the envelope's header.
    return mapUnreadable(headerFromMeta(record), record.sender?.id, raw, format ?? '', problem.reason, problem.detail ?? '');
  }
  if (format === RAW_CONTENT_FORMAT) {
    const content = decodeContent(raw);
    const pointers = attachmentPointersOf(content);
    const stored = (record.attachments ?? []) as readonly AttachmentInput[];
    const attachments: AttachmentResults = new Map(stored.length === pointers.length ? pointers.map((pointer, index) => [pointer, stored[index] as AttachmentInput]) : []);
    const derived = mapSignalContent(factsOf(record, context), content, raw, attachments);
    return derived.find((input) => input.key === record.key);
  }
  if (format === RAW_ENVELOPE_FORMAT) {
    const header = problem !== undefined && UNPARSED.has(problem.reason) ? { id: idOf(record) } : envelopeHeader(decodeEnvelope(raw), idOf(record));
    if (record.kind === 'undecryptable') return mapUndecryptable(header, raw, record.problem?.reason ?? '', record.problem?.detail ?? '');
    if (record.kind === 'system') return mapContentless(header, raw);
  }
  return undefined;
}

function metaOf(record: ArchiveRecord): Readonly<Record<string, unknown>> {
  return (record.meta ?? {});
}

function factsOf(record: ArchiveRecord, context: SignalStreamContext): EnvelopeFacts {
  const meta = metaOf(record);
  const number = (name: string): number | undefined => (typeof meta[name] === 'number' ? meta[name] : undefined);
  const serverGuid = typeof meta['signal.serverGuid'] === 'string' ? meta['signal.serverGuid'] : undefined;
  const clientTimestamp = number('signal.clientTimestamp');
  const serverTimestamp = number('signal.serverTimestamp');
  return {
    selfAci: context.selfAci,
    // Sync transcripts are accepted only from the device's own account: their sender is it.
    senderAci: record.sender?.id ?? '',
    senderDevice: number('signal.senderDevice') ?? 0,
    sealedSender: meta['signal.sealedSender'] === true,
    envelopeType: number('signal.envelopeType') ?? 0,
    ...(serverGuid === undefined ? {} : { serverGuid }),
    ...(clientTimestamp === undefined ? {} : { clientTimestamp }),
    ...(serverTimestamp === undefined ? {} : { serverTimestamp }),
    ...(meta['signal.toPni'] === true ? { destinationServiceId: 'PNI:' } : {}),
  };
}

/** Reasons `mapUnreadable` records (decrypted bytes that did not read). */
const UNREADABLE = new Set(['bad-padding', 'malformed-content', 'mapping-failed']);
/** Reasons an envelope was recorded without being parsed. */
const UNPARSED = new Set(['envelope-too-large', 'malformed-envelope']);

/** The envelope id a record's key names (`undecryptable:<id>`, `unsupported:<id>`, `event:<id>:server-receipt`). */
function idOf(record: ArchiveRecord): string {
  return record.key.slice(record.key.indexOf(':') + 1).replace(/:server-receipt$/, '');
}

/** An envelope's header as the record's meta states it (for records whose raw is not the envelope). */
function headerFromMeta(record: ArchiveRecord): EnvelopeHeader {
  const meta = metaOf(record);
  const sentAt = record.sentAt === undefined ? undefined : Date.parse(record.sentAt);
  const serverTimestamp = typeof meta['signal.serverTimestamp'] === 'number' ? meta['signal.serverTimestamp'] : undefined;
  return {
    id: idOf(record),
    ...(typeof meta['signal.envelopeType'] === 'number' ? { type: meta['signal.envelopeType'] } : {}),
    ...(typeof meta['signal.senderDevice'] === 'number' ? { sourceDevice: meta['signal.senderDevice'] } : {}),
    ...(typeof meta['signal.serverGuid'] === 'string' ? { serverGuid: meta['signal.serverGuid'] } : {}),
    ...(serverTimestamp === undefined ? {} : { serverTimestamp }),
    // sentAt is the client timestamp when there was one, else the server's.
    ...(sentAt === undefined || sentAt === serverTimestamp ? {} : { clientTimestamp: sentAt }),
  };
}
