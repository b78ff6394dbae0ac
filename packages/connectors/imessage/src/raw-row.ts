/**
 * The raw evidence stored with every iMessage record, format `imessage.chat-db-row.json`
 * (version 1): the message row and the rows joined to it, every column as chat.db holds it.
 *
 * ```json
 * {"format":"imessage.chat-db-row.json","version":1,
 *  "message":{"ROWID":{"int":"42"},"guid":"…","text":null,"attributedBody":{"base64":"BAtzdHJl…"},…},
 *  "handle":{…}|null,"chat":{…}|null,"otherHandle":{…}|null,"attachments":[{…}]}
 * ```
 *
 * Column values: NULL → `null`; INTEGER → `{"int":"<decimal>"}` (dates exceed 2^53); REAL →
 * `{"real":<number>}`; TEXT → the string; BLOB → `{"base64":"…"}` (attributedBody,
 * message_summary_info, payload_data…). Columns appear in the table's own order, so the blob
 * also records which columns this Mac's schema has.
 */
import type { RowBundle, SqlRow, SqlValue } from './chat-db/chat-db.ts';

/** Format name of the raw blob. */
export const RAW_ROW_FORMAT = 'imessage.chat-db-row.json';

/** Serializes a message row bundle as the raw evidence blob. */
export function encodeRawRow(bundle: RowBundle): Uint8Array {
  const json = {
    format: RAW_ROW_FORMAT,
    version: 1,
    message: encodeRow(bundle.message),
    handle: bundle.handle ? encodeRow(bundle.handle) : null,
    chat: bundle.chat ? encodeRow(bundle.chat) : null,
    otherHandle: bundle.otherHandle ? encodeRow(bundle.otherHandle) : null,
    attachments: bundle.attachments.map(encodeRow),
  };
  return new TextEncoder().encode(JSON.stringify(json));
}

/** Serializes one row (used alone for chat rows). */
export function encodeRow(row: SqlRow): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(row)) out[name] = encodeValue(value);
  return out;
}

function encodeValue(value: SqlValue): unknown {
  if (value === null || typeof value === 'string') return value;
  if (typeof value === 'bigint') return { int: value.toString() };
  if (typeof value === 'number') return Number.isInteger(value) ? { int: String(value) } : { real: value };
  return { base64: Buffer.from(value).toString('base64') };
}
