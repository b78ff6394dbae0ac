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
 * `{"real":<number>}` (a whole-number REAL too: `{"real":3}`; ±infinity, which JSON cannot write,
 * as `{"real":"Infinity"}` / `{"real":"-Infinity"}`); TEXT → the string; BLOB → `{"base64":"…"}` (attributedBody,
 * message_summary_info, payload_data…). Columns appear in the table's own order, so the blob
 * also records which columns this Mac's schema has.
 */
import { OffchannelError } from '@offchannel/core';
import type { RowBundle, SqlRow, SqlValue } from './chat-db/chat-db.ts';

/** Format name of the raw blob. */
export const RAW_ROW_FORMAT = 'imessage.chat-db-row.json';

/** Blobs already encoded, by bundle: every record of a row carries the same bytes. */
const encoded = new WeakMap<RowBundle, Uint8Array>();

/** Serializes a message row bundle as the raw evidence blob (the same bytes for the same bundle object). */
export function encodeRawRow(bundle: RowBundle): Uint8Array {
  let bytes = encoded.get(bundle);
  if (bytes === undefined) {
    bytes = encodeBundle(bundle);
    encoded.set(bundle, bytes);
  }
  return bytes;
}

/** The same JSON as `JSON.stringify` of the object form, written directly (the first import's hot path). */
function encodeBundle(bundle: RowBundle): Uint8Array {
  const row = (value: SqlRow | undefined): string => (value === undefined ? 'null' : rowJson(value));
  let attachments = '';
  for (const attachment of bundle.attachments) attachments += (attachments === '' ? '' : ',') + rowJson(attachment);
  const json = `{"format":${FORMAT_JSON},"version":1,"message":${rowJson(bundle.message)},"handle":${row(bundle.handle)},"chat":${row(bundle.chat)},"otherHandle":${row(bundle.otherHandle)},"attachments":[${attachments}]}`;
  return Buffer.from(json, 'utf8');
}

const FORMAT_JSON = JSON.stringify(RAW_ROW_FORMAT);

/**
 * A column's JSON pieces, escaped once rather than per row: `"<name>":` alone, and with the
 * values most columns hold (NULL and 0), each without and with the leading comma.
 */
interface ColumnJson {
  readonly key: readonly [string, string];
  readonly nul: readonly [string, string];
  readonly zero: readonly [string, string];
}
/** By column name: chat.db's few hundred names. */
const columnJson = new Map<string, ColumnJson>();
/** More names than any Messages schema has (a hostile database's own): start the cache over. */
const COLUMN_CACHE_LIMIT = 4096;
const ZERO_JSON = '{"int":"0"}';

function columnOf(name: string): ColumnJson {
  let column = columnJson.get(name);
  if (column === undefined) {
    if (columnJson.size >= COLUMN_CACHE_LIMIT) columnJson.clear();
    const key = `${JSON.stringify(name)}:`;
    column = { key: [key, `,${key}`], nul: [`${key}null`, `,${key}null`], zero: [`${key}${ZERO_JSON}`, `,${key}${ZERO_JSON}`] };
    columnJson.set(name, column);
  }
  return column;
}

function rowJson(row: SqlRow): string {
  let out = '{';
  let comma = 0;
  // Own keys only: a row's prototype is Object.prototype (chat-db.ts), whose enumerable keys, if
  // something in the process ever added one, are no column.
  for (const name of Object.keys(row)) {
    const column = columnOf(name);
    const value = row[name] as SqlValue;
    if (value === null) out += column.nul[comma] as string;
    else if (value === 0n) out += column.zero[comma] as string;
    else out += (column.key[comma] as string) + valueJson(value);
    comma = 1;
  }
  return `${out}}`;
}

function valueJson(value: SqlValue): string {
  if (value === null) return 'null';
  if (typeof value === 'bigint') return `{"int":"${value.toString()}"}`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') return `{"real":${realJson(value)}}`;
  return `{"base64":"${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}"}`;
}

/**
 * A REAL's JSON. The chat.db statements read INTEGERs as BigInts, so every number is a REAL —
 * whole or not (blobs of earlier versions tagged whole REALs `{"int":…}`; see decodeValue).
 */
function realJson(value: number): string {
  return Number.isFinite(value) ? JSON.stringify(value) : `"${String(value)}"`;
}

/** Serializes one row (used alone for chat rows). */
export function encodeRow(row: SqlRow): Record<string, unknown> {
  // No prototype: a column named `__proto__` is a column like any other, not a setter.
  const out = Object.create(null) as Record<string, unknown>;
  for (const [name, value] of Object.entries(row)) out[name] = encodeValue(value);
  return out;
}

function encodeValue(value: SqlValue): unknown {
  if (value === null || typeof value === 'string') return value;
  if (typeof value === 'bigint') return { int: value.toString() };
  if (typeof value === 'number') return { real: Number.isFinite(value) ? value : String(value) };
  return { base64: Buffer.from(value).toString('base64') };
}

/** A message row bundle back from its raw blob (what an auditor re-runs the mapping on). */
export function decodeRawRow(bytes: Uint8Array): RowBundle {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  } catch (error) {
    throw new OffchannelError('IMESSAGE_EVIDENCE_INVALID', `not an ${RAW_ROW_FORMAT} message blob: it is not JSON`, { cause: error });
  }
  if (typeof json !== 'object' || json === null || json['format'] !== RAW_ROW_FORMAT || json['version'] !== 1 || typeof json['message'] !== 'object') throw new OffchannelError('IMESSAGE_EVIDENCE_INVALID', `not an ${RAW_ROW_FORMAT} message blob`);
  const row = (value: unknown): SqlRow | undefined => (value === null || value === undefined ? undefined : decodeRow(value));
  const handle = row(json['handle']);
  const chat = row(json['chat']);
  const otherHandle = row(json['otherHandle']);
  const listed = json['attachments'];
  if (listed !== undefined && !Array.isArray(listed)) throw new OffchannelError('IMESSAGE_EVIDENCE_INVALID', `not an ${RAW_ROW_FORMAT} message blob: attachments is not a list`);
  const attachments = listed === undefined ? [] : listed.map(decodeRow);
  return { message: decodeRow(json['message']), attachments, ...(handle ? { handle } : {}), ...(chat ? { chat } : {}), ...(otherHandle ? { otherHandle } : {}) };
}

/** One row back from its encoded form. */
export function decodeRow(value: unknown): SqlRow {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new OffchannelError('IMESSAGE_EVIDENCE_INVALID', 'a row in the raw row blob is not a JSON object of columns');
  const out = Object.create(null) as Record<string, SqlValue>;
  for (const [name, cell] of Object.entries(value as Record<string, unknown>)) out[name] = decodeValue(cell);
  return out;
}

function decodeValue(cell: unknown): SqlValue {
  if (cell === null || typeof cell === 'string') return cell;
  const tagged = cell as { int?: unknown; real?: unknown; base64?: unknown };
  if (typeof tagged.int === 'string') {
    if (/^-?\d{1,21}$/.test(tagged.int)) return BigInt(tagged.int); // 21 digits: a whole REAL below 1e21, as written before
    // Blobs written before whole REALs were tagged `real` hold one of 1e21 or more as `"1e+21"`.
    const legacy = Number(tagged.int);
    if (/^-?\d(\.\d+)?e\+\d+$/.test(tagged.int) && Number.isInteger(legacy)) return legacy;
    throw new OffchannelError('IMESSAGE_EVIDENCE_INVALID', 'an {int} column value in the raw row is not a decimal integer');
  }
  if (typeof tagged.real === 'number') return tagged.real;
  if (tagged.real === 'Infinity' || tagged.real === '-Infinity') return Number(tagged.real);
  if (typeof tagged.base64 === 'string') return new Uint8Array(Buffer.from(tagged.base64, 'base64'));
  throw new OffchannelError('IMESSAGE_EVIDENCE_INVALID', 'a column value in the raw row is not null, text, {int}, {real} or {base64}');
}
