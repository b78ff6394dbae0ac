/**
 * Witness cosignatures (c2sp.org/tlog-cosignature, cosignature/v1, Ed25519, type 0x04).
 *
 * A cosignature is one more signature line on a checkpoint note:
 *
 *   — <witness name> base64(key id ‖ uint64 BE time ‖ Ed25519 signature)
 *
 *   key id          SHA-256(name ‖ 0x0A ‖ 0x04 ‖ 32-byte public key)[:4]
 *   signed message  "cosignature/v1\ntime <time>\n" ‖ the whole checkpoint text
 *   verifier key    <name>+<id>+base64(0x04 ‖ public key)
 *   signer key      PRIVATE+KEY+<name>+<id>+base64(0x04 ‖ seed)   (secret: 0600, never logged)
 *
 * `time` is POSIX seconds: the witness's statement is "as of this time, this is the largest
 * consistent tree I have seen for this origin". A verifier that knows only the log's key
 * ignores these lines (signed-note: unknown keys are ignored), so cosigned checkpoints still
 * verify everywhere. A witness key is its own type, so it can never sign as a log.
 */
import { randomBytes } from 'node:crypto';
import { NoteError } from '../errors/note-errors.ts';
import { ed25519KeyFromSeed, ed25519KeyId, ed25519Verifier, formatVerifierKey, hex8, parseKeyText } from './ed25519-key.ts';
import type { NoteVerifier } from './ed25519-key.ts';
import { assertNoteText, parseNote } from './signed-note.ts';

/** Signature type byte of timestamped Ed25519 cosignatures. */
export const COSIGNATURE_V1_TYPE = 0x04;
/** Bytes after the key id: 8-byte time and 64-byte signature. */
const COSIGNATURE_BYTES = 72;
const DASH = '\u2014 ';
const encoder = new TextEncoder();

/** Verifies a witness's cosignatures. Usable with `openNote` (its `verify` reads the time). */
export interface CosignatureVerifier extends NoteVerifier {
  readonly publicKey: Uint8Array;
  /** `<name>+<id>+base64(0x04 ‖ key)` — what a verifier or capture config names. */
  readonly verifierKey: string;
}

/** A witness key: cosigns checkpoint texts. */
export interface Cosigner {
  readonly name: string;
  readonly keyId: number;
  readonly verifier: CosignatureVerifier;
  readonly verifierKey: string;
  /** The signature line (ending in a newline) over `text` at POSIX second `time`. */
  cosign(text: string, time: number): string;
  /** `PRIVATE+KEY+…` — secret: store 0600, never log. */
  signerKeyText(): string;
}

/** One cosignature line, parsed (not verified). */
export interface Cosignature {
  readonly name: string;
  readonly keyId: number;
  /** POSIX seconds. */
  readonly time: number;
  readonly signature: Uint8Array;
}

/** `cosignature/v1\ntime <time>\n` followed by the checkpoint text. */
export function cosignatureMessage(text: string, time: number): Uint8Array {
  assertTime(time);
  return encoder.encode(`cosignature/v1\ntime ${time}\n${text}`);
}

/** A witness key from a 32-byte seed. */
export function cosignerFromSeed(name: string, seed: Uint8Array): Cosigner {
  const key = ed25519KeyFromSeed(name, seed);
  const keyId = ed25519KeyId(name, key.publicKey, COSIGNATURE_V1_TYPE);
  const verifier = cosignatureVerifier(name, key.publicKey);
  const seedText = Buffer.concat([Buffer.from([COSIGNATURE_V1_TYPE]), seed]).toString('base64');
  return {
    name,
    keyId,
    verifier,
    verifierKey: verifier.verifierKey,
    cosign(text, time) {
      assertNoteText(text);
      const signature = key.sign(cosignatureMessage(text, time));
      const head = Buffer.alloc(12);
      head.writeUInt32BE(keyId, 0);
      head.writeBigUInt64BE(BigInt(time), 4);
      return `${DASH}${name} ${Buffer.concat([head, signature]).toString('base64')}\n`;
    },
    signerKeyText: () => `PRIVATE+KEY+${name}+${hex8(keyId)}+${seedText}`,
  };
}

/** A new random witness key. */
export function generateCosigner(name: string): Cosigner {
  return cosignerFromSeed(name, randomBytes(32));
}

/** Parses a witness signer key (type 0x04). A log key (type 0x01) is refused by name. */
export function parseCosignerKey(text: string): Cosigner {
  const { name, key } = parseKeyText(text, 'signer', COSIGNATURE_V1_TYPE);
  return cosignerFromSeed(name, key);
}

/** Parses a witness verifier key (type 0x04). */
export function parseCosignatureVerifierKey(text: string): CosignatureVerifier {
  const { name, key } = parseKeyText(text, 'verifier', COSIGNATURE_V1_TYPE);
  return cosignatureVerifier(name, key);
}

function cosignatureVerifier(name: string, publicKey: Uint8Array): CosignatureVerifier {
  const plain = ed25519Verifier(name, publicKey);
  const keyId = ed25519KeyId(name, publicKey, COSIGNATURE_V1_TYPE);
  return {
    name,
    keyId,
    publicKey: new Uint8Array(publicKey),
    verifierKey: formatVerifierKey(name, keyId, publicKey, COSIGNATURE_V1_TYPE),
    verify(message, signature) {
      const time = cosignatureTime(signature);
      if (time === undefined) return false;
      const signed = Buffer.concat([encoder.encode(`cosignature/v1\ntime ${time}\n`), message]);
      return plain.verify(signed, signature.subarray(8));
    },
  };
}

/** The time in a cosignature's bytes after the key id, or undefined when malformed. */
export function cosignatureTime(signature: Uint8Array): number | undefined {
  if (signature.length !== COSIGNATURE_BYTES) return undefined;
  const time = Buffer.from(signature.buffer, signature.byteOffset, 8).readBigUInt64BE(0);
  return time <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(time) : undefined;
}

/** Every signature line of `note` shaped like a cosignature (72 bytes after the id), unverified. */
export function parseCosignatures(note: string | Uint8Array): readonly Cosignature[] {
  return parseNote(note).signatures.flatMap((line) => {
    const time = cosignatureTime(line.signature);
    return time === undefined ? [] : [{ name: line.name, keyId: line.keyId, time, signature: line.signature.subarray(8) }];
  });
}

/** What one named witness said about a note. */
export type CosignatureStatus =
  | { readonly witness: string; readonly state: 'valid'; readonly time: number }
  | { readonly witness: string; readonly state: 'invalid' | 'missing' };

/**
 * Checks `note` for a cosignature from each of `witnesses`. Never throws for a bad
 * cosignature: it reports `invalid` (a line with the witness's name and key id that does not
 * verify: the note or the line was altered) or `missing`. Throws NOTE_MALFORMED for a
 * note that is not a signed note at all.
 */
export function checkCosignatures(note: string | Uint8Array, witnesses: readonly CosignatureVerifier[]): readonly CosignatureStatus[] {
  const { text, signatures } = parseNote(note);
  const message = encoder.encode(text);
  return witnesses.map((witness): CosignatureStatus => {
    const lines = signatures.filter((line) => line.name === witness.name && line.keyId === witness.keyId);
    if (lines.length === 0) return { witness: witness.name, state: 'missing' };
    const good = lines.filter((line) => witness.verify(message, line.signature));
    if (good.length !== lines.length) return { witness: witness.name, state: 'invalid' };
    const time = Math.max(...good.map((line) => cosignatureTime(line.signature) ?? 0));
    return { witness: witness.name, state: 'valid', time };
  });
}

/**
 * Adds signature lines to a signed note, once each (a line already present is not repeated).
 * The lines must be well-formed signature lines; nothing is verified here.
 */
export function addSignatureLines(note: string, lines: readonly string[]): string {
  parseNote(note);
  const present = new Set(note.slice(note.lastIndexOf('\n\n') + 2).split('\n'));
  const added = lines.map((line) => line.replace(/\n$/, '')).filter((line) => !present.has(line) && (present.add(line), true));
  const result = `${note}${added.map((line) => `${line}\n`).join('')}`;
  parseNote(result);
  return result;
}

function assertTime(time: number): void {
  if (!Number.isSafeInteger(time) || time < 0) throw new NoteError('NOTE_MALFORMED', 'a cosignature time is a whole number of seconds since 1970, not negative');
}
