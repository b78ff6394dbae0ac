/**
 * Loading keys and certificates for the CLI — failing closed, with messages that say what to
 * do. Secret key files must be private to their owner (like ssh's private keys); their content
 * never appears in an error or a log.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { type Ed25519NoteKey, type NoteVerifier, OffchannelError, parseSignerKey, parseVerifierKey } from '@offchannel/core';

/** A key, certificate or option could not be loaded. Exit code 2. */
export class KeyLoadError extends OffchannelError {
  constructor(message: string) {
    super('KEY_LOAD', message);
  }
}

/** Loads a signing key file written by `offchannel keygen`. Refuses a missing, unreadable, shared or malformed file. */
export async function loadSigningKey(file: string): Promise<Ed25519NoteKey> {
  let info;
  try {
    info = await stat(file);
  } catch {
    throw new KeyLoadError(`signing key file ${file} cannot be read; create one with \`offchannel keygen --out ${file}\`. Nothing is signed without it.`);
  }
  if ((info.mode & 0o077) !== 0) throw new KeyLoadError(`signing key file ${file} is readable by group or others; run \`chmod 600 ${file}\`.`);
  try {
    return parseSignerKey(await readFile(file, 'utf8'));
  } catch (error) {
    throw new KeyLoadError(`signing key file ${file} is not a signing key (${(error as Error).message}).`);
  }
}

/**
 * Loads the capture policy's identifier key written by `offchannel keygen --identifier-key`: 32
 * bytes as 64 hex characters (so an examiner can pass it to `openssl … -macopt hexkey:`). Its id
 * is `sha256:` + the SHA-256 of the 32 bytes (`xxd -r -p <file> | sha256sum`). Refuses a
 * missing, shared or malformed file; never shows its content.
 */
export async function loadIdentifierKey(file: string): Promise<{ readonly bytes: Uint8Array; readonly id: string }> {
  let info;
  try {
    info = await stat(file);
  } catch {
    throw new KeyLoadError(`identifier key file ${file} cannot be read; create one with \`offchannel keygen --identifier-key --out ${file}\` and keep a copy with the firm's records: examiners need it to check exclusions.`);
  }
  if ((info.mode & 0o077) !== 0) throw new KeyLoadError(`identifier key file ${file} is readable by group or others; run \`chmod 600 ${file}\`.`);
  if (!info.isFile() || info.size > 1024) throw new KeyLoadError(`identifier key file ${file} is not an identifier key (64 hexadecimal characters).`);
  const text = (await readFile(file, 'utf8')).trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new KeyLoadError(`identifier key file ${file} is not an identifier key (64 hexadecimal characters, from \`offchannel keygen --identifier-key\`).`);
  const bytes = new Uint8Array(Buffer.from(text, 'hex'));
  return { bytes, id: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
}

const VERIFIER_KEY = /^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$/;

/** Verifier keys from `--key` values: each is a key text (`name+id+base64`) or a file of them, one per line. */
export async function loadVerifierKeys(values: readonly string[]): Promise<NoteVerifier[]> {
  const keys: NoteVerifier[] = [];
  for (const value of values) {
    const texts = VERIFIER_KEY.test(value.trim()) ? [value] : await readKeyFile(value);
    for (const text of texts) {
      try {
        keys.push(parseVerifierKey(text));
      } catch (error) {
        throw new KeyLoadError(`--key ${value}: ${(error as Error).message}`);
      }
    }
  }
  return keys;
}

async function readKeyFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new KeyLoadError(`--key ${file} is neither a verifier key (name+id+base64) nor a readable file`);
  }
  const lines = text.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
  if (lines.length === 0) throw new KeyLoadError(`--key ${file} holds no verifier key`);
  return lines;
}

/** PEM certificates (one or more per file). */
export async function loadCertificates(files: readonly string[]): Promise<X509Certificate[]> {
  const certificates: X509Certificate[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      throw new KeyLoadError(`certificate file ${file} cannot be read`);
    }
    const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) throw new KeyLoadError(`${file} holds no PEM certificate`);
    for (const block of blocks) certificates.push(new X509Certificate(block));
  }
  return certificates;
}
