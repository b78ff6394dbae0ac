/**
 * The auditor's check, as code: for every record of an iMessage archive, take its raw blob (and
 * the blobs it names), run the exported mapping on that evidence alone, and get the same record.
 * Used by the re-derivation test and, at dispose, by every test that runs the relay harness.
 */
import assert from 'node:assert/strict';
import { prepareCapture, type ArchiveRecord, type AttachmentInput, type CaptureInput } from '@offchannel/core';
import { OBSERVATION_FORMAT, decodeObservation, mapChatDbEvent, type ChatDbEvidence } from '../map-chat-db-row.ts';
import { RAW_ROW_FORMAT, decodeRawRow, decodeRow } from '../raw-row.ts';

/** Records re-derived, and the keys of records the mapping does not produce (the runtime's `unmappable:` records). */
export interface Rederived {
  readonly checked: number;
  readonly runtimeRecords: readonly string[];
}

/** Re-derives every record; throws (assertion error naming the key) on the first that differs. */
export async function rederiveAll(records: readonly ArchiveRecord[], blob: (sha256: string) => Promise<Uint8Array | undefined>, self: string): Promise<Rederived> {
  let checked = 0;
  const runtimeRecords: string[] = [];
  for (const record of records) {
    if (record.key.startsWith('unmappable:')) {
      runtimeRecords.push(record.key); // the runtime's record of a mapping that threw: its raw is the event's bytes
      continue;
    }
    assert.ok(record.raw !== undefined, `record ${record.key} has no raw evidence`);
    const bytes = await blob(record.raw.sha256);
    assert.ok(bytes !== undefined, `the raw blob of ${record.key} is missing`);
    const inputs = candidates(record, bytes, self);
    const input = inputs.find((candidate) => candidate.key === record.key);
    assert.ok(input !== undefined, `the mapping does not produce ${record.key} from its raw evidence`);
    const { template } = prepareCapture(input, { stream: record.stream, channel: record.channel, account: record.account }, record.source);
    assert.deepEqual(comparable(template), comparable(record), `record ${record.key} differs from what the mapping makes of its evidence`);
    checked++;
  }
  return { checked, runtimeRecords };
}

/** Every record the mapping makes of this record's evidence. */
function candidates(record: ArchiveRecord, bytes: Uint8Array, self: string): CaptureInput[] {
  if (record.raw?.format === OBSERVATION_FORMAT) return mapChatDbEvent({ type: 'observation', observation: decodeObservation(bytes) }, { self, files: new Map() });
  assert.equal(record.raw?.format, RAW_ROW_FORMAT, `record ${record.key} has raw evidence of an unknown format`);
  const json = JSON.parse(new TextDecoder().decode(bytes)) as { chat?: unknown; members?: unknown[]; message?: unknown };
  if (json.message === undefined) {
    const evidence: ChatDbEvidence = { type: 'chat', chat: decodeRow(json.chat), members: (json.members ?? []).map(decodeRow), seenAt: record.sentAt ?? '' };
    return mapChatDbEvent(evidence, { self, files: new Map() });
  }
  const bundle = decodeRawRow(bytes);
  const guids = bundle.attachments.map((row) => String(row['guid']));
  const stored = (record.attachments ?? []).map(fileOf);
  const out: CaptureInput[] = [];
  // A first or recovered read: the row's attachments, in order, are the record's.
  const files = new Map(guids.flatMap((guid, index) => (stored[index] === undefined ? [] : [[guid, stored[index]] as const])));
  out.push(...mapChatDbEvent({ type: 'row', bundle }, { self, files }));
  // A transfer completed later: the one attachment the record carries.
  for (const guid of guids) if (stored[0] !== undefined) out.push(...mapChatDbEvent({ type: 'attachment', bundle, attachment: guid }, { self, files: new Map([[guid, stored[0]]]) }));
  return out;
}

/** An archived attachment as the mapping's input: the stored blob by reference, or the same marker. */
function fileOf(attachment: NonNullable<ArchiveRecord['attachments']>[number]): AttachmentInput {
  if (attachment.status === 'unavailable') return attachment;
  return { mime: attachment.mime, ...(attachment.name === undefined ? {} : { name: attachment.name }), blob: { sha256: attachment.sha256, size: attachment.size } };
}

/** A record without the fields the recorder sets when sequencing it. */
function comparable(record: ArchiveRecord): Record<string, unknown> {
  const { seq: _seq, prev: _prev, capturedAt: _capturedAt, ...rest } = record as ArchiveRecord & { capturedAt?: string };
  return JSON.parse(JSON.stringify(rest)) as Record<string, unknown>;
}
