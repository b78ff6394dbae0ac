/**
 * The capture policy: which conversations of an account are out of scope (personal contacts),
 * applied between a connector and the recorder.
 *
 * - A conversation is **excluded** when its id is in `exclude.conversations`; or it is a direct
 *   conversation whose id, or whose other party's id or aliases, is in `exclude.contacts` (a
 *   direct conversation is learned from the contact's first inbound message in it, and
 *   remembered — as a keyed hash — so the custodian's own replies there are excluded too; list
 *   the conversation id as well to exclude it before the contact writes); or an `only` list is
 *   set and it matches neither `only.conversations` nor (direct) `only.contacts`.
 * - An excluded conversation's events (messages, edits, reactions…) are **not stored**. Instead
 *   the runner counts them per conversation and records a `policy` record
 *   (`system.event: "conversation-excluded"`) holding only HMAC-SHA256(identifier key,
 *   conversation id), the count, and the policy version — no content, no participants, and no
 *   unkeyed hash: phone numbers are few enough to enumerate, so a plain SHA-256 would name them.
 *   The firm keeps the identifier key and can give it to an examiner, who recomputes
 *   `printf %s '<id>' | openssl dgst -sha256 -mac HMAC -macopt hexkey:<key>` to check whether a
 *   contact was excluded. Pending counts are kept in the encrypted state store, so a crash does
 *   not lose them; they are recorded every `reportEveryMs` and on stop.
 * - Events without a conversation (account events, gaps, undecryptable envelopes without one)
 *   are always stored: an exclusion must never hide a problem.
 * - On start, a `policy` record (`system.event: "capture-policy"`) states the version, the
 *   algorithm, the key id (SHA-256 of the key, never the key) and the keyed exclusion lists in
 *   force; it is recorded again only when they change. Logs never name an excluded conversation.
 */
import { createHash, createHmac } from 'node:crypto';
import { type CaptureInput, type CaptureResult, ConfigError, type ConnectorContext, type StateStore } from '@offchannel/core';
import type { PolicyRules } from './capture-config.ts';

/** The algorithm named in policy records, for identifiers of excluded contacts and conversations. */
export const IDENTIFIER_ALGORITHM = 'hmac-sha256';

/** The firm's identifier key (see `loadIdentifierKey`): 32 secret bytes and their public id. */
export interface IdentifierKey {
  readonly bytes: Uint8Array;
  /** `sha256:` and the SHA-256 of the key bytes: names the key in records without revealing it. */
  readonly id: string;
}

/**
 * HMACs per record field: 15 × 65 − 1 = 974 characters, under the 1,024 a field holds. A longer
 * list continues in `<list>.hmac-sha256.2`, `.3`…; a record holds 64 fields, 3 of them fixed.
 */
const HMACS_PER_FIELD = 15;
/** The most ids all lists of one connector's policy may hold together. */
export const MAX_POLICY_IDS = (64 - 3) * HMACS_PER_FIELD;

/** Policy records of this format name their identifiers `<list>.hmac-sha256`; older ones `<list>.sha256` (unkeyed). */
const PENDING = 'pending-exclusions.hmac';
const LEARNED = 'excluded-direct-conversations.hmac';
/** What versions before keyed identifiers kept, keyed by plain SHA-256; converted once on start. */
const LEGACY_PENDING = 'pending-exclusions';
const LEGACY_LEARNED = 'excluded-direct-conversations';

interface PendingEntry {
  count: number;
  first: string;
  last: string;
  /** The id of the key the HMAC was made with (the key may be rotated between runs). */
  keyId: string;
}

interface Pending {
  [conversationHmac: string]: PendingEntry;
}

interface Learned {
  readonly keyId: string;
  readonly hmacs: string[];
}

export function sha256Text(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** HMAC-SHA256 of `text` (UTF-8) under the identifier key, lower-case hex: what policy records hold. */
export function identifierHmac(key: IdentifierKey, text: string): string {
  return createHmac('sha256', key.bytes).update(text, 'utf8').digest('hex');
}

/**
 * True when `input` belongs to a conversation the policy keeps out of the archive.
 * `learned` says whether a direct conversation id was already matched to an excluded contact.
 */
export function isExcluded(input: CaptureInput, rules: PolicyRules, learned: (conversationId: string) => boolean = () => false): boolean {
  const conversation = input.conversation;
  if (!conversation) return false;
  const direct = conversation.type === 'direct';
  if (direct && learned(conversation.id)) return true;
  const ids = direct ? [conversation.id, ...(input.direction === 'inbound' && input.sender ? [input.sender.id, ...(input.sender.aliases ?? [])] : [])] : [];
  const matches = (list: readonly string[]): boolean => list.includes(conversation.id) || ids.some((id) => list.includes(id));
  if (rules.excludeConversations.includes(conversation.id)) return true;
  if (direct && matches(rules.excludeContacts)) return true;
  if (rules.onlyContacts !== undefined || rules.onlyConversations !== undefined) {
    const allowed = (rules.onlyConversations ?? []).includes(conversation.id) || (direct && matches(rules.onlyContacts ?? []));
    return !allowed;
  }
  return false;
}

/** True when `rules` exclude anything (and so need the identifier key). */
export function policyActive(rules: PolicyRules): boolean {
  return rules.excludeContacts.length + rules.excludeConversations.length > 0 || rules.onlyContacts !== undefined || rules.onlyConversations !== undefined;
}

export class CapturePolicy {
  readonly #ctx: ConnectorContext;
  readonly #rules: PolicyRules;
  readonly #version: string | undefined;
  readonly #key: IdentifierKey | undefined;
  readonly #state: StateStore;
  #pending: Pending = {};
  #learned = new Set<string>();
  /** Conversation id → its HMAC, for the direct conversations seen lately (an HMAC costs ~15 µs; ids repeat). */
  readonly #macs = new Map<string, string>();
  #chain: Promise<unknown> = Promise.resolve();
  excluded = 0;

  /** `key` is required when the rules exclude anything: excluded identifiers are recorded only as HMACs under it. */
  constructor(ctx: ConnectorContext, rules: PolicyRules, version: string | undefined, key?: IdentifierKey) {
    if (policyActive(rules) && key === undefined) throw new ConfigError('config.policy.identifierKeyFile', 'is required when a connector excludes contacts or conversations (create one with: offchannel keygen --identifier-key --out policy-identifier.key)');
    this.#ctx = ctx;
    this.#rules = rules;
    this.#version = version;
    this.#key = key;
    this.#state = ctx.state.scope('offchannel-policy');
  }

  get active(): boolean {
    return policyActive(this.#rules);
  }

  /** Records the policy in force (once per distinct policy) and any counts a previous run left pending. */
  async start(): Promise<void> {
    this.#pending = (await this.#state.getJson<Pending>(PENDING)) ?? {};
    const learned = await this.#state.getJson<Learned>(LEARNED);
    // Learned conversations under another key cannot be matched: they are learned again (more is captured, never less).
    this.#learned = new Set(learned && learned.keyId === this.#key?.id ? learned.hmacs : []);
    await this.#convertLegacyState();
    if (this.#version !== undefined) {
      const rules = this.#rules;
      const fields: Record<string, string> = { version: this.#version };
      if (this.#key) {
        const key = this.#key;
        Object.assign(fields, { 'identifier.algorithm': IDENTIFIER_ALGORITHM, 'identifier.key-id': key.id });
        const lists: [string, readonly string[] | undefined][] = [['exclude.contacts', rules.excludeContacts], ['exclude.conversations', rules.excludeConversations], ['only.contacts', rules.onlyContacts], ['only.conversations', rules.onlyConversations]];
        const total = lists.reduce((sum, [, list]) => sum + Math.ceil((list?.length ?? 0) / HMACS_PER_FIELD), 0);
        if (total > 64 - 3) throw new ConfigError(`policy of ${this.#ctx.stream}`, `lists too many ids to record (at most ${MAX_POLICY_IDS} in all, ${HMACS_PER_FIELD} per 1 KiB field); exclude whole conversations or split the account's policy`);
        for (const [name, list] of lists) {
          const macs = (list ?? []).map((id) => identifierHmac(key, id));
          for (let part = 0; part * HMACS_PER_FIELD < macs.length; part++) {
            fields[`${name}.${IDENTIFIER_ALGORITHM}${part === 0 ? '' : `.${part + 1}`}`] = macs.slice(part * HMACS_PER_FIELD, (part + 1) * HMACS_PER_FIELD).join(',');
          }
        }
      }
      const clean = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== ''));
      await this.#ctx.capture({ kind: 'policy', key: `policy:in-force:${sha256Text(JSON.stringify(clean))}`, system: { event: 'capture-policy', fields: clean } });
    }
    await this.report();
  }

  /** The connector context with the policy applied to `capture`. */
  wrap(): ConnectorContext {
    const ctx = this.#ctx;
    const learned = (conversationId: string): boolean => this.#learned.size > 0 && this.#learned.has(this.#mac(conversationId));
    return {
      ...ctx,
      capture: (input: CaptureInput): Promise<CaptureResult> => (isExcluded(input, this.#rules, learned) ? this.#exclude(input) : ctx.capture(input)),
      state: ctx.state,
      logger: ctx.logger,
      signal: ctx.signal,
    };
  }

  /** Records one `policy` record per conversation with exclusions pending, then clears them. */
  async report(): Promise<void> {
    const run = this.#chain.then(async () => {
      for (const [mac, entry] of Object.entries(this.#pending)) {
        await this.#ctx.capture({
          kind: 'policy',
          key: `policy:excluded:${mac}:${entry.first}:${entry.count}`,
          system: {
            event: 'conversation-excluded',
            fields: {
              [`conversation.${IDENTIFIER_ALGORITHM}`]: mac,
              'identifier.algorithm': IDENTIFIER_ALGORITHM,
              'identifier.key-id': entry.keyId,
              count: String(entry.count),
              from: entry.first,
              to: entry.last,
              ...(this.#version === undefined ? {} : { version: this.#version }),
            },
          },
        });
        const { [mac]: _done, ...rest } = this.#pending;
        this.#pending = rest;
        await this.#state.setJson(PENDING, this.#pending);
      }
    });
    this.#chain = run.catch(() => undefined);
    await run;
  }

  async #exclude(input: CaptureInput): Promise<CaptureResult> {
    const key = this.#key;
    if (!key) throw new ConfigError('config.policy.identifierKeyFile', 'is required to exclude anything');
    const mac = this.#mac(input.conversation?.id ?? '');
    const now = new Date().toISOString();
    const learn = input.conversation?.type === 'direct' && !this.#learned.has(mac);
    const run = this.#chain.then(async () => {
      if (learn) {
        this.#learned.add(mac);
        await this.#state.setJson(LEARNED, { keyId: key.id, hmacs: [...this.#learned] } satisfies Learned);
      }
      const entry = this.#pending[mac];
      this.#pending = { ...this.#pending, [mac]: { count: (entry?.count ?? 0) + 1, first: entry?.first ?? now, last: now, keyId: key.id } };
      await this.#state.setJson(PENDING, this.#pending);
    });
    this.#chain = run.catch(() => undefined);
    await run;
    this.excluded += 1;
    // No identifier, not even a prefix of a hash: the log says only that the policy worked.
    this.#ctx.logger.debug({ stream: this.#ctx.stream }, 'event excluded by capture policy; counted, not stored');
    return { status: 'excluded', stream: this.#ctx.stream, key: `excluded:${mac}`, seq: 0 };
  }

  #mac(conversationId: string): string {
    const key = this.#key;
    if (!key) throw new ConfigError('config.policy.identifierKeyFile', 'is required to exclude anything');
    let mac = this.#macs.get(conversationId);
    if (mac === undefined) {
      if (this.#macs.size >= 4096) this.#macs.clear();
      mac = identifierHmac(key, conversationId);
      this.#macs.set(conversationId, mac);
    }
    return mac;
  }

  /**
   * State from versions that kept plain SHA-256 hashes: each is matched against the configured
   * ids and re-keyed; a pending count whose conversation cannot be matched is recorded without
   * any identifier (its count and time span stay in the archive), a learned one is dropped.
   */
  async #convertLegacyState(): Promise<void> {
    const legacyPending = await this.#state.getJson<Record<string, Omit<PendingEntry, 'keyId'>>>(LEGACY_PENDING);
    const legacyLearned = await this.#state.getJson<string[]>(LEGACY_LEARNED);
    if (legacyPending === undefined && legacyLearned === undefined) return;
    const key = this.#key;
    const rules = this.#rules;
    const known = new Map([...rules.excludeContacts, ...rules.excludeConversations, ...(rules.onlyContacts ?? []), ...(rules.onlyConversations ?? [])].map((id) => [sha256Text(id), id]));
    for (const [hash, entry] of Object.entries(legacyPending ?? {})) {
      const id = known.get(hash);
      if (key && id !== undefined) {
        const mac = identifierHmac(key, id);
        const current = this.#pending[mac];
        this.#pending[mac] = { count: entry.count + (current?.count ?? 0), first: current && current.first < entry.first ? current.first : entry.first, last: current && current.last > entry.last ? current.last : entry.last, keyId: key.id };
        continue;
      }
      await this.#ctx.capture({
        kind: 'policy',
        key: `policy:excluded-legacy:${entry.first}:${entry.last}:${entry.count}`,
        system: { event: 'conversation-excluded', fields: { conversation: 'not recorded: counted before identifiers were keyed, and not in the policy lists now', count: String(entry.count), from: entry.first, to: entry.last, ...(this.#version === undefined ? {} : { version: this.#version }) } },
      });
    }
    for (const hash of legacyLearned ?? []) {
      const id = known.get(hash);
      if (key && id !== undefined) this.#learned.add(identifierHmac(key, id));
    }
    await this.#state.setJson(PENDING, this.#pending);
    if (key) await this.#state.setJson(LEARNED, { keyId: key.id, hmacs: [...this.#learned] } satisfies Learned);
    await this.#state.delete(LEGACY_PENDING);
    await this.#state.delete(LEGACY_LEARNED);
  }
}
