/**
 * Checks a history-sync notification's inline payload before Baileys processes it.
 *
 * The phone may carry the history chunk inside the notification itself
 * (`initialHistBootstrapInlinePayload`: a zlib-deflated `HistorySync` protobuf) instead of as an
 * encrypted download. Baileys inflates it without a size limit and throws on bytes that are not
 * a `HistorySync`, so what the phone sent would be lost without a trace. The connector asks this
 * check first (Baileys' `shouldSyncHistoryMessage`): a payload that does not inflate within
 * {@link MAX_HISTORY_INFLATED_BYTES}, does not decode, or holds a chat without id or a message
 * without key (Baileys would throw on it) is refused and recorded `unsupported` with
 * the bytes as received; a good one is processed by Baileys as usual. (Downloaded chunks are
 * fetched and decrypted by Baileys; one that fails there is logged by Baileys and, when it was
 * an answer to reconciliation, reported as not answered.)
 */
import { inflateSync } from 'node:zlib';
import { proto } from '@whiskeysockets/baileys';

/** Largest inflated history chunk accepted (a zip bomb stops here). */
export const MAX_HISTORY_INFLATED_BYTES = 64 * 1024 * 1024;

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
