/**
 * What the connector remembers about archived messages, in its encrypted state store:
 * - every message's `messageSecret` (needed to decrypt later encrypted edits; Baileys rc14
 *   keeps none), and
 * - the `proto.Message` bytes of the custodian's own messages, which answer Baileys'
 *   `getMessage` when a recipient's device asks for a retry.
 * Entries are written only after the message's record is durable in the archive, so the index
 * never knows more than the archive; a run of acknowledged messages is written as ONE batch
 * (a state table: one transaction, one fsync), and `rememberAll` resolves when it is durable.
 * Recent entries are also kept in memory (bounded), so an edit arriving right after its
 * original never waits for the disk.
 *
 * Layout: state table `messages`, row `m<sha256(chat ‖ 0x00 ‖ id)>` → JSON `{ s?: base64, c?: base64 }`.
 * Entries written by earlier versions (one state file each, `~messages/~b<2 hex>/m<hash>`) are
 * still read.
 */
import { hash } from 'node:crypto';
import type { StateStore, StateTable } from '@offchannel/core';

interface Entry {
  readonly secret?: Uint8Array;
  readonly content?: Uint8Array;
}

/** One message to remember: its {@link MessageIndex.hashOf} and what to keep. */
export interface IndexEntry {
  readonly hash: string;
  readonly entry: Entry;
}

export class MessageIndex {
  readonly #table: StateTable;
  /** Where versions before the state table kept each entry as its own file. */
  readonly #legacy: StateStore;
  readonly #cache = new Map<string, Entry>();
  readonly #limit: number;
  readonly #writes = new Set<Promise<void>>();

  constructor(store: StateStore, options: { readonly cacheEntries?: number } = {}) {
    this.#table = store.table('messages');
    this.#legacy = store.scope('messages');
    this.#limit = options.cacheEntries ?? 20_000;
  }

  /** The row name of a message: sha256(chat ‖ 0x00 ‖ id), hex. */
  static hashOf(chat: string, id: string): string {
    return hash('sha256', `${chat}\u0000${id}`);
  }

  /** Makes an entry visible in memory only (before its record is durable); returns its hash for {@link rememberAll}. */
  note(chat: string, id: string, entry: Entry): string {
    const key = MessageIndex.hashOf(chat, id);
    if (entry.secret || entry.content) this.#touch(key, entry);
    return key;
  }

  /** Remembers a run of messages in one batch; resolves when all are durable (in memory at once). */
  rememberAll(entries: readonly IndexEntry[]): Promise<void> {
    const rows: [string, Uint8Array][] = [];
    for (const { hash, entry } of entries) {
      if (!entry.secret && !entry.content) continue;
      this.#touch(hash, entry);
      const json = JSON.stringify({
        ...(entry.secret ? { s: Buffer.from(entry.secret).toString('base64') } : {}),
        ...(entry.content ? { c: Buffer.from(entry.content).toString('base64') } : {}),
      });
      rows.push([`m${hash}`, Buffer.from(json, 'utf8')]);
    }
    if (rows.length === 0) return Promise.resolve();
    const write = this.#table.write(rows);
    this.#writes.add(write);
    void write.then(
      () => this.#writes.delete(write),
      () => this.#writes.delete(write),
    );
    return write;
  }

  async secret(chat: string, id: string): Promise<Uint8Array | undefined> {
    return (await this.#get(chat, id))?.secret;
  }

  async content(chat: string, id: string): Promise<Uint8Array | undefined> {
    return (await this.#get(chat, id))?.content;
  }

  /** Resolves when every write issued so far has settled. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.#writes]);
  }

  /** Waits for writes in progress, then closes the table's file. */
  async close(): Promise<void> {
    await this.flush();
    await this.#table.close();
  }

  async #get(chat: string, id: string): Promise<Entry | undefined> {
    const hash = MessageIndex.hashOf(chat, id);
    const cached = this.#cache.get(hash);
    if (cached) return cached;
    const bytes = (await this.#table.get(`m${hash}`)) ?? (await this.#legacy.scope(`b${hash.slice(0, 2)}`).get(`m${hash}`));
    if (!bytes) return undefined;
    const parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as { s?: string; c?: string };
    const entry: Entry = {
      ...(parsed.s ? { secret: Uint8Array.from(Buffer.from(parsed.s, 'base64')) } : {}),
      ...(parsed.c ? { content: Uint8Array.from(Buffer.from(parsed.c, 'base64')) } : {}),
    };
    this.#touch(hash, entry);
    return entry;
  }

  #touch(hash: string, entry: Entry): void {
    this.#cache.delete(hash);
    this.#cache.set(hash, entry);
    if (this.#cache.size > this.#limit) {
      const oldest = this.#cache.keys().next();
      if (!oldest.done) this.#cache.delete(oldest.value);
    }
  }
}
