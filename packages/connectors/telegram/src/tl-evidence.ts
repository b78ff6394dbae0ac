/**
 * Raw evidence for the MTProto route: every update is archived as the bytes mtcute's own TL
 * serializer produces for it (the same binary encoding Telegram uses on the wire, layer
 * {@link TL_LAYER}). Anyone can re-read a raw blob with `deserializeObject` from
 * `@mtcute/core/utils.js` (or any TL parser for that layer) and re-derive the record.
 */
import { OffchannelError } from '@offchannel/core';
import { Long, tl } from '@mtcute/core';
import { TlUnknownObjectError, deserializeObject, serializeObject } from '@mtcute/core/utils.js';

/** The TL schema layer of the bundled mtcute: raw blobs are in this layer's encoding. */
export const TL_LAYER: number = tl.LAYER;

/** `raw.format` of every MTProto record: a boxed TL object in the given layer's binary encoding. */
export const TL_RAW_FORMAT = `telegram.mtproto-tl.layer${tl.LAYER}`;

/** Largest TL blob {@link decodeTl} accepts (Telegram's own per-message limit is far lower). */
export const MAX_TL_BYTES = 16 * 1024 * 1024;

/** TL bytes could not be decoded. `code` is `TELEGRAM_TL_MALFORMED` or `TELEGRAM_TL_UNKNOWN_CONSTRUCTOR`. */
export class TelegramDecodeError extends OffchannelError {
  /** The unknown constructor id (`0x…`), when that was the problem. */
  readonly constructorId: string | undefined;

  constructor(code: 'TELEGRAM_TL_MALFORMED' | 'TELEGRAM_TL_UNKNOWN_CONSTRUCTOR', message: string, constructorId?: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.constructorId = constructorId;
  }
}

/** Serializes a TL object (with its constructor id) using mtcute's serializer. */
export function encodeTl(object: tl.TlObject): Uint8Array {
  return serializeObject(object);
}

/** `updates { updates: [], users: [], chats: [], date: 0, seq: 0 }`: the framing below is cut from mtcute's own bytes. */
const EMPTY_UPDATES = serializeObject({ _: 'updates', updates: [], users: [], chats: [], date: 0, seq: 0 });
const UPDATES_ID = EMPTY_UPDATES.subarray(0, 4);
const VECTOR_ID = EMPTY_UPDATES.subarray(4, 8);
const DATE_AND_SEQ = EMPTY_UPDATES.subarray(EMPTY_UPDATES.length - 8);

/**
 * Exactly the bytes {@link encodeTl} writes for `updates { updates: [update], users, chats,
 * date: 0, seq: 0 }`, with each user and chat serialized once per `cache`: the updates of one
 * batch (a getDifference of thousands of messages) share their users and chats, which would
 * otherwise be re-encoded for every update.
 */
export function encodeUpdatesContainer(update: tl.TypeUpdate, users: readonly tl.TypeUser[], chats: readonly tl.TypeChat[], cache: WeakMap<object, Uint8Array>): Uint8Array {
  const body = serializeObject(update);
  let size = 3 * 8 + 4 + body.length + 8;
  const peers: Uint8Array[] = [];
  for (const user of users) size += encodedPeer(user, cache, peers);
  for (const chat of chats) size += encodedPeer(chat, cache, peers);
  // Written in place (runs once per update in a backlog): one allocation, no part arrays.
  const out = new Uint8Array(size);
  out.set(UPDATES_ID, 0);
  out.set(VECTOR_ID, 4);
  writeUint32(out, 8, 1);
  out.set(body, 12);
  let at = vectorHeader(out, 12 + body.length, users.length);
  for (let index = 0; index < users.length; index++) at = put(out, at, peers[index] as Uint8Array);
  at = vectorHeader(out, at, chats.length);
  for (let index = users.length; index < peers.length; index++) at = put(out, at, peers[index] as Uint8Array);
  out.set(DATE_AND_SEQ, at);
  return out;
}

/** Appends a user's or chat's TL bytes (serialized once per `cache`) to `peers`; answers their length. */
function encodedPeer(object: tl.TypeUser | tl.TypeChat, cache: WeakMap<object, Uint8Array>, peers: Uint8Array[]): number {
  let bytes = cache.get(object);
  if (bytes === undefined) {
    bytes = serializeObject(object);
    cache.set(object, bytes);
  }
  peers.push(bytes);
  return bytes.length;
}

/** Writes a vector's constructor id and element count at `at`; answers where its elements start. */
function vectorHeader(out: Uint8Array, at: number, count: number): number {
  out.set(VECTOR_ID, at);
  writeUint32(out, at + 4, count);
  return at + 8;
}

/** Copies `bytes` to `at`; answers where the next part starts. */
function put(out: Uint8Array, at: number, bytes: Uint8Array): number {
  out.set(bytes, at);
  return at + bytes.length;
}

/** A TL `int` (32 bits, little-endian). */
function writeUint32(out: Uint8Array, at: number, value: number): void {
  out[at] = value & 0xff;
  out[at + 1] = (value >>> 8) & 0xff;
  out[at + 2] = (value >>> 16) & 0xff;
  out[at + 3] = (value >>> 24) & 0xff;
}

/**
 * Parses bytes written by {@link encodeTl}. Throws {@link TelegramDecodeError} for truncated,
 * malformed, oversized or trailing-garbage input and for constructors this layer does not know.
 */
export function decodeTl(bytes: Uint8Array): tl.TlObject {
  if (!(bytes instanceof Uint8Array)) throw new TelegramDecodeError('TELEGRAM_TL_MALFORMED', 'TL input must be a Uint8Array.');
  if (bytes.length < 4 || bytes.length % 4 !== 0) {
    throw new TelegramDecodeError('TELEGRAM_TL_MALFORMED', `TL input of ${bytes.length} bytes is not a whole number of 32-bit words.`);
  }
  if (bytes.length > MAX_TL_BYTES) throw new TelegramDecodeError('TELEGRAM_TL_MALFORMED', `TL input of ${bytes.length} bytes exceeds ${MAX_TL_BYTES}.`);
  let object: unknown;
  try {
    object = deserializeObject(bytes);
  } catch (error) {
    if (error instanceof TlUnknownObjectError) {
      const id = `0x${(error.objectId >>> 0).toString(16).padStart(8, '0')}`;
      throw new TelegramDecodeError('TELEGRAM_TL_UNKNOWN_CONSTRUCTOR', `TL constructor ${id} is not in layer ${TL_LAYER}; keep the raw bytes and decode them with a newer schema.`, id, { cause: error });
    }
    throw new TelegramDecodeError('TELEGRAM_TL_MALFORMED', 'TL input is truncated or malformed.', undefined, { cause: error });
  }
  if (typeof object !== 'object' || object === null || typeof (object as { _?: unknown })._ !== 'string') {
    throw new TelegramDecodeError('TELEGRAM_TL_MALFORMED', 'TL input is not a boxed object.');
  }
  // Re-encoding must give the same bytes; anything else means trailing garbage or a lossy parse.
  const again = serializeObject(object as tl.TlObject);
  if (again.length !== bytes.length || !again.every((byte, index) => byte === bytes[index])) {
    throw new TelegramDecodeError('TELEGRAM_TL_MALFORMED', 'TL input does not re-encode to the same bytes (trailing data or non-canonical encoding).');
  }
  return object as tl.TlObject;
}

/** The constructor id at the start of TL bytes, as `0x…`, or `undefined` if too short. */
export function constructorIdOf(bytes: Uint8Array): string | undefined {
  if (bytes.length < 4) return undefined;
  const id = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  return `0x${id.toString(16).padStart(8, '0')}`;
}

/** `raw.format` of the JSON rendering kept when an object cannot be TL-serialized. */
export const MTCUTE_JSON_FORMAT = 'telegram.mtcute-object.json';

/** JSON evidence of an mtcute object: 64-bit values as decimal strings, bytes as `{ base64 }`. */
export function jsonEvidence(value: unknown): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify(value, (_key, item: unknown) => {
      if (item instanceof Uint8Array) return { base64: Buffer.from(item).toString('base64') };
      if (typeof item === 'bigint') return item.toString();
      if (item instanceof Long) return item.toString();
      return item;
    }),
  );
}
