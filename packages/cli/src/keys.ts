/**
 * Loading keys and certificates for the CLI — failing closed, with messages that say what to
 * do. Secret key files must be private to their owner (like ssh's private keys); their content
 * never appears in an error or a log.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import {
  type CosignatureVerifier,
  type Cosigner,
  type Ed25519NoteKey,
  type NoteVerifier,
  OffchannelError,
  parseCosignatureVerifierKey,
  parseCosignerKey,
  parseSignerKey,
  parseVerifierKey,
  readSmallFile,
} from '@offchannel/core';

/** A key, certificate or option could not be loaded. Exit code 2. */
export class KeyLoadError extends OffchannelError {
  constructor(message: string) {
    super('KEY_LOAD', message);
  }
}

/**
 * What kind of key material `value` holds, if it holds any: for a value given where a file
 * name or a verifier key belongs, so that a message can say what it was without printing it.
 * `undefined` for anything else (a path, a name).
 */
export function describeKeyMaterial(value: string): string | undefined {
  if (/PRIVATE\+KEY\+/i.test(value)) return 'a signing (private) key';
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(value)) return 'a PEM private key';
  if (/-----BEGIN [A-Z0-9 ]*PUBLIC KEY-----/.test(value)) return 'a PEM public key';
  if (VERIFIER_KEY.test(value.trim())) return 'a verifier key';
  if (/^[A-Za-z0-9+/_-]{40,}={0,2}$/.test(value.trim()) && !existsSync(value)) return 'key material (a long base64 or hex string)';
  if (/[\r\n]/.test(value)) return 'text of several lines';
  return undefined;
}

/**
 * Refuses key material given where a file belongs (`--signing-key PRIVATE+KEY+…`, a config's
 * `keyFile`), naming only its kind — the value is never printed, and a private key pasted on a
 * command line should be treated as exposed.
 */
export function assertKeyFileName(option: string, value: string): void {
  const kind = describeKeyMaterial(value);
  if (kind === undefined) return;
  const exposed = /private|key material/.test(kind) ? ' If it is a secret key, consider it exposed (shell history, process list) and replace it.' : '';
  throw new KeyLoadError(`${option} takes the name of a key file, but was given ${kind} (not printed). Put the key in a file readable only by you (chmod 600) and give that file's name.${exposed}`);
}

/** Loads a signing key file written by `offchannel keygen`. Refuses a missing, unreadable, shared or malformed file. */
export async function loadSigningKey(file: string): Promise<Ed25519NoteKey> {
  assertKeyFileName('the signing key file', file);
  let info;
  try {
    info = await stat(file);
  } catch {
    throw new KeyLoadError(`signing key file ${file} cannot be read; create one with \`offchannel keygen --out ${file}\`. Nothing is signed without it.`);
  }
  if ((info.mode & 0o077) !== 0) throw new KeyLoadError(`signing key file ${file} is readable by group or others; run \`chmod 600 ${file}\`.`);
  const text = await readKeyText(file, 'signing key file', 'offchannel keygen');
  try {
    return parseSignerKey(text);
  } catch (error) {
    throw new KeyLoadError(`signing key file ${file} is not a signing key (${(error as Error).message}).`);
  }
}

/** Loads a witness key file written by `offchannel keygen --witness`. Refuses a missing, shared or malformed file. */
export async function loadWitnessKey(file: string): Promise<Cosigner> {
  assertKeyFileName('the witness key file', file);
  let info;
  try {
    info = await stat(file);
  } catch {
    throw new KeyLoadError(`witness key file ${file} cannot be read; create one with \`offchannel keygen --witness --out ${file}\`.`);
  }
  if ((info.mode & 0o077) !== 0) throw new KeyLoadError(`witness key file ${file} is readable by group or others; run \`chmod 600 ${file}\`.`);
  if (!info.isFile() || info.size > 4096) throw new KeyLoadError(`witness key file ${file} is not a witness key.`);
  const text = await readKeyText(file, 'witness key file', 'offchannel keygen --witness');
  try {
    return parseCosignerKey(text);
  } catch (error) {
    throw new KeyLoadError(`witness key file ${file} is not a witness key (${(error as Error).message}).`);
  }
}

/** Witness verifier keys (type 0x04) from `--witness` values: key texts or files of them, one per line. */
export async function loadWitnessVerifierKeys(values: readonly string[], option = '--witness'): Promise<CosignatureVerifier[]> {
  const keys: CosignatureVerifier[] = [];
  for (const value of values) {
    const inline = VERIFIER_KEY.test(value.trim());
    const texts = inline ? [value.trim()] : await readKeyFile(value, option);
    for (const [line, text] of texts.entries()) {
      const where = inline ? `${option}, a witness verifier key,` : `${option} ${value} (line ${line + 1})`;
      if (describeKeyMaterial(text) !== 'a verifier key') throw new KeyLoadError(`${where} holds ${describeKeyMaterial(text) ?? 'text that is not a key'} (not printed), not a witness verifier key (the last line \`offchannel keygen --witness\` prints)`);
      try {
        keys.push(parseCosignatureVerifierKey(text));
      } catch (error) {
        throw new KeyLoadError(`${where}: ${(error as Error).message}`);
      }
    }
  }
  return keys;
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
  const text = (await readKeyText(file, 'identifier key file', 'offchannel keygen --identifier-key')).trim();
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new KeyLoadError(`identifier key file ${file} is not an identifier key (64 hexadecimal characters, from \`offchannel keygen --identifier-key\`).`);
  const bytes = new Uint8Array(Buffer.from(text, 'hex'));
  return { bytes, id: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
}

/** Largest key file read: a key is one line. */
const MAX_KEY_FILE_BYTES = 4096;

/**
 * The text of a private key file: only a small regular file is read. A FIFO in its place is
 * refused, never waited on (the stat before it says nothing: the file can be swapped); a link is
 * followed (mounted secrets are links) and what it points at is checked the same way.
 */
async function readKeyText(file: string, what: string, writer: string): Promise<string> {
  const refuse = (problem: string): KeyLoadError => new KeyLoadError(`${what} ${file} ${problem}; it must be a regular file of at most ${MAX_KEY_FILE_BYTES} bytes, as \`${writer}\` writes it.`);
  try {
    return (await readSmallFile(file, { maxBytes: MAX_KEY_FILE_BYTES, followLinks: true, refuse })).toString('utf8');
  } catch (error) {
    if (error instanceof KeyLoadError) throw error;
    throw new KeyLoadError(`${what} ${file} cannot be read (${(error as { code?: string }).code ?? 'error'}); check the path and its permissions.`);
  }
}

const VERIFIER_KEY = /^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$/;

/** Verifier keys from `--key` values: each is a key text (`name+id+base64`) or a file of them, one per line. */
export async function loadVerifierKeys(values: readonly string[]): Promise<NoteVerifier[]> {
  const keys: NoteVerifier[] = [];
  for (const [index, value] of values.entries()) {
    const given = values.length > 1 ? `--key (the ${ordinal(index + 1)})` : '--key';
    const inline = VERIFIER_KEY.test(value.trim());
    const texts = inline ? [value.trim()] : await readKeyFile(value, given);
    for (const [line, text] of texts.entries()) {
      const where = inline ? `${given}, a verifier key,` : `--key ${value} (line ${line + 1} of its keys)`;
      if (describeKeyMaterial(text) !== 'a verifier key') throw new KeyLoadError(`${where} holds ${describeKeyMaterial(text) ?? 'text that is not a key'} (not printed), not a verifier key (name+id+base64, the .pub file offchannel keygen writes)`);
      try {
        keys.push(parseVerifierKey(text));
      } catch (error) {
        throw new KeyLoadError(`${where}: ${(error as Error).message}`);
      }
    }
  }
  return keys;
}

/** The key lines of a `--key` file. A value that is no readable file is never printed if it looks like a key. */
async function readKeyFile(file: string, given: string): Promise<string[]> {
  const kind = describeKeyMaterial(file);
  if (kind !== undefined) {
    const secret = /private|key material/.test(kind) ? ' Keep a private key secret: if it was typed on a command line, consider it exposed (shell history, process list) and replace it.' : '';
    throw new KeyLoadError(`${given} was given ${kind} (not printed), but it needs a verifier key (name+id+base64) or a file of them — the .pub file offchannel keygen writes.${secret}`);
  }
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

function ordinal(n: number): string {
  return `${n}${n % 10 === 1 && n % 100 !== 11 ? 'st' : n % 10 === 2 && n % 100 !== 12 ? 'nd' : n % 10 === 3 && n % 100 !== 13 ? 'rd' : 'th'}`;
}

/** PEM certificates (one or more per file). */
export async function loadCertificates(files: readonly string[]): Promise<X509Certificate[]> {
  const certificates: X509Certificate[] = [];
  for (const file of files) {
    assertKeyFileName('a certificate option', file);
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
