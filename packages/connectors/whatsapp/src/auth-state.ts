/**
 * Baileys' authentication state (device credentials and Signal keys) kept in core's secret
 * state store: encrypted at rest (AES-256-GCM), files 0600, every value written atomically,
 * never logged. Replaces Baileys' "example only" multi-file store.
 *
 * Layout inside the connector's state scope:
 *   `creds`                      AuthenticationCreds, JSON with Baileys' BufferJSON encoding
 *   state table `keys`           one row per Signal key: `<type>:<sha256(id)>` (ids name
 *                                contacts: never in clear at rest); an empty value is a
 *                                deletion (it hides a key an earlier version kept as a file)
 *   `~keys/~<type>/<id-name>`    Signal keys as earlier versions wrote them (one file each),
 *                                still read when the table has no row for the key
 *   `keys-journal`               an earlier version's interrupted multi-key write (see below)
 *
 * Atomicity across keys: Baileys commits a transaction as ONE `keys.set(data)` call (a session
 * update plus the pre-key it consumed, for example). Losing half of it corrupts the Signal
 * ratchet ("Bad MAC"). `set` writes the whole change set as one table transaction, durable (one
 * fsync) when it resolves: after a crash all of it is there or none of it. Earlier versions
 * wrote a journal, then the files; a journal they left is applied to the files at open.
 */
import { createHash } from 'node:crypto';
import type { StateStore, StateTable } from '@offchannel/core';
import { BufferJSON, initAuthCreds, proto, type AuthenticationCreds, type AuthenticationState, type SignalDataSet, type SignalDataTypeMap, type SignalKeyStore } from '@whiskeysockets/baileys';

const CREDS = 'creds';
const JOURNAL = 'keys-journal';
const KEYS_TABLE = 'keys';
/** A row with this (empty) value: the key was deleted. */
const DELETED = new Uint8Array(0);
const TYPE_NAME = /^[a-z][a-z0-9-]{0,63}$/;

/** The auth state plus the function that persists credential updates (`creds.update`). */
export interface StoredAuthState {
  readonly state: AuthenticationState;
  /** Writes the current credentials atomically. Call on every `creds.update`. */
  saveCreds(): Promise<void>;
  /** True when credentials were loaded (the device was linked before). */
  readonly existing: boolean;
  /** Waits for key writes in progress, then closes the keys table's file (reopened on next use). */
  close(): Promise<void>;
}

/** Opens (or initializes) the auth state kept in `store`. Replays an interrupted key write first. */
export async function openAuthState(store: StateStore): Promise<StoredAuthState> {
  const keysScope = store.scope('keys');
  const table = store.table(KEYS_TABLE);
  await replayJournal(store, keysScope);
  const saved = await readJson<AuthenticationCreds>(store, CREDS);
  const creds = saved ?? initAuthCreds();
  let chain: Promise<void> = Promise.resolve();

  const keys: SignalKeyStore = {
    async get(type, ids) {
      await chain; // reads see every write issued before them
      const scope = typeScope(keysScope, type);
      const out: { [id: string]: SignalDataTypeMap[typeof type] } = {};
      await Promise.all(
        ids.map(async (id) => {
          const row = await table.get(rowName(type, id));
          if (row !== undefined && row.length === 0) return; // deleted
          let value = row === undefined ? await readJson<SignalDataTypeMap[typeof type]>(scope, idName(id)) : (parseJson(row) as SignalDataTypeMap[typeof type]);
          if (value === undefined || value === null) return;
          if (type === 'app-state-sync-key') value = proto.Message.AppStateSyncKeyData.fromObject(value as Record<string, unknown>) as unknown as SignalDataTypeMap[typeof type];
          out[id] = value;
        }),
      );
      return out;
    },
    set(data) {
      const write = chain.then(() => commit(table, data));
      chain = write.catch(() => undefined);
      return write;
    },
  };

  return {
    state: { creds, keys },
    existing: saved !== undefined,
    saveCreds: () => store.set(CREDS, encode(creds)),
    close: async () => {
      await chain;
      await table.close();
    },
  };
}

/** True when the store holds linked-device credentials. */
export async function hasAuthState(store: StateStore): Promise<boolean> {
  return (await store.get(CREDS)) !== undefined;
}

/** Removes the credentials and every key (after a logout: the device must be linked again). */
export async function clearAuthState(store: StateStore): Promise<void> {
  await store.delete(JOURNAL);
  await store.table(KEYS_TABLE).clear();
  const keysScope = store.scope('keys');
  for (const type of KEY_TYPES) {
    const scope = keysScope.scope(type);
    for (const name of await scope.list()) await scope.delete(name);
  }
  await store.delete(CREDS);
}

const KEY_TYPES = [
  'pre-key',
  'session',
  'sender-key',
  'sender-key-memory',
  'app-state-sync-key',
  'app-state-sync-version',
  'lid-mapping',
  'device-list',
  'tctoken',
  'identity-key',
] as const;

async function commit(table: StateTable, data: SignalDataSet): Promise<void> {
  const entries = flatten(data);
  if (entries.length === 0) return;
  for (const { type } of entries) if (!TYPE_NAME.test(type)) throw new TypeError('invalid Signal key type');
  await table.write(entries.map(({ type, id, value }) => [rowName(type, id), value === null || value === undefined ? DELETED : encode(value)] as const));
}

async function replayJournal(store: StateStore, keysScope: StateStore): Promise<void> {
  const pending = await readJson<SignalDataSet>(store, JOURNAL);
  if (pending === undefined) return;
  await apply(keysScope, flatten(pending));
  await store.delete(JOURNAL);
}

function flatten(data: SignalDataSet): { type: string; id: string; value: unknown }[] {
  const entries: { type: string; id: string; value: unknown }[] = [];
  for (const [type, values] of Object.entries(data)) {
    if (!values) continue;
    for (const [id, value] of Object.entries(values)) entries.push({ type, id, value });
  }
  return entries;
}

async function apply(keysScope: StateStore, entries: readonly { type: string; id: string; value: unknown }[]): Promise<void> {
  await Promise.all(
    entries.map(({ type, id, value }) => {
      const scope = typeScope(keysScope, type);
      return value === null || value === undefined ? scope.delete(idName(id)) : scope.set(idName(id), encode(value));
    }),
  );
}

function typeScope(keysScope: StateStore, type: string): StateStore {
  if (!TYPE_NAME.test(type)) throw new TypeError('invalid Signal key type');
  return keysScope.scope(type);
}

/** The table row of a key: `<type>:<sha256(id)>` (at most 129 characters). */
function rowName(type: string, id: string): string {
  return `${type}:${createHash('sha256').update(id).digest('hex')}`;
}

/** A state-store name for any key id (ids contain `_`, `/`, `:`… which names may not). */
function idName(id: string): string {
  const hex = Buffer.from(id, 'utf8').toString('hex');
  return hex.length <= 190 ? `h${hex}` : `s${createHash('sha256').update(id).digest('hex')}`;
}

function encode(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value, BufferJSON.replacer), 'utf8');
}

async function readJson<T>(store: StateStore, name: string): Promise<T | undefined> {
  const bytes = await store.get(name);
  return bytes === undefined ? undefined : (parseJson(bytes) as T);
}

function parseJson(bytes: Uint8Array): unknown {
  return JSON.parse(Buffer.from(bytes).toString('utf8'), BufferJSON.reviver);
}
