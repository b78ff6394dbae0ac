import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { StateStoreError } from '../errors/state-errors.ts';
import { readSmallFile } from '../fs/read-small-file.ts';

/**
 * Parses a 32-byte state key written as base64 (44 chars, or 43 without padding) or hex
 * (64 chars). Throws `StateStoreError` `STATE_KEY_INVALID`; the message never echoes the input.
 */
export function parseStateKey(text: string): Uint8Array {
  const trimmed = text.trim();
  let bytes: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) bytes = Buffer.from(trimmed, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed)) bytes = Buffer.from(trimmed, 'base64');
  if (bytes?.length !== 32) {
    throw new StateStoreError('STATE_KEY_INVALID', 'the state key must be 32 bytes written as base64 or hex. Generate one with `offchannel keygen --state`.');
  }
  return bytes;
}

/** Largest state key file read: the key is one line of base64 or hex. */
const MAX_STATE_KEY_FILE_BYTES = 4096;

/**
 * Loads the operator's state key from a file (preferred) or an environment variable.
 * A key file readable by group or others is refused, as ssh refuses such private keys.
 * Returns `undefined` when neither is set.
 */
export async function loadStateKey(source: { readonly file?: string; readonly env?: string | undefined }): Promise<Uint8Array | undefined> {
  if (source.file !== undefined) {
    let info;
    try {
      info = await stat(source.file);
    } catch {
      throw new StateStoreError('STATE_KEY_MISSING', `state key file ${source.file} cannot be read; check the path.`);
    }
    if ((info.mode & 0o077) !== 0) {
      throw new StateStoreError('STATE_KEY_INVALID', `state key file ${source.file} is readable by group or others; run chmod 600 on it.`);
    }
    // A FIFO in its place is refused, not waited on; a link is followed (mounted secrets are links).
    const refuse = (problem: string): StateStoreError =>
      new StateStoreError('STATE_KEY_INVALID', `state key file ${source.file} ${problem}; it must be a regular file holding only the key (offchannel state-key writes one).`);
    return parseStateKey((await readSmallFile(source.file, { maxBytes: MAX_STATE_KEY_FILE_BYTES, followLinks: true, refuse })).toString('utf8'));
  }
  if (source.env !== undefined && source.env !== '') return parseStateKey(source.env);
  return undefined;
}

/** A new random 32-byte state key as base64. */
export function generateStateKey(): string {
  return randomBytes(32).toString('base64');
}
