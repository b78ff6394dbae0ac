import type { StateStore } from '@offchannel/core';
import { SignalError } from './signal-error.ts';

const JOURNAL = 'journal';
const APPLY_CONCURRENCY = 16;
/** Most committed values kept in memory for reads (sessions, identities, prekeys); then it starts over. */
const CACHE_ENTRIES = 4096;

/**
 * Decrypt-once safety. Signal ciphertext can be decrypted exactly once: decrypting advances
 * the session ratchet and consumes prekeys. The receiver therefore runs each envelope against
 * this staged view of the state store — reads see the envelope's own pending writes, nothing
 * reaches disk — and commits only after the envelope's records are durable in the archive.
 *
 * A commit is atomic across names: the pending writes are first written as one journal value,
 * then applied, then the journal is removed. {@link StagedState.recover} re-applies a journal
 * left by a crash, so state is always "before" or "after" an envelope, never half of it.
 *
 * Committed values read are kept in memory (the base store is written only through this
 * stage while the connector runs), so a backlog from one sender reads its session, identity and
 * prekeys from disk once, not once per envelope.
 *
 * Outcomes of a crash: before the commit, the envelope is redelivered (it was not
 * acknowledged) and decrypts again with the old state, and its records are recognized as
 * duplicates by their keys; after the commit but before the acknowledgement, the envelope's
 * id is in the processed list written by the same commit, so it is acknowledged without
 * decrypting again.
 */
export class StagedState {
  readonly #base: StateStore;
  readonly #pending = new Map<string, Uint8Array | null>();
  /** Undo log of the current envelope's writes (see {@link begin}): name and earlier pending value, `undefined` if none. */
  #undo: [string, Uint8Array | null | undefined][] | undefined;
  /** Committed values by name (`undefined`: known absent). */
  readonly #cache = new Map<string, Uint8Array | undefined>();
  /** A journal was written but not fully applied. */
  #interrupted = false;

  constructor(base: StateStore) {
    this.#base = base;
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    if (this.#interrupted) throw new SignalError('SIGNAL_STATE_CORRUPT', 'a state commit is incomplete; call ensureCommitted() first.');
    if (this.#pending.has(name)) return this.#pending.get(name) ?? undefined;
    if (this.#cache.has(name)) return this.#cache.get(name);
    const value = await this.#base.get(name);
    if (this.#cache.size >= CACHE_ENTRIES) this.#cache.clear();
    this.#cache.set(name, value);
    return value;
  }

  async getJson<T>(name: string): Promise<T | undefined> {
    const bytes = await this.get(name);
    return bytes === undefined ? undefined : (JSON.parse(Buffer.from(bytes).toString('utf8')) as T);
  }

  set(name: string, value: Uint8Array): void {
    this.#remember(name);
    this.#pending.set(name, Uint8Array.from(value));
  }

  setJson(name: string, value: unknown): void {
    this.set(name, Buffer.from(JSON.stringify(value), 'utf8'));
  }

  delete(name: string): void {
    this.#remember(name);
    this.#pending.set(name, null);
  }

  /**
   * Starts one envelope's writes within a batch: {@link rollback} then undoes exactly them,
   * keeping the writes of the envelopes staged before it. Each `begin` ends the previous one.
   */
  begin(): void {
    this.#undo = [];
  }

  /** Undoes the writes since {@link begin} (the envelope was not decrypted after all). */
  rollback(): void {
    for (const [name, earlier] of (this.#undo ?? []).reverse()) {
      if (earlier === undefined) this.#pending.delete(name);
      else this.#pending.set(name, earlier);
    }
    this.#undo = undefined;
  }

  #remember(name: string): void {
    this.#undo?.push([name, this.#pending.has(name) ? (this.#pending.get(name) ?? null) : undefined]);
  }

  /** Names with uncommitted writes. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Forgets uncommitted writes (the envelope will be redelivered and decrypted again). */
  discard(): void {
    this.#pending.clear();
    this.#undo = undefined;
  }

  /** Makes the pending writes durable, all or nothing. */
  async commit(): Promise<void> {
    if (this.#pending.size === 0) return;
    const committed = [...this.#pending];
    // Until it is known what reached the disk, reads go to the disk.
    for (const [name] of committed) this.#cache.delete(name);
    this.#pending.clear();
    this.#undo = undefined;
    if (committed.length === 1) {
      // One name: a single atomic write or delete, no journal needed.
      const [[name, value]] = committed as [[string, Uint8Array | null]];
      if (value === null) await this.#base.delete(name);
      else await this.#base.set(name, value);
    } else {
      const entries: [string, string | null][] = committed.map(([name, value]) => [name, value === null ? null : Buffer.from(value).toString('base64')]);
      await this.#base.setJson(JOURNAL, entries);
      this.#interrupted = true;
      await apply(this.#base, entries);
      await this.#base.delete(JOURNAL);
      this.#interrupted = false;
    }
    for (const [name, value] of committed) this.#cache.set(name, value ?? undefined);
  }

  /**
   * After a commit that failed once its journal was written (disk full, I/O error), completes
   * it before anything else is read or staged. Call before each unit of work.
   */
  async ensureCommitted(): Promise<void> {
    if (!this.#interrupted) return;
    await StagedState.recover(this.#base);
    this.#cache.clear();
    this.#interrupted = false;
  }

  /** Completes a commit interrupted by a crash. Call before using the stores. */
  static async recover(base: StateStore): Promise<boolean> {
    const entries = await base.getJson(JOURNAL);
    if (entries === undefined) return false;
    if (!Array.isArray(entries)) throw new SignalError('SIGNAL_STATE_CORRUPT', 'the Signal state journal is damaged; restore the state directory from backup or relink the device.');
    await apply(base, entries as [string, string | null][]);
    await base.delete(JOURNAL);
    return true;
  }
}

/** Writes distinct names concurrently (a few at a time): the journal already makes the set atomic. */
async function apply(base: StateStore, entries: readonly [string, string | null][]): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < entries.length) {
      const [name, value] = entries[next++] as [string, string | null];
      if (value === null) await base.delete(name);
      else await base.set(name, Buffer.from(value, 'base64'));
    }
  };
  await Promise.all(Array.from({ length: Math.min(APPLY_CONCURRENCY, entries.length) }, worker));
}
