/**
 * C2SP signed notes (c2sp.org/signed-note): a UTF-8 text ending in a newline, a blank line,
 * then one signature line per signature: `— <key name> <base64(key id ‖ signature)>`.
 *
 * Opening a note follows the spec: signatures from unknown keys are ignored (even if they share
 * a name or an id with a known key, but not both); a signature from a known key MUST verify,
 * or the whole note is rejected; at least one known key must have signed.
 */
import { NoteError } from '../errors/note-errors.ts';
import type { NoteSigner, NoteVerifier } from './ed25519-key.ts';

/** Largest note accepted (text and signatures), in bytes. */
export const MAX_NOTE_BYTES = 1024 * 1024;
/** Most signature lines accepted (the spec requires at least 16). */
export const MAX_NOTE_SIGNATURES = 100;

const DASH = '\u2014 ';
const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** One signature line. */
export interface NoteSignature {
  readonly name: string;
  readonly keyId: number;
  /** The signature bytes after the 4-byte key id. */
  readonly signature: Uint8Array;
}

/** A note whose signatures were checked. */
export interface OpenedNote {
  readonly text: string;
  /** Signatures that verified with a known key. */
  readonly verified: readonly NoteSignature[];
  /** Signatures from keys not given to `openNote` (ignored, as the spec requires). */
  readonly unknown: readonly NoteSignature[];
}

/** Checks a note text: valid, ends in a newline, no control characters but newline. */
export function assertNoteText(text: string): void {
  if (typeof text !== 'string' || !text.isWellFormed()) throw new NoteError('NOTE_MALFORMED', 'a note text must be well-formed Unicode');
  if (!text.endsWith('\n')) throw new NoteError('NOTE_MALFORMED', 'a note text must end with a newline');
  if (hasControlCharacter(text, true)) throw new NoteError('NOTE_MALFORMED', 'a note must not contain control characters other than newline');
}

/** True when `text` has a character below U+0020 (other than newline, when `allowNewline`). */
export function hasControlCharacter(text: string, allowNewline: boolean): boolean {
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x20 && !(allowNewline && code === 0x0a)) return true;
  }
  return false;
}

/** Signs `text` with each signer; returns the note as a string. */
export function signNote(text: string, signers: readonly NoteSigner[]): string {
  assertNoteText(text);
  if (signers.length === 0) throw new NoteError('NOTE_MALFORMED', 'a note needs at least one signer');
  const message = encoder.encode(text);
  const lines = signers.map((signer) => {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(signer.keyId);
    return `${DASH}${signer.name} ${Buffer.concat([id, signer.sign(message)]).toString('base64')}\n`;
  });
  return `${text}\n${lines.join('')}`;
}

/** Splits a note into text and signatures without verifying. Throws `NoteError` (NOTE_MALFORMED). */
export function parseNote(note: string | Uint8Array): { readonly text: string; readonly signatures: readonly NoteSignature[] } {
  let source: string;
  if (typeof note === 'string') source = note;
  else {
    if (note.length > MAX_NOTE_BYTES) throw new NoteError('NOTE_MALFORMED', `a note is at most ${MAX_NOTE_BYTES} bytes`);
    try {
      source = strictDecoder.decode(note);
    } catch {
      throw new NoteError('NOTE_MALFORMED', 'a note must be valid UTF-8');
    }
  }
  if (source.length > MAX_NOTE_BYTES) throw new NoteError('NOTE_MALFORMED', `a note is at most ${MAX_NOTE_BYTES} bytes`);
  if (!source.isWellFormed()) throw new NoteError('NOTE_MALFORMED', 'a note must be valid UTF-8');
  if (hasControlCharacter(source, true)) throw new NoteError('NOTE_MALFORMED', 'a note must not contain control characters other than newline');
  if (!source.endsWith('\n')) throw new NoteError('NOTE_MALFORMED', 'a note must end with a newline');
  const split = source.lastIndexOf('\n\n');
  if (split < 0) throw new NoteError('NOTE_MALFORMED', 'a note needs a blank line between its text and its signatures');
  const text = source.slice(0, split + 1);
  const lines = source.slice(split + 2, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) throw new NoteError('NOTE_MALFORMED', `a note carries at most ${MAX_NOTE_SIGNATURES} signatures`);
  const signatures = lines.map((line) => {
    if (!line.startsWith(DASH)) throw new NoteError('NOTE_MALFORMED', 'each signature line starts with an em dash and a space');
    const rest = line.slice(DASH.length);
    const space = rest.indexOf(' ');
    const name = rest.slice(0, space);
    const encoded = rest.slice(space + 1);
    if (space <= 0 || /\s|\+/u.test(name) || !/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) throw new NoteError('NOTE_MALFORMED', 'a signature line is "— <key name> <base64>"');
    const bytes = Buffer.from(encoded, 'base64');
    if (bytes.length < 5 || bytes.toString('base64') !== encoded) throw new NoteError('NOTE_MALFORMED', 'a signature is base64 of a 4-byte key id and the signature');
    return { name, keyId: bytes.readUInt32BE(0), signature: new Uint8Array(bytes.subarray(4)) };
  });
  return { text, signatures };
}

/**
 * Verifies `note` against `verifiers`. Throws `NoteError`: `NOTE_MALFORMED`, `NOTE_BAD_SIGNATURE`
 * (a known key's signature does not verify) or `NOTE_UNVERIFIED` (no known key signed).
 */
export function openNote(note: string | Uint8Array, verifiers: readonly NoteVerifier[]): OpenedNote {
  const { text, signatures } = parseNote(note);
  const message = encoder.encode(text);
  const verified: NoteSignature[] = [];
  const unknown: NoteSignature[] = [];
  for (const signature of signatures) {
    const verifier = verifiers.find((candidate) => candidate.name === signature.name && candidate.keyId === signature.keyId);
    if (!verifier) {
      unknown.push(signature);
      continue;
    }
    if (!verifier.verify(message, signature.signature)) {
      throw new NoteError('NOTE_BAD_SIGNATURE', `the signature of trusted key "${signature.name}" does not verify: the note was altered or forged`);
    }
    verified.push(signature);
  }
  if (verified.length === 0) {
    throw new NoteError('NOTE_UNVERIFIED', `no signature from a trusted key (${verifiers.map((verifier) => verifier.name).join(', ') || 'none given'}); signed by: ${signatures.map((signature) => signature.name).join(', ')}`);
  }
  return { text, verified, unknown };
}
