/**
 * The secret state store: the one place connectors keep session secrets and cursors
 * (Baileys auth state, Signal identity and sessions, Telegram session, iMessage cursor).
 *
 * - Each value is one file, written atomically (temp file, fsync, rename, fsync directory),
 *   so a crash leaves either the old or the new value, never a torn one.
 * - Files are 0600 in 0700 directories owned by the current user.
 * - Values are sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the
 *   operator's 32-byte key; the file's own path is authenticated too, so a file copied
 *   under another name does not open. Without a key the store refuses to open unless the
 *   caller explicitly asks for an unencrypted store (then values carry a SHA-256 checksum).
 * - A marker file records the store's mode and a key check, so a wrong key is refused at
 *   open, before anything is read or written.
 * - Nothing here logs names' values or key material; errors name files, never contents.
 */
import { createCipheriv, createDecipheriv, createHash, createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { StateStoreError } from '../errors/state-errors.ts';
import { readSmallFile } from '../fs/read-small-file.ts';
import type { Logger } from '../logger/logger.ts';
import { noopLogger } from '../logger/logger.ts';
import { redactingLogger } from '../logger/redacting-logger.ts';
import { SqliteStateTable, type StateTable } from './state-table.ts';

/** What connectors see: a small key-value store of secret bytes, scoped per account. */
export interface StateStore {
  /** The value stored under `name`, or `undefined`. Throws `StateStoreError` if damaged. */
  get(name: string): Promise<Uint8Array | undefined>;
  /** Stores `value` atomically and durably. Later calls for one name apply in call order. */
  set(name: string, value: Uint8Array): Promise<void>;
  /** {@link StateStore.get} for JSON values. */
  getJson<T = unknown>(name: string): Promise<T | undefined>;
  /** {@link StateStore.set} for JSON values (serialized with `JSON.stringify`). */
  setJson(name: string, value: unknown): Promise<void>;
  /** Removes `name` (no error if absent). */
  delete(name: string): Promise<void>;
  /** Names stored directly in this scope, sorted. */
  list(): Promise<string[]>;
  /** A nested store whose names cannot collide with this one's (e.g. `whatsapp:alice`). */
  scope(name: string): StateStore;
  /**
   * Many small values under `name`, written in durable batches (one transaction and one fsync
   * per batch instead of per value): see state-table.ts. Separate from this scope's values.
   */
  table(name: string): StateTable;
}

export type StateStoreOptions = {
  /** Directory of the store; created 0700 if missing. */
  readonly dir: string;
  readonly logger?: Logger;
} & (
  | { /** 32-byte operator key (see `loadStateKey`). */ readonly key: Uint8Array; readonly unencrypted?: false }
  | { readonly key?: undefined; /** Must be `true` to open without encryption. */ readonly unencrypted: true }
  | { readonly key?: undefined; readonly unencrypted?: false }
);

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@+=:-]{0,199}$/;
const MAGIC = Buffer.from('OCST', 'latin1');
const FORMAT_VERSION = 1;
const ALG_NONE = 0;
const ALG_AES_256_GCM = 1;
const HEADER_BYTES = 6;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const MARKER = '.offchannel-state.json';
const KEY_CHECK = Buffer.from('offchannel state store key check v1', 'utf8');

interface Marker {
  readonly format: 'offchannel-state';
  readonly version: 1;
  readonly encryption: 'aes-256-gcm' | 'none';
  /** base64 of a sealed KEY_CHECK (encrypted stores only). */
  readonly keyCheck?: string;
}

/**
 * Opens (creating if needed) the state store in `options.dir`.
 * Throws `StateStoreError` (`STATE_KEY_MISSING`, `STATE_KEY_INVALID`, `STATE_KEY_WRONG`,
 * `STATE_MODE_MISMATCH`) instead of opening a store it cannot use safely.
 */
export async function openStateStore(options: StateStoreOptions): Promise<StateStore> {
  const logger = redactingLogger(options.logger ?? noopLogger).child({ component: 'state' });
  let key: Buffer | undefined;
  if (options.key !== undefined) {
    if (!(options.key instanceof Uint8Array) || options.key.length !== 32) {
      throw new StateStoreError('STATE_KEY_INVALID', 'the state key must be exactly 32 bytes. Generate one with `offchannel keygen --state`.');
    }
    key = Buffer.from(hkdfSync('sha256', options.key, 'offchannel-state', 'aes-256-gcm v1', 32));
  } else if (options.unencrypted !== true) {
    throw new StateStoreError(
      'STATE_KEY_MISSING',
      'no state key given. Set OFFCHANNEL_STATE_KEY (32 bytes, base64) or a key file; to keep session secrets unencrypted anyway, say so explicitly (unencrypted: true / --state-unencrypted).',
    );
  }
  const dir = path.resolve(options.dir);
  await secureDirectory(dir);
  const sealer = new Sealer(key);
  await checkMarker(dir, sealer);
  await removeTemporaryFiles(dir);
  logger.debug({ encrypted: key !== undefined }, 'state store opened');
  return new DirectoryStore(dir, '', sealer, logger, { chains: new Map(), tables: new Map() });
}

/** Encrypts/decrypts one file's content, binding it to the file's relative path. */
class Sealer {
  /** A KeyObject, made once: passing raw key bytes makes every cipher import the key again. */
  private readonly key: KeyObject | undefined;

  constructor(key: Buffer | undefined) {
    this.key = key === undefined ? undefined : createSecretKey(key);
  }

  get encrypted(): boolean {
    return this.key !== undefined;
  }

  /** Random nonces drawn 256 at a time (one getrandom call, not one per value); each used once. */
  private nonces = Buffer.alloc(0);
  private nonceOffset = 0;

  private nonce(): Buffer {
    if (this.nonceOffset + NONCE_BYTES > this.nonces.length) {
      this.nonces = randomBytes(NONCE_BYTES * 256);
      this.nonceOffset = 0;
    }
    const nonce = this.nonces.subarray(this.nonceOffset, this.nonceOffset + NONCE_BYTES);
    this.nonceOffset += NONCE_BYTES;
    return nonce;
  }

  seal(relative: string, value: Uint8Array): Buffer {
    const header = Buffer.from([...MAGIC, FORMAT_VERSION, this.key ? ALG_AES_256_GCM : ALG_NONE]);
    const aad = Buffer.concat([header, Buffer.from(relative, 'utf8')]);
    if (!this.key) return Buffer.concat([header, createHash('sha256').update(aad).update(value).digest(), value]);
    const nonce = this.nonce();
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(value), cipher.final()]);
    return Buffer.concat([header, nonce, body, cipher.getAuthTag()]);
  }

  open(relative: string, file: Buffer): Buffer {
    const damaged = (why: string): StateStoreError =>
      new StateStoreError('STATE_CORRUPT', `state file "${relative}" ${why}; restore it from backup or delete it to start that session again.`);
    if (file.length < HEADER_BYTES || !file.subarray(0, 4).equals(MAGIC)) throw damaged('is not an offchannel state file');
    if (file[4] !== FORMAT_VERSION) throw damaged('has an unknown format version');
    const algorithm = file[5];
    if ((algorithm === ALG_AES_256_GCM) !== this.encrypted) {
      throw new StateStoreError('STATE_MODE_MISMATCH', `state file "${relative}" is ${algorithm === ALG_AES_256_GCM ? 'encrypted' : 'unencrypted'} but the store is not.`);
    }
    const header = file.subarray(0, HEADER_BYTES);
    const aad = Buffer.concat([header, Buffer.from(relative, 'utf8')]);
    if (!this.key) {
      if (file.length < HEADER_BYTES + 32) throw damaged('is truncated');
      const value = file.subarray(HEADER_BYTES + 32);
      const digest = createHash('sha256').update(aad).update(value).digest();
      if (!digest.equals(file.subarray(HEADER_BYTES, HEADER_BYTES + 32))) throw damaged('fails its checksum');
      return Buffer.from(value);
    }
    if (file.length < HEADER_BYTES + NONCE_BYTES + TAG_BYTES) throw damaged('is truncated');
    const nonce = file.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES);
    const tag = file.subarray(file.length - TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', this.key, nonce);
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(file.subarray(HEADER_BYTES + NONCE_BYTES, file.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw damaged('does not authenticate (damaged, renamed, or written with another key)');
    }
  }
}

class DirectoryStore implements StateStore {
  private readonly dir: string;
  private readonly prefix: string;
  private readonly sealer: Sealer;
  private readonly logger: Logger;
  /** Per-file write chains, shared by all scopes, so writes to one name apply in call order. */
  private readonly chains: Map<string, Promise<void>>;
  /** Open tables, shared by all scopes, so one file has one connection and one write order. */
  private readonly tables: Map<string, StateTable>;
  private ready: Promise<void> | undefined;

  constructor(dir: string, prefix: string, sealer: Sealer, logger: Logger, shared: { chains: Map<string, Promise<void>>; tables: Map<string, StateTable> }) {
    this.dir = dir;
    this.prefix = prefix;
    this.sealer = sealer;
    this.logger = logger;
    this.chains = shared.chains;
    this.tables = shared.tables;
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    const relative = this.relative(name);
    await this.chains.get(relative);
    let file: Buffer;
    try {
      // Only a regular file the store wrote: a FIFO, link or device in its place is refused, never waited on or followed.
      file = await readSmallFile(path.join(this.dir, relative), {
        maxBytes: MAX_STATE_FILE_BYTES,
        refuse: (problem) => new StateStoreError('STATE_CORRUPT', `state file ${relative} ${problem}; the store writes only regular files: move it aside and restore it from backup (or re-link the account).`),
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const value = this.sealer.open(relative, file);
    return new Uint8Array(value.buffer, value.byteOffset, value.length);
  }

  set(name: string, value: Uint8Array): Promise<void> {
    let relative: string;
    try {
      relative = this.relative(name);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    if (!(value instanceof Uint8Array)) return Promise.reject(new StateStoreError('STATE_INVALID_NAME', `value for "${relative}" must be a Uint8Array`));
    // Copy now: the write may run after earlier ones, and the caller may reuse its buffer.
    const bytes = Uint8Array.from(value);
    return this.chain(relative, async () => {
      await this.ensureDirectory();
      const target = path.join(this.dir, relative);
      const temporary = path.join(path.dirname(target), `.tmp-${randomBytes(8).toString('hex')}`);
      const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        await handle.writeFile(this.sealer.seal(relative, bytes));
        await handle.sync();
      } finally {
        await handle.close();
      }
      try {
        await rename(temporary, target);
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      }
      await syncDirectory(path.dirname(target));
      this.logger.debug({ state: relative }, 'state written');
    });
  }

  async getJson<T>(name: string): Promise<T | undefined> {
    const bytes = await this.get(name);
    if (bytes === undefined) return undefined;
    try {
      return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
    } catch {
      throw new StateStoreError('STATE_CORRUPT', `state "${this.relative(name)}" is not JSON`);
    }
  }

  setJson(name: string, value: unknown): Promise<void> {
    return this.set(name, Buffer.from(JSON.stringify(value), 'utf8'));
  }

  delete(name: string): Promise<void> {
    let relative: string;
    try {
      relative = this.relative(name);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return this.chain(relative, async () => {
      try {
        await unlink(path.join(this.dir, relative));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        return;
      }
      await syncDirectory(path.dirname(path.join(this.dir, relative)));
    });
  }

  async list(): Promise<string[]> {
    let entries;
    try {
      entries = await readdir(path.join(this.dir, this.prefix), { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return entries.filter((entry) => entry.isFile() && NAME.test(entry.name)).map((entry) => entry.name).sort();
  }

  scope(name: string): StateStore {
    checkName(name, 'scope');
    // Scope directories are named "~<scope>": "~" is never part of a value name, so a value and a
    // scope of the same name cannot collide.
    return new DirectoryStore(this.dir, path.join(this.prefix, `~${name}`), this.sealer, this.logger, { chains: this.chains, tables: this.tables });
  }

  table(name: string): StateTable {
    checkName(name, 'table');
    // ".table-…" files: never listed as values, never a scope ("~…"), never a temp file (".tmp-…").
    const relative = path.join(this.prefix, `.table-${name}.sqlite`);
    let table = this.tables.get(relative);
    if (!table) {
      const sealer = this.sealer;
      table = new SqliteStateTable({
        file: path.join(this.dir, relative),
        relative,
        seal: (where, value) => sealer.seal(where, value),
        open: (where, sealed) => sealer.open(where, sealed),
        ready: () => this.ensureDirectory(),
      });
      this.tables.set(relative, table);
    }
    return table;
  }

  private relative(name: string): string {
    checkName(name, 'name');
    return path.join(this.prefix, name);
  }

  private chain(relative: string, task: () => Promise<void>): Promise<void> {
    const previous = this.chains.get(relative) ?? Promise.resolve();
    const next = previous.then(task, task);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.chains.set(relative, settled);
    void settled.then(() => {
      if (this.chains.get(relative) === settled) this.chains.delete(relative);
    });
    return next;
  }

  private ensureDirectory(): Promise<void> {
    this.ready ??= (async () => {
      let current = this.dir;
      for (const part of this.prefix.split(path.sep).filter(Boolean)) {
        current = path.join(current, part);
        await secureDirectory(current);
        await removeTemporaryFiles(current);
      }
    })().catch((error: unknown) => {
      this.ready = undefined; // try again on the next write
      throw error;
    });
    return this.ready;
  }
}

function checkName(name: string, what: string): void {
  if (typeof name !== 'string' || !NAME.test(name) || name.includes('..')) {
    throw new StateStoreError('STATE_INVALID_NAME', `invalid state ${what}: use [A-Za-z0-9][A-Za-z0-9._@+=:-]{0,199} without ".."`);
  }
}

async function secureDirectory(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await stat(dir);
  if (!info.isDirectory()) throw new StateStoreError('STATE_CORRUPT', `state path ${dir} is not a directory`);
  if (typeof process.getuid === 'function' && info.uid !== process.getuid()) {
    throw new StateStoreError('STATE_INSECURE', `state directory ${dir} belongs to another user; use a directory you own.`);
  }
  if ((info.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
}

/** Largest marker read: a few fields. */
const MAX_MARKER_BYTES = 64 * 1024;
/** Largest state file read: far above any session, cursor or key a connector keeps. */
const MAX_STATE_FILE_BYTES = 1024 * 1024 * 1024;

async function checkMarker(dir: string, sealer: Sealer): Promise<void> {
  const file = path.join(dir, MARKER);
  let marker: Marker | undefined;
  try {
    const refuse = (problem: string): StateStoreError => new StateStoreError('STATE_CORRUPT', `${MARKER} in ${dir} ${problem}; restore it from backup.`);
    marker = JSON.parse((await readSmallFile(file, { maxBytes: MAX_MARKER_BYTES, refuse })).toString('utf8')) as Marker;
  } catch (error) {
    if (error instanceof StateStoreError) throw error;
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new StateStoreError('STATE_CORRUPT', `${MARKER} in ${dir} is unreadable; restore it from backup.`);
    }
  }
  if (marker === undefined) {
    const entries = (await readdir(dir)).filter((entry) => !entry.startsWith('.'));
    if (entries.length > 0) {
      throw new StateStoreError('STATE_CORRUPT', `${dir} holds files but no ${MARKER}; it is not a state store (or its marker was lost). Use an empty directory.`);
    }
    const created: Marker = {
      format: 'offchannel-state',
      version: 1,
      encryption: sealer.encrypted ? 'aes-256-gcm' : 'none',
      ...(sealer.encrypted ? { keyCheck: sealer.seal(MARKER, KEY_CHECK).toString('base64') } : {}),
    };
    await writeAtomically(file, Buffer.from(`${JSON.stringify(created)}\n`, 'utf8'));
    return;
  }
  if (marker.format !== 'offchannel-state' || marker.version !== 1) {
    throw new StateStoreError('STATE_CORRUPT', `${MARKER} in ${dir} has an unknown format; this version cannot open it.`);
  }
  if ((marker.encryption === 'aes-256-gcm') !== sealer.encrypted) {
    throw new StateStoreError(
      'STATE_MODE_MISMATCH',
      marker.encryption === 'aes-256-gcm'
        ? `the state store in ${dir} is encrypted; provide its key (OFFCHANNEL_STATE_KEY).`
        : `the state store in ${dir} was created unencrypted; open it unencrypted or start a new store.`,
    );
  }
  if (sealer.encrypted) {
    let check: Buffer;
    try {
      check = sealer.open(MARKER, Buffer.from(marker.keyCheck ?? '', 'base64'));
    } catch {
      throw new StateStoreError('STATE_KEY_WRONG', `the state key does not open the store in ${dir}; it was created with a different key.`);
    }
    if (!check.equals(KEY_CHECK)) throw new StateStoreError('STATE_KEY_WRONG', `the state key does not open the store in ${dir}.`);
  }
}

async function writeAtomically(target: string, bytes: Uint8Array): Promise<void> {
  const temporary = path.join(path.dirname(target), `.tmp-${randomBytes(8).toString('hex')}`);
  const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, target);
  await syncDirectory(path.dirname(target));
}

/** Temp files older than this are leftovers of a crashed write (never a write in progress). */
const STALE_TEMPORARY_MS = 60_000;

async function removeTemporaryFiles(dir: string): Promise<void> {
  const now = Date.now();
  for (const entry of await readdir(dir)) {
    if (!entry.startsWith('.tmp-')) continue;
    const file = path.join(dir, entry);
    const info = await stat(file).catch(() => undefined);
    if (info && now - info.mtimeMs > STALE_TEMPORARY_MS) await rm(file, { force: true });
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
