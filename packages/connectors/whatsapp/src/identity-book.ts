/**
 * LID ↔ phone-number pairs and group subjects the connector has learned, kept in its state
 * store so aliases survive restarts. Sources: the v7 key fields `remoteJidAlt` /
 * `participantAlt`, `lid-mapping.update`, history sync `lidPnMappings`, contacts with both
 * forms, group metadata and subject-change stubs.
 */
import type { StateStore } from '@offchannel/core';
import { jidNormalizedUser } from '@whiskeysockets/baileys';

const NAME = 'identity-book';
const MAX_PAIRS = 200_000;
const MAX_TITLES = 50_000;

interface Saved {
  readonly pairs?: [string, string][];
  readonly titles?: [string, string][];
}

export class IdentityBook {
  readonly #aliases = new Map<string, Set<string>>();
  readonly #pairs = new Map<string, string>();
  readonly #titles = new Map<string, string>();
  #dirty = false;

  static async load(store: StateStore): Promise<IdentityBook> {
    const book = new IdentityBook();
    const saved = await store.getJson<Saved>(NAME);
    for (const [a, b] of saved?.pairs ?? []) book.link(a, b);
    for (const [chat, title] of saved?.titles ?? []) book.setTitle(chat, title);
    book.#dirty = false;
    return book;
  }

  /** Records that `a` and `b` (a LID and a phone-number JID) are the same user. */
  link(a: string | null | undefined, b: string | null | undefined): void {
    const x = normal(a);
    const y = normal(b);
    if (!x || !y || x === y || this.#pairs.size >= MAX_PAIRS) return;
    const pairKey = x < y ? `${x}\u0000${y}` : `${y}\u0000${x}`;
    if (this.#pairs.has(pairKey)) return;
    this.#pairs.set(pairKey, '');
    this.#add(x, y);
    this.#add(y, x);
    this.#dirty = true;
  }

  aliases(jid: string): readonly string[] {
    return [...(this.#aliases.get(jid) ?? [])];
  }

  setTitle(chat: string, title: string | null | undefined): void {
    if (!title || typeof title !== 'string' || this.#titles.get(chat) === title) return;
    if (!this.#titles.has(chat) && this.#titles.size >= MAX_TITLES) return;
    this.#titles.set(chat, title.slice(0, 200));
    this.#dirty = true;
  }

  title(chat: string): string | undefined {
    return this.#titles.get(chat);
  }

  /** Persists if anything changed since the last save. */
  async save(store: StateStore): Promise<void> {
    if (!this.#dirty) return;
    this.#dirty = false;
    const pairs = [...this.#pairs.keys()].map((key) => key.split('\u0000') as [string, string]);
    await store.setJson(NAME, { pairs, titles: [...this.#titles] } satisfies Saved);
  }

  #add(from: string, to: string): void {
    let set = this.#aliases.get(from);
    if (!set) this.#aliases.set(from, (set = new Set()));
    set.add(to);
  }
}

function normal(jid: string | null | undefined): string | undefined {
  if (typeof jid !== 'string' || jid.length === 0 || jid.length > 256) return undefined;
  try {
    return jidNormalizedUser(jid) || undefined;
  } catch {
    return undefined;
  }
}
