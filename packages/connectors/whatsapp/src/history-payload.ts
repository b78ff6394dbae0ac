/**
 * Checks a history-sync notification's inline payload before Baileys processes it.
 *
 * The phone may carry the history chunk inside the notification itself
 * (`initialHistBootstrapInlinePayload`: a zlib-deflated `HistorySync` protobuf) instead of as an
 * encrypted download. Baileys inflates it without a size limit and throws on bytes that are not
 * a `HistorySync`, so what the phone sent would be lost without a trace. The connector asks this
 * check first (Baileys' `shouldSyncHistoryMessage`), and only for notifications from the
 * account's own devices (anyone else's is never examined: Baileys drops it).
 *
 * The check's cost is bounded whoever sent the bytes: at most {@link MAX_HISTORY_INFLATED_BYTES}
 * are inflated (inline payloads are small on-demand answers; large history comes as downloaded
 * blobs), and the entries are counted with a protobuf wire scan before anything is decoded
 * (at most {@link MAX_HISTORY_ENTRIES} top-level entries and {@link MAX_HISTORY_MESSAGES}
 * messages), so a few KB of empty entries cannot expand into millions of decoded objects.
 * A payload over a limit, that does not inflate or decode, or that holds a chat without id or
 * a message without key (Baileys would throw on it) is refused and recorded `unsupported` with
 * the bytes as received; a good one is processed by Baileys as usual. (Downloaded chunks are
 * fetched and decrypted by Baileys; one that fails there is logged by Baileys and, when it was
 * an answer to reconciliation, reported as not answered.)
 */
import { inflateSync } from 'node:zlib';
import { proto } from '@whiskeysockets/baileys';

/** Largest inflated inline history chunk accepted (a zip bomb stops here). */
export const MAX_HISTORY_INFLATED_BYTES = 4 * 1024 * 1024;
/** Most top-level entries (chats, status messages, push names, …) in one inline chunk. */
export const MAX_HISTORY_ENTRIES = 10_000;
/** Most messages, over all chats, in one inline chunk. */
export const MAX_HISTORY_MESSAGES = 20_000;

export interface HistoryPayloadProblem {
  readonly reason: 'history-payload-inflate-failed' | 'history-payload-too-large' | 'history-payload-malformed';
  /** The inline payload exactly as the phone sent it. */
  readonly bytes: Uint8Array;
}

/** `undefined` when the notification has no inline payload or it is a readable `HistorySync`. */
export function checkHistoryPayload(notification: proto.Message.IHistorySyncNotification): HistoryPayloadProblem | undefined {
  const payload = notification.initialHistBootstrapInlinePayload;
  if (!payload || payload.length === 0) return undefined;
  const bytes = Uint8Array.from(payload);
  let inflated: Buffer;
  try {
    inflated = inflateSync(bytes, { maxOutputLength: MAX_HISTORY_INFLATED_BYTES });
  } catch (error) {
    const tooLarge = error instanceof RangeError || (error as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE';
    return { reason: tooLarge ? 'history-payload-too-large' : 'history-payload-inflate-failed', bytes };
  }
  const counted = countEntries(inflated);
  if (counted !== 'ok') return { reason: counted, bytes };
  let sync: proto.HistorySync;
  try {
    sync = proto.HistorySync.decode(inflated);
  } catch {
    return { reason: 'history-payload-malformed', bytes };
  }
  // Baileys reads every message's key while processing the chunk: one without would throw there.
  for (const conversation of sync.conversations) {
    if (!conversation.id || (conversation.messages ?? []).some((m) => !m.message?.key)) return { reason: 'history-payload-malformed', bytes };
  }
  return undefined;
}

const CONVERSATIONS = 2; // HistorySync.conversations
const MESSAGES = 2; // Conversation.messages

/** Counts entries on the wire (no objects built): top level, and messages inside each chat. */
function countEntries(bytes: Uint8Array): 'ok' | 'history-payload-too-large' | 'history-payload-malformed' {
  let entries = 0;
  let messages = 0;
  const top = new WireScan(bytes, 0, bytes.length);
  for (let field = top.next(); field !== undefined; field = top.next()) {
    if (field === 'malformed') return 'history-payload-malformed';
    if (++entries > MAX_HISTORY_ENTRIES) return 'history-payload-too-large';
    if (field.number !== CONVERSATIONS || field.start === undefined) continue;
    const chat = new WireScan(bytes, field.start, field.end);
    for (let inner = chat.next(); inner !== undefined; inner = chat.next()) {
      if (inner === 'malformed') return 'history-payload-malformed';
      if (inner.number === MESSAGES && ++messages > MAX_HISTORY_MESSAGES) return 'history-payload-too-large';
    }
  }
  return 'ok';
}

interface WireField {
  readonly number: number;
  /** Where a length-delimited field's bytes start and end. */
  readonly start?: number;
  readonly end: number;
}

/** Walks the fields of one protobuf message on the wire; groups (unused by WhatsApp) are malformed. */
class WireScan {
  #at: number;
  readonly #bytes: Uint8Array;
  readonly #end: number;

  constructor(bytes: Uint8Array, start: number, end: number) {
    this.#bytes = bytes;
    this.#at = start;
    this.#end = end;
  }

  next(): WireField | 'malformed' | undefined {
    if (this.#at >= this.#end) return undefined;
    const tag = this.#varint();
    if (tag === undefined || tag > 0xffff_ffff || tag >>> 3 === 0) return 'malformed';
    const number = tag >>> 3;
    switch (tag & 7) {
      case 0:
        return this.#varint() === undefined ? 'malformed' : { number, end: this.#at };
      case 1:
        return this.#skip(8, number);
      case 5:
        return this.#skip(4, number);
      case 2: {
        const length = this.#varint();
        if (length === undefined) return 'malformed';
        const start = this.#at;
        const field = this.#skip(length, number);
        return field === 'malformed' ? field : { number, start, end: field.end };
      }
      default:
        return 'malformed';
    }
  }

  #skip(length: number, number: number): WireField | 'malformed' {
    if (length > this.#end - this.#at) return 'malformed';
    this.#at += length;
    return { number, end: this.#at };
  }

  /** A varint of up to 10 bytes (values beyond a safe integer read as the largest one). */
  #varint(): number | undefined {
    let value = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.#at >= this.#end) return undefined;
      const byte = this.#bytes[this.#at++] ?? 0;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return Math.min(value, Number.MAX_SAFE_INTEGER);
    }
    return undefined;
  }
}
