/**
 * Ed25519 keys for signed notes, in the text formats of C2SP signed-note and Go's
 * golang.org/x/mod/sumdb/note:
 *
 *   signer key    PRIVATE+KEY+<name>+<key id, 8 hex>+<base64(0x01 ‖ 32-byte seed)>
 *   verifier key  <name>+<key id, 8 hex>+<base64(0x01 ‖ 32-byte public key)>
 *   key id        first 4 bytes (big-endian) of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)
 *
 * The verifier key text is what an auditor is given; the signer key text never leaves the
 * capture host (files 0600, never logged).
 */
import { type KeyObject, createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { NoteError } from '../errors/note-errors.ts';
import { hasControlCharacter } from './signed-note.ts';

/** Signature type byte of plain Ed25519 note signatures (logs). */
export const ED25519_NOTE_TYPE = 0x01;
const ED25519 = ED25519_NOTE_TYPE;
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** A key that signs notes. */
export interface NoteSigner {
  readonly name: string;
  /** The 4-byte key id as an unsigned integer. */
  readonly keyId: number;
  sign(message: Uint8Array): Uint8Array;
}

/** A key that verifies notes. */
export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey?: Uint8Array;
  verify(message: Uint8Array, signature: Uint8Array): boolean;
}

/** An Ed25519 signer with its verifier and both key texts. */
export interface Ed25519NoteKey extends NoteSigner {
  readonly verifier: NoteVerifier;
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** `<name>+<id>+<base64>` — give this to auditors. */
  readonly verifierKey: string;
  /** `PRIVATE+KEY+…` — secret: store 0600, never log. */
  signerKeyText(): string;
}

/** Key names: non-empty, no Unicode spaces, no `+` (C2SP signed-note). */
export function assertKeyName(name: string): void {
  if (typeof name !== 'string' || name.length === 0 || /[\s+]/u.test(name) || name.length > 1024 || !name.isWellFormed() || hasControlCharacter(name, false)) {
    throw new NoteError('KEY_MALFORMED', 'a key name must be non-empty and contain no spaces, "+" or control characters (e.g. archive.example.com/offchannel)');
  }
}

/**
 * The C2SP key id of an Ed25519 public key under `name`: SHA-256(name ‖ 0x0A ‖ type ‖ key)[:4].
 * `type` is 0x01 for note signatures, 0x04 for timestamped cosignatures (cosignature.ts).
 */
export function ed25519KeyId(name: string, publicKey: Uint8Array, type: number = ED25519): number {
  return createHash('sha256').update(name, 'utf8').update(Buffer.from([0x0a, type])).update(publicKey).digest().readUInt32BE(0);
}

/** A signer from a 32-byte seed. */
export function ed25519KeyFromSeed(name: string, seed: Uint8Array): Ed25519NoteKey {
  assertKeyName(name);
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new NoteError('KEY_MALFORMED', 'an Ed25519 seed is 32 bytes');
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const publicKey = Buffer.from(createPublicKey(privateKey).export({ format: 'der', type: 'spki' })).subarray(SPKI_PREFIX.length);
  const keyId = ed25519KeyId(name, publicKey);
  const verifier = ed25519Verifier(name, publicKey);
  const seedCopy = Buffer.from(seed);
  return {
    name,
    keyId,
    verifier,
    publicKey: new Uint8Array(publicKey),
    verifierKey: formatVerifierKey(name, keyId, publicKey),
    sign: (message) => new Uint8Array(sign(null, message, privateKey)),
    signerKeyText: () => `PRIVATE+KEY+${name}+${hex8(keyId)}+${Buffer.concat([Buffer.from([ED25519]), seedCopy]).toString('base64')}`,
  };
}

/** A new random signer. */
export function generateEd25519NoteKey(name: string): Ed25519NoteKey {
  return ed25519KeyFromSeed(name, randomBytes(32));
}

/** Parses `PRIVATE+KEY+<name>+<id>+<base64>`, checking the id. Errors never echo the key. */
export function parseSignerKey(text: string): Ed25519NoteKey {
  const { name, key: seed } = parseKeyText(text, 'signer', ED25519);
  return ed25519KeyFromSeed(name, seed);
}

/** Parses `<name>+<id>+<base64(0x01 ‖ public key)>`, checking the id. */
export function parseVerifierKey(text: string): NoteVerifier & { readonly verifierKey: string } {
  const { name, key: publicKey } = parseKeyText(text, 'verifier', ED25519);
  return { ...ed25519Verifier(name, publicKey), verifierKey: formatVerifierKey(name, ed25519KeyId(name, publicKey), publicKey) };
}

/**
 * Splits a signer (`PRIVATE+KEY+…`) or verifier key text of signature type `type` into its
 * name and 32 key bytes (the seed or the public key), checking the key id. For cosignature.ts.
 */
export function parseKeyText(text: string, kind: 'signer' | 'verifier', type: number): { readonly name: string; readonly key: Buffer } {
  const signer = kind === 'signer';
  const parts = splitFields(text.trim(), signer ? 5 : 3);
  if (signer && (parts.length !== 5 || parts[0] !== 'PRIVATE' || parts[1] !== 'KEY')) {
    throw new NoteError('KEY_MALFORMED', 'a signer key has the form PRIVATE+KEY+<name>+<id>+<base64>; generate one with `offchannel keygen`');
  }
  if (!signer && parts.length !== 3) throw new NoteError('KEY_MALFORMED', 'a verifier key has the form <name>+<8 hex id>+<base64>');
  const [name, id, encoded] = parts.slice(-3) as [string, string, string];
  assertKeyName(name);
  if (!/^[0-9a-f]{8}$/.test(id)) throw new NoteError('KEY_MALFORMED', `the key id of a ${kind} key is 8 lowercase hex digits`);
  const key = decodeKeyBytes(encoded, type).subarray(1);
  const publicKey = signer ? ed25519KeyFromSeed(name, key).publicKey : key;
  if (hex8(ed25519KeyId(name, publicKey, type)) !== id) throw new NoteError('KEY_MALFORMED', `the key id in ${kind} key "${name}" does not match its key`);
  return { name, key };
}

/** A verifier of plain Ed25519 signatures by `publicKey` (32 bytes) under `name`. */
export function ed25519Verifier(name: string, publicKey: Uint8Array): NoteVerifier {
  const keyObject: KeyObject = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
  return {
    name,
    keyId: ed25519KeyId(name, publicKey),
    publicKey: new Uint8Array(publicKey),
    verify: (message, signature) => signature.length === 64 && verify(null, message, keyObject, signature),
  };
}

/** Splits on the first `count - 1` plus signs: base64 key material may itself contain `+`. */
function splitFields(text: string, count: number): string[] {
  const parts: string[] = [];
  let rest = text;
  while (parts.length < count - 1) {
    const plus = rest.indexOf('+');
    if (plus < 0) break;
    parts.push(rest.slice(0, plus));
    rest = rest.slice(plus + 1);
  }
  parts.push(rest);
  return parts;
}

function decodeKeyBytes(encoded: string, type: number): Buffer {
  if (!BASE64.test(encoded)) throw new NoteError('KEY_MALFORMED', 'the key material is not base64');
  const bytes = Buffer.from(encoded, 'base64');
  const hex = `0x${type.toString(16).padStart(2, '0')}`;
  if (bytes.length === 33 && bytes[0] !== type && bytes.toString('base64') === encoded) {
    const kinds: Record<number, string> = { 1: 'a log (note) key', 4: 'a witness (cosignature) key' };
    throw new NoteError('KEY_MALFORMED', `this is ${kinds[bytes[0] ?? 0] ?? 'a key of another signature type'}; a key of type ${hex} is needed here`);
  }
  if (bytes.length !== 33 || bytes.toString('base64') !== encoded) {
    throw new NoteError('KEY_MALFORMED', `the key material must be ${hex} followed by 32 bytes (an Ed25519 key)`);
  }
  return bytes;
}

/** `<name>+<id>+<base64(type ‖ public key)>`. */
export function formatVerifierKey(name: string, keyId: number, publicKey: Uint8Array, type: number = ED25519): string {
  return `${name}+${hex8(keyId)}+${Buffer.concat([Buffer.from([type]), publicKey]).toString('base64')}`;
}

/** A key id as 8 lowercase hex digits. */
export function hex8(keyId: number): string {
  return keyId.toString(16).padStart(8, '0');
}
