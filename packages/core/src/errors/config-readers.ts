import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from './config-error.ts';

/**
 * Readers for a connector's plain-JSON settings (`parse<Channel>ConnectorConfig`): each names
 * the offending key in its `ConfigError` and never echoes the value, which may be a secret.
 */

/**
 * `value` as an object whose keys are all in `allowed`. `setting` names what a key should have
 * been, for the message: `connectors[0].phone is not a WhatsApp connector setting (allowed: …).`
 */
export function configObject(value: unknown, key: string, allowed: readonly string[], setting: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(key, 'must be an object.');
  for (const name of Object.keys(value)) {
    if (!allowed.includes(name)) throw new ConfigError(`${key}.${name}`, `is not ${setting} (allowed: ${allowed.join(', ')}).`);
  }
  return value as Record<string, unknown>;
}

/** `{ [name]: n }` when `fields[name]` is an integer from `min` to `max`, `{}` when absent: spread it into the options. */
export function optionalConfigInteger<N extends string>(fields: Record<string, unknown>, name: N, key: string, min: number, max: number): { [P in N]?: number } {
  const value = fields[name];
  if (value === undefined) return {};
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new ConfigError(key, `must be an integer from ${min} to ${max}.`);
  return { [name]: value } as { [P in N]?: number };
}

/** Where a connector entry's relative paths and environment variables are looked up. */
export interface ConfigSecretContext {
  /** Relative `<name>File` paths are relative to this (the config file's directory); default: the working directory. */
  readonly baseDir?: string;
  /** Where `<name>Env` is looked up; default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** What a secret must look like: `test` decides, `expected` says what it should be, for the message. */
export interface ConfigSecretShape {
  readonly test: (value: string) => boolean;
  readonly expected: string;
}

/** Largest secret file read: a secret is a line, not a document. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/**
 * The secret `name` of a JSON config entry, read from `<name>File` (a file only its owner may
 * read: mode 0600 or 0400, as ssh demands of private keys) or `<name>Env` (an environment
 * variable). A literal `<name>` is refused: config files get copied, shared and committed.
 * Returns `undefined` when neither is set. Whitespace around the secret is dropped. Every
 * error names the key and says what to do; none echoes a value, path or variable.
 */
export function configSecret(fields: Record<string, unknown>, name: string, key: string, context: ConfigSecretContext = {}, shape?: ConfigSecretShape): string | undefined {
  const fileKey = `${name}File`;
  const envKey = `${name}Env`;
  if (fields[name] !== undefined) {
    throw new ConfigError(`${key}.${name}`, `is a secret and is not accepted in a config file (config files get copied, shared and committed). Put it in a file only the capture user can read (chmod 600) and set "${fileKey}": "<path>", or set "${envKey}": "<VARIABLE>" to read it from the environment.`);
  }
  const file = fields[fileKey];
  const variable = fields[envKey];
  if (file !== undefined && variable !== undefined) throw new ConfigError(`${key}.${envKey}`, `cannot be set together with ${fileKey}; choose one.`);
  let value: string;
  let from: string;
  if (file !== undefined) {
    from = `${key}.${fileKey}`;
    if (typeof file !== 'string' || file.length === 0 || file.length > 4096) throw new ConfigError(from, 'must be the path of a file holding the secret.');
    value = readSecretFile(path.resolve(context.baseDir ?? process.cwd(), file), from);
  } else if (variable !== undefined) {
    from = `${key}.${envKey}`;
    if (typeof variable !== 'string' || !ENV_NAME.test(variable)) throw new ConfigError(from, 'must be the name of an environment variable (letters, digits and _).');
    const text = (context.env ?? process.env)[variable];
    if (text === undefined || text.trim() === '') throw new ConfigError(from, 'names an environment variable that is not set or is empty; set it in the environment of the capture process.');
    value = text.trim();
  } else {
    return undefined;
  }
  if (shape && !shape.test(value)) throw new ConfigError(from, `does not hold ${shape.expected}.`);
  return value;
}

/** Reads a secret file, refusing anything but a small regular file private to its owner. */
function readSecretFile(file: string, key: string): string {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not hang the start; it is refused below as not a regular file.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (error) {
    throw new ConfigError(key, `names a file that cannot be read (${(error as { code?: string }).code ?? 'error'}); check the path (relative paths are relative to the config file).`);
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw new ConfigError(key, 'must name a regular file holding the secret.');
    if ((info.mode & 0o077) !== 0) throw new ConfigError(key, 'names a file that group or others can access; run chmod 600 on it (it holds a secret).');
    if (info.size > MAX_SECRET_FILE_BYTES) throw new ConfigError(key, `names a file over ${MAX_SECRET_FILE_BYTES} bytes; it should hold only the secret.`);
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    const size = readSync(fd, buffer, 0, buffer.length, 0);
    const text = buffer.subarray(0, size).toString('utf8').trim();
    buffer.fill(0);
    if (text === '') throw new ConfigError(key, 'names an empty file; write the secret into it.');
    return text;
  } finally {
    closeSync(fd);
  }
}
