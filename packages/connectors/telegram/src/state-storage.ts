/**
 * An mtcute storage provider kept in offchannel's secret state store (AES-256-GCM, 0600 files)
 * instead of SQLite: no native module, and the Telegram session never touches disk in clear.
 *
 * mtcute works on in-memory repositories (its own `Memory*Repository` classes); this driver
 * loads them from the state store and writes the changed parts back on `save()`. mtcute calls
 * `save()` after each batch of updates, right after it has advanced its `pts`/`qts` cursors.
 * `save()` takes the cursor as it is at that call, then waits for the connector's
 * {@link StateStoreStorageOptions.beforeSave} barrier — the captures of every update dispatched
 * before the call — before writing it, so the persisted cursor never gets ahead of the archive.
 * If the barrier answers `false` (a capture failed), nothing is written: the stored cursor stays
 * at the last durable point and a restart replays the rest through `updates.getDifference`.
 * mtcute's updates loop itself keeps running. Saves are written one after another, in call
 * order; with {@link StateStoreStorageOptions.overlap} mtcute may go on to the next batch (the
 * next `getDifference` slice) while one save waits for its barrier.
 *
 * Stored names (in the account's scope): `mtcute.kv` (update state, current user, DC options),
 * `mtcute.auth` (permanent auth keys: the session secret), `mtcute.peers` (access hashes).
 */
import type { StateStore } from '@offchannel/core';
import { MemoryAuthKeysRepository, MemoryKeyValueRepository, MemoryPeersRepository, MemoryRefMessagesRepository, MemoryStorageDriver } from '@mtcute/core';
import type { IStorageDriver, ITelegramStorageProvider } from '@mtcute/core';

type Part = 'kv' | 'auth' | 'peers';
type PeerInfo = Parameters<MemoryPeersRepository['store']>[0];

interface StoredPeer extends Omit<PeerInfo, 'complete'> {
  readonly complete: string;
}

export interface StateStoreStorageOptions {
  /**
   * Called as `save()` begins: resolves `true` once everything dispatched so far is durable,
   * `false` when it never will be (then nothing is saved). Returning `false` itself skips this
   * save at once (nothing written, nothing awaited).
   */
  readonly beforeSave?: () => Promise<boolean> | false;
  /**
   * `save()` resolves once the save before it is done instead of its own: mtcute fetches and
   * dispatches its next batch while this one waits for its barrier (the capture pipeline stays
   * full across `getDifference` slices), and never runs more than one batch ahead. What is
   * written is still the state of the `save()` call, after its barrier. For capture only: a
   * caller that needs its save on disk when `save()` returns (linking) leaves this off.
   */
  readonly overlap?: boolean;
}

/** What one `save()` writes: the parts changed before the call, the key-value state as it was then. */
interface SaveJob {
  readonly parts: readonly Part[];
  readonly kv: Record<string, string> | undefined;
}

/** Loads and saves the in-memory repositories (which keep their data in a `MemoryStorageDriver`). */
class StateStoreDriver implements IStorageDriver {
  readonly #state: StateStore;
  readonly #options: StateStoreStorageOptions;
  readonly dirty: Set<Part>;
  #owner: StateStoreStorage | undefined;
  #loaded = false;
  /** Set by `destroy()`: the client is gone and nothing more may be written. */
  #closed = false;
  readonly #saving = new Set<Promise<void>>();
  /** The last save queued: each is written after the one before it. */
  #last: Promise<void> = Promise.resolve();

  constructor(state: StateStore, options: StateStoreStorageOptions, dirty: Set<Part>) {
    this.#state = state;
    this.#options = options;
    this.dirty = dirty;
  }

  attach(owner: StateStoreStorage): void {
    this.#owner = owner;
  }

  async load(): Promise<void> {
    const owner = this.#owner;
    if (this.#loaded || !owner) return;
    this.#loaded = true;
    const kv = await this.#state.getJson<Record<string, string>>('mtcute.kv');
    if (kv && typeof kv === 'object') for (const [key, value] of Object.entries(kv)) if (typeof value === 'string') owner.kv.state.set(key, fromBase64(value));
    const auth = await this.#state.getJson<Record<string, string>>('mtcute.auth');
    if (auth && typeof auth === 'object') for (const [dc, key] of Object.entries(auth)) if (typeof key === 'string') owner.authKeys.state.authKeys.set(Number(dc), fromBase64(key));
    const peers = await this.#state.getJson<StoredPeer[]>('mtcute.peers');
    if (Array.isArray(peers)) for (const peer of peers) if (isStoredPeer(peer)) owner.peers.store({ ...peer, isMin: (peer.isMin as boolean | undefined) === true, complete: fromBase64(peer.complete) });
    this.dirty.clear();
  }

  /** mtcute calls this after advancing its cursors (not always awaiting it); a no-op once destroyed. */
  save(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#queue(this.#options.overlap === true);
  }

  /**
   * Called, and awaited, when the client is destroyed (the connector's stop): waits for saves in
   * progress, makes the final one, then refuses further writes — so once `stop()` has returned,
   * nothing writes to the state store any more (a save mtcute fires late is dropped; the final
   * save already holds everything).
   */
  async destroy(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true; // from now on mtcute's saves are dropped; the one below covers them
    await Promise.allSettled([...this.#saving]);
    await this.#queue(false);
  }

  /**
   * Takes the barrier and the state now, writes them after the saves before (in call order).
   * Resolves when this save is done, or with `overlap` when the one before it is.
   */
  #queue(overlap: boolean): Promise<void> {
    const barrier = this.#options.beforeSave ? this.#options.beforeSave() : Promise.resolve(true);
    const owner = this.#owner;
    if (barrier === false || !owner) return Promise.resolve();
    const parts = [...this.dirty];
    this.dirty.clear();
    const job: SaveJob = { parts, kv: parts.includes('kv') ? kvJson(owner) : undefined };
    const previous = this.#last;
    const saving = previous.then(
      () => this.#write(owner, job, barrier),
      () => this.#write(owner, job, barrier),
    );
    this.#last = saving;
    this.#saving.add(saving);
    // Settled either way: a failure is reported to whoever awaits it (mtcute, one save later with `overlap`).
    saving.then(
      () => this.#saving.delete(saving),
      () => this.#saving.delete(saving),
    );
    return overlap ? previous : saving;
  }

  async #write(owner: StateStoreStorage, job: SaveJob, barrier: Promise<boolean>): Promise<void> {
    try {
      if (await barrier) {
        for (const part of job.parts) await this.#writePart(owner, part, job);
        return;
      }
    } catch (error) {
      this.#unwritten(job);
      throw error;
    }
    this.#unwritten(job); // not durable: nothing written
  }

  /** The next save writes these parts (the key-value state as it is then). */
  #unwritten(job: SaveJob): void {
    for (const part of job.parts) this.dirty.add(part);
  }

  async #writePart(owner: StateStoreStorage, part: Part, job: SaveJob): Promise<void> {
    switch (part) {
      case 'kv':
        await this.#state.setJson('mtcute.kv', job.kv ?? kvJson(owner));
        return;
      case 'auth':
        await this.#state.setJson('mtcute.auth', Object.fromEntries([...owner.authKeys.state.authKeys].map(([dc, key]) => [String(dc), toBase64(key)])));
        return;
      case 'peers':
        await this.#state.setJson('mtcute.peers', [...owner.peers.state.entities.values()].map((peer) => ({ ...peer, isMin: (peer.isMin as boolean | undefined) === true, complete: toBase64(peer.complete) })));
        return;
    }
  }
}

class TrackedKv extends MemoryKeyValueRepository {
  readonly #dirty: Set<Part>;
  constructor(memory: MemoryStorageDriver, dirty: Set<Part>) {
    super(memory);
    this.#dirty = dirty;
  }
  override set(key: string, value: Uint8Array): void {
    super.set(key, value);
    this.#dirty.add('kv');
  }
  override delete(key: string): void {
    super.delete(key);
    this.#dirty.add('kv');
  }
  override deleteAll(): void {
    super.deleteAll();
    this.#dirty.add('kv');
  }
}

class TrackedAuthKeys extends MemoryAuthKeysRepository {
  readonly #dirty: Set<Part>;
  constructor(memory: MemoryStorageDriver, dirty: Set<Part>) {
    super(memory);
    this.#dirty = dirty;
  }
  override set(dc: number, key: Uint8Array | null): void {
    super.set(dc, key);
    this.#dirty.add('auth');
  }
  override deleteByDc(dc: number): void {
    super.deleteByDc(dc);
    this.#dirty.add('auth');
  }
  override deleteAll(): void {
    super.deleteAll();
    this.#dirty.add('auth');
  }
}

class TrackedPeers extends MemoryPeersRepository {
  readonly #dirty: Set<Part>;
  constructor(memory: MemoryStorageDriver, dirty: Set<Part>) {
    super(memory);
    this.#dirty = dirty;
  }
  override store(peer: PeerInfo): void {
    super.store(peer);
    this.#dirty.add('peers');
  }
  override deleteAll(): void {
    super.deleteAll();
    this.#dirty.add('peers');
  }
}

/** The provider handed to mtcute (`storage:` option of the client). */
export class StateStoreStorage implements ITelegramStorageProvider {
  readonly driver: StateStoreDriver;
  readonly kv: TrackedKv;
  readonly authKeys: TrackedAuthKeys;
  readonly peers: TrackedPeers;
  /** Not persisted: only used to re-resolve "min" peers, which mtcute re-fetches when missing. */
  readonly refMessages: MemoryRefMessagesRepository;

  constructor(state: StateStore, options: StateStoreStorageOptions = {}) {
    const dirty = new Set<Part>();
    const memory = new MemoryStorageDriver();
    this.driver = new StateStoreDriver(state, options, dirty);
    this.kv = new TrackedKv(memory, dirty);
    this.authKeys = new TrackedAuthKeys(memory, dirty);
    this.peers = new TrackedPeers(memory, dirty);
    this.refMessages = new MemoryRefMessagesRepository(memory);
    this.driver.attach(this);
  }

  /** True when the store holds a permanent auth key (a linked session). */
  hasSession(): boolean {
    return this.authKeys.state.authKeys.size > 0;
  }
}

/** Where `linkTelegram({ storeApiHash: true })` keeps the api_hash, in the account's encrypted state. */
const API_HASH_KEY = 'telegram.api-hash';

/** Keeps the firm's api_hash in the account's encrypted state (for a config that names no other source). */
export async function storeApiHash(state: StateStore, apiHash: string): Promise<void> {
  await state.set(API_HASH_KEY, new TextEncoder().encode(apiHash));
}

/** The api_hash kept by {@link storeApiHash}, if any (and well-formed). */
export async function storedApiHash(state: StateStore): Promise<string | undefined> {
  const bytes = await state.get(API_HASH_KEY);
  const text = bytes && new TextDecoder().decode(bytes);
  return text !== undefined && /^[0-9a-f]{32}$/i.test(text) ? text : undefined;
}

/** True when the account's state holds a linked Telegram session. */
export async function hasTelegramSession(state: StateStore): Promise<boolean> {
  const auth = await state.getJson<Record<string, string>>('mtcute.auth');
  return auth !== undefined && auth !== null && typeof auth === 'object' && Object.keys(auth).length > 0;
}

/** mtcute leaves `isMin` undefined for full peers (JSON then drops it): absent means `false`. */
function isStoredPeer(value: unknown): value is StoredPeer {
  if (typeof value !== 'object' || value === null) return false;
  const peer = value as Partial<Record<keyof StoredPeer, unknown>>;
  return typeof peer.id === 'number' && typeof peer.accessHash === 'string' && typeof peer.complete === 'string' && Array.isArray(peer.usernames) && typeof peer.updated === 'number' && (peer.isMin === undefined || typeof peer.isMin === 'boolean');
}

/** The key-value repository (update state, self, DC options) as stored. */
function kvJson(owner: StateStoreStorage): Record<string, string> {
  return Object.fromEntries([...owner.kv.state].map(([key, value]) => [key, toBase64(value)]));
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function fromBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'));
}
