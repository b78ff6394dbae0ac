/**
 * Our own index of recorded messages: (peer, message id) → what was recorded. It answers two
 * questions Telegram's updates leave open:
 * - which chat a private-chat / basic-group delete belongs to (`updateDeleteMessages` carries
 *   only ids; those ids are unique per account, in the "common message box");
 * - whether an edit changed the content (fingerprint) and which reactions are new.
 *
 * Kept in memory, bounded (oldest entries evicted first), and persisted to the state store as
 * 32 shards plus a journal: each persist writes only the entries committed since the last one,
 * into the journal's open segment (a segment holds up to 512 entries; the next starts when it is
 * full). Once the journal holds as many entries as the index, the shards are rewritten from
 * memory and the journal is dropped (compaction), so writing costs a bounded amount per entry
 * however large the index is. Loading reads the shards, then replays the journal in order. Two
 * layers: what the mapping of an update learned is *staged* at once (the next update in the
 * pipeline needs it), and *committed* only when the records it describes are durable (the
 * connector's acknowledgement). Only committed entries are persisted, so a crash never leaves
 * the index ahead of the archive.
 *
 * Crash safety of compaction: the pending entries are journaled first, then every shard is
 * written, then `message-index.base` records which segments the shards hold, then those are
 * deleted. A crash in between replays segments the shards already hold: each key ends at its
 * last journaled value, which is what the shards hold too.
 */
import type { StateStore } from '@offchannel/core';
import { getBasicPeerType, getMarkedPeerId, type tl } from '@mtcute/core';
import type { MessageMemory } from './map-telegram.ts';

const SHARDS = 32;
const SHARD_PREFIX = 'message-index.';
const JOURNAL_PREFIX = 'message-index.journal.';
/** Which journal segments the shards hold: `{ through: <last segment folded in> }`. */
const BASE = 'message-index.base';
/** Entries per journal segment. */
const SEGMENT_ENTRIES = 512;
/** Journal entries (at least) before compaction; more when the index is larger. */
const COMPACT_MIN = 4096;

/** Default number of messages remembered. */
export const DEFAULT_INDEX_CAPACITY = 200_000;

type Entry = readonly [key: string, memory: MessageMemory];

/**
 * Whether a marked peer id is a supergroup or channel (`-100…` followed by twelve digits), by
 * its value: a basic group's id can also start with "-100" (chat 100123456 is `-100123456`).
 */
export function isChannelPeer(marked: string): boolean {
  const id = Number(marked);
  return Number.isSafeInteger(id) && id !== 0 && getBasicPeerType(id) === 'channel';
}

export class MessageIndex {
  readonly #capacity: number;
  readonly #entries = new Map<string, MessageMemory>();
  /** Common-box message id → peer (users and basic groups only). */
  readonly #commonBox = new Map<number, string>();
  /** Committed since the last persist (latest value, in commit order). */
  readonly #fresh = new Map<string, MessageMemory>();
  /** The journal's open segment (rewritten with what each persist adds, until full). */
  #open = new Map<string, MessageMemory>();
  /** The open segment's number; segments up to `#through` are in the shards. */
  #segment = 1;
  #through = 0;
  /** Entries written to the journal since the last compaction (segments beyond `#through`). */
  #journaled = 0;
  /** Persists run one at a time. */
  #persisting: Promise<void> = Promise.resolve();
  /** Mapped, records not yet durable: consulted first, never persisted. */
  readonly #staged = new Map<string, MessageMemory>();
  readonly #stagedCommonBox = new Map<number, string>();

  constructor(capacity = DEFAULT_INDEX_CAPACITY) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError('message index capacity must be a positive integer');
    this.#capacity = capacity;
  }

  /** Loads the persisted shards (missing shards are empty), then replays the journal. */
  static async load(state: StateStore, capacity?: number): Promise<MessageIndex> {
    const index = new MessageIndex(capacity);
    for (let shard = 0; shard < SHARDS; shard++) index.#putAll(await state.getJson(`${SHARD_PREFIX}${shard}`));
    const base = await state.getJson<{ through?: unknown }>(BASE);
    index.#through = typeof base?.through === 'number' && Number.isSafeInteger(base.through) ? base.through : 0;
    index.#segment = index.#through;
    for (const segment of await journalSegments(state)) {
      if (segment <= index.#through) continue; // already in the shards (a compaction cut short)
      const entries = await state.getJson(`${JOURNAL_PREFIX}${segment}`);
      index.#journaled += index.#putAll(entries);
      index.#segment = segment;
    }
    // New entries start a new segment: the last one read may be full, and is never rewritten.
    index.#segment++;
    return index;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** What was recorded for message `id` in `peer`. */
  get(peer: string, id: number): MessageMemory | undefined {
    const key = `${peer}:${id}`;
    return this.#staged.get(key) ?? this.#entries.get(key);
  }

  /** The recorded message with this common-box id (private chats and basic groups). */
  getCommonBox(id: number): MessageMemory | undefined {
    const peer = this.#stagedCommonBox.get(id) ?? this.#commonBox.get(id);
    return peer === undefined ? undefined : this.get(peer, id);
  }

  /**
   * What the mapping needs to know about the messages an update refers to, by message id: the
   * message itself (new, edit), each deleted id (common box or the channel), the reacted message.
   */
  memoryFor(update: tl.TypeUpdate): Map<number, MessageMemory> {
    const memory = new Map<number, MessageMemory>();
    const put = (id: number, known: MessageMemory | undefined): void => {
      if (known) memory.set(id, known);
    };
    switch (update._) {
      case 'updateNewMessage':
      case 'updateNewChannelMessage':
      case 'updateEditMessage':
      case 'updateEditChannelMessage':
        if (update.message._ !== 'messageEmpty') put(update.message.id, this.get(String(getMarkedPeerId(update.message.peerId)), update.message.id));
        break;
      case 'updateDeleteMessages':
        for (const id of update.messages) put(id, this.getCommonBox(id));
        break;
      case 'updateDeleteChannelMessages':
        for (const id of update.messages) put(id, this.get(String(getMarkedPeerId(update.channelId, 'channel')), id));
        break;
      case 'updateMessageReactions':
        put(update.msgId, this.get(String(getMarkedPeerId(update.peer)), update.msgId));
        break;
      default:
        break;
    }
    return memory;
  }

  /** Message ids remembered for one conversation. */
  idsFor(peer: string): number[] {
    const prefix = `${peer}:`;
    const ids = new Set<number>();
    for (const layer of [this.#entries, this.#staged]) for (const key of layer.keys()) if (key.startsWith(prefix)) ids.add(Number(key.slice(prefix.length)));
    return [...ids];
  }

  /** Remembers a message at once (committed: its records are already durable). */
  set(id: number, memory: MessageMemory): void {
    this.#put(`${memory.peer}:${id}`, memory, true);
  }

  /** Remembers a message for the mapping of later updates; {@link commit} once its records are durable. */
  stage(id: number, memory: MessageMemory): void {
    const key = `${memory.peer}:${id}`;
    this.#staged.delete(key);
    this.#staged.set(key, memory);
    if (!isChannelPeer(memory.peer)) this.#stagedCommonBox.set(id, memory.peer);
  }

  /** The records behind a staged entry are durable: it may now be persisted. */
  commit(id: number, memory: MessageMemory): void {
    const key = `${memory.peer}:${id}`;
    this.#put(key, memory, true);
    if (this.#staged.get(key) !== memory) return; // staged again since: the newer one stays staged
    this.#staged.delete(key);
    if (this.#stagedCommonBox.get(id) === memory.peer) this.#stagedCommonBox.delete(id);
  }

  /** Forgets everything staged (its updates were abandoned and will be delivered again). */
  discardStaged(): void {
    this.#staged.clear();
    this.#stagedCommonBox.clear();
  }

  /**
   * Writes what was committed since the last persist (journal), or compacts. Call only once the
   * records it describes are durable. Persists run one at a time, in call order.
   */
  persist(state: StateStore): Promise<void> {
    const run = this.#persisting.then(
      () => this.#persist(state),
      () => this.#persist(state),
    );
    this.#persisting = run;
    return run;
  }

  async #persist(state: StateStore): Promise<void> {
    if (this.#fresh.size === 0) return;
    const fresh = [...this.#fresh];
    this.#fresh.clear();
    try {
      if (this.#open.size + fresh.length > SEGMENT_ENTRIES && this.#open.size > 0) {
        this.#segment++;
        this.#open = new Map();
      }
      for (const [key, memory] of fresh) {
        this.#open.delete(key);
        this.#open.set(key, memory);
      }
      await state.setJson(`${JOURNAL_PREFIX}${this.#segment}`, [...this.#open]);
      this.#journaled += fresh.length;
      if (this.#journaled >= Math.max(COMPACT_MIN, this.#entries.size)) await this.#compact(state);
    } catch (error) {
      // Not (all) written: the next persist writes these again (newer commits stay newer).
      for (const [key, memory] of fresh) if (!this.#fresh.has(key)) this.#fresh.set(key, memory);
      throw error;
    }
  }

  /** Every shard from memory, then the base marker, then the journal it replaces is dropped. */
  async #compact(state: StateStore): Promise<void> {
    const through = this.#segment;
    const shards: Entry[][] = Array.from({ length: SHARDS }, () => []);
    for (const [key, memory] of this.#entries) shards[shardOf(key)]?.push([key, memory]);
    // Shards are separate values: written side by side, one fsync wait instead of one each.
    await Promise.all(shards.map((entries, shard) => state.setJson(`${SHARD_PREFIX}${shard}`, entries)));
    await state.setJson(BASE, { through });
    this.#through = through;
    this.#segment = through + 1;
    this.#open = new Map();
    this.#journaled = 0;
    const stale = (await journalSegments(state)).filter((segment) => segment <= through);
    await Promise.all(stale.map((segment) => state.delete(`${JOURNAL_PREFIX}${segment}`)));
  }

  /** Puts the valid entries of a stored shard or segment; answers how many. */
  #putAll(entries: unknown): number {
    if (!Array.isArray(entries)) return 0;
    let count = 0;
    for (const entry of entries as unknown[]) {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || !isMemory(entry[1])) continue;
      this.#put(entry[0], entry[1], false);
      count++;
    }
    return count;
  }

  #put(key: string, memory: MessageMemory, dirty: boolean): void {
    this.#entries.delete(key);
    this.#entries.set(key, memory);
    const id = Number(key.slice(key.lastIndexOf(':') + 1));
    if (!isChannelPeer(memory.peer)) this.#commonBox.set(id, memory.peer);
    if (dirty) {
      this.#fresh.delete(key);
      this.#fresh.set(key, memory);
    }
    while (this.#entries.size > this.#capacity) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
      const oldId = Number(oldest.slice(oldest.lastIndexOf(':') + 1));
      if (this.#commonBox.get(oldId) === oldest.slice(0, oldest.lastIndexOf(':'))) this.#commonBox.delete(oldId);
    }
  }
}

/** The journal segments stored, in order. */
async function journalSegments(state: StateStore): Promise<number[]> {
  const segments = [];
  for (const name of await state.list()) {
    if (!name.startsWith(JOURNAL_PREFIX)) continue;
    const segment = Number(name.slice(JOURNAL_PREFIX.length));
    if (Number.isSafeInteger(segment) && segment > 0) segments.push(segment);
  }
  return segments.sort((a, b) => a - b);
}

function shardOf(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % SHARDS;
}

function isMemory(value: unknown): value is MessageMemory {
  if (typeof value !== 'object' || value === null) return false;
  const memory = value as Partial<Record<keyof MessageMemory, unknown>>;
  return (
    typeof memory.peer === 'string' &&
    typeof memory.fingerprint === 'string' &&
    Array.isArray(memory.reactions) &&
    memory.reactions.every((reaction) => typeof reaction === 'string') &&
    (memory.direction === 'inbound' || memory.direction === 'outbound') &&
    (memory.type === 'direct' || memory.type === 'group' || memory.type === 'channel')
  );
}
