/**
 * Signal service ids on the wire: a string (`<uuid>` for an ACI, `PNI:<uuid>` for a PNI) or
 * binary (16 bytes for an ACI; 0x01 followed by 16 bytes for a PNI).
 */
import { protobufError } from './wire.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function uuidString(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** Converts a binary service id to its string form. Throws `SIGNAL_PROTOBUF_INVALID` if malformed. */
export function serviceIdFromBinary(bytes: Uint8Array, what: string): string {
  if (bytes.length === 16) return uuidString(bytes);
  if (bytes.length === 17 && bytes[0] === 0x01) return `PNI:${uuidString(bytes.subarray(1))}`;
  throw protobufError(`binary service id has ${bytes.length} bytes (expected 16, or 17 starting with 0x01)`, what);
}

/** Normalizes a string service id (lowercase uuid, `PNI:` prefix kept). Throws if malformed. */
export function normalizeServiceId(value: string, what: string): string {
  const lower = value.toLowerCase();
  const isPni = lower.startsWith('pni:');
  const uuid = isPni ? lower.slice(4) : lower;
  if (!UUID.test(uuid)) throw protobufError('service id is not a UUID', what);
  return isPni ? `PNI:${uuid}` : uuid;
}

/** The string form from whichever of the string and binary fields is present (string wins). */
export function eitherServiceId(text: string | undefined, binary: Uint8Array | undefined, what: string): string | undefined {
  if (text !== undefined && text !== '') return normalizeServiceId(text, what);
  if (binary !== undefined && binary.length > 0) return serviceIdFromBinary(binary, what);
  return undefined;
}

/** A 16-byte UUID (server GUIDs) as a string. */
export function uuidFromBinary(bytes: Uint8Array, what: string): string {
  if (bytes.length !== 16) throw protobufError(`uuid has ${bytes.length} bytes (expected 16)`, what);
  return uuidString(bytes);
}

/** Binary form of a string service id (used when writing test inputs and requests). */
export function serviceIdToBinary(serviceId: string): Uint8Array<ArrayBuffer> {
  const id = normalizeServiceId(serviceId, 'service id');
  const isPni = id.startsWith('PNI:');
  const raw = Buffer.from((isPni ? id.slice(4) : id).replaceAll('-', ''), 'hex');
  return isPni ? Uint8Array.from([0x01, ...raw]) : Uint8Array.from(raw);
}
