/**
 * The capture policy: which conversations of an account are out of scope (personal contacts),
 * applied between a connector and the recorder.
 *
 * - A conversation is **excluded** when its id is in `exclude.conversations`; or it is a direct
 *   conversation whose id, or whose other party's id or aliases, is in `exclude.contacts` (a
 *   direct conversation is learned from the contact's first inbound message in it, and
 *   remembered — as a hash — so the custodian's own replies there are excluded too; list the
 *   conversation id as well to exclude it before the contact writes); or an `only` list is set
 *   and it matches neither `only.conversations` nor (direct) `only.contacts`.
 * - An excluded conversation's events (messages, edits, reactions…) are **not stored**. Instead
 *   the runner counts them per conversation and records a `policy` record
 *   (`system.event: "conversation-excluded"`) holding only the SHA-256 of the conversation id
 *   (`printf %s '<id>' | sha256sum` matches it to the policy entry), the count, and the policy
 *   version — no content, no participants. Pending counts are kept in the encrypted state store,
 *   so a crash does not lose them; they are recorded every `reportEveryMs` and on stop.
 * - Events without a conversation (account events, gaps, undecryptable envelopes without one)
 *   are always stored: an exclusion must never hide a problem.
 * - On start, a `policy` record (`system.event: "capture-policy"`) states the version and the
 *   hashed exclusion lists in force; it is recorded again only when they change.
 */
import { createHash } from 'node:crypto';
import type { CaptureInput, CaptureResult, ConnectorContext, StateStore } from '@offchannel/core';
import type { PolicyRules } from './capture-config.ts';

const PENDING = 'pending-exclusions';
const LEARNED = 'excluded-direct-conversations';

interface Pending {
  [conversationSha256: string]: { count: number; first: string; last: string };
}

export function sha256Text(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * True when `input` belongs to a conversation the policy keeps out of the archive.
 * `learned` holds SHA-256 hashes of direct conversations already matched to an excluded contact.
 */
export function isExcluded(input: CaptureInput, rules: PolicyRules, learned: ReadonlySet<string> = new Set()): boolean {
  const conversation = input.conversation;
  if (!conversation) return false;
  const direct = conversation.type === 'direct';
  if (direct && learned.has(sha256Text(conversation.id))) return true;
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

export class CapturePolicy {
  readonly #ctx: ConnectorContext;
  readonly #rules: PolicyRules;
  readonly #version: string | undefined;
  readonly #state: StateStore;
  #pending: Pending = {};
  #learned = new Set<string>();
  #chain: Promise<unknown> = Promise.resolve();
  excluded = 0;

  constructor(ctx: ConnectorContext, rules: PolicyRules, version: string | undefined) {
    this.#ctx = ctx;
    this.#rules = rules;
    this.#version = version;
    this.#state = ctx.state.scope('offchannel-policy');
  }

  get active(): boolean {
    const rules = this.#rules;
    return rules.excludeContacts.length + rules.excludeConversations.length > 0 || rules.onlyContacts !== undefined || rules.onlyConversations !== undefined;
  }

  /** Records the policy in force (once per distinct policy) and any counts a previous run left pending. */
  async start(): Promise<void> {
    this.#pending = (await this.#state.getJson<Pending>(PENDING)) ?? {};
    this.#learned = new Set((await this.#state.getJson<string[]>(LEARNED)) ?? []);
    if (this.#version !== undefined) {
      const rules = this.#rules;
      const fields: Record<string, string> = {
        version: this.#version,
        'exclude.contacts.sha256': rules.excludeContacts.map(sha256Text).join(','),
        'exclude.conversations.sha256': rules.excludeConversations.map(sha256Text).join(','),
      };
      if (rules.onlyContacts !== undefined) fields['only.contacts.sha256'] = rules.onlyContacts.map(sha256Text).join(',');
      if (rules.onlyConversations !== undefined) fields['only.conversations.sha256'] = (rules.onlyConversations ?? []).map(sha256Text).join(',');
      const clean = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== ''));
      await this.#ctx.capture({ kind: 'policy', key: `policy:in-force:${sha256Text(JSON.stringify(clean))}`, system: { event: 'capture-policy', fields: clean } });
    }
    await this.report();
  }

  /** The connector context with the policy applied to `capture`. */
  wrap(): ConnectorContext {
    const ctx = this.#ctx;
    return {
      ...ctx,
      capture: (input: CaptureInput): Promise<CaptureResult> => (isExcluded(input, this.#rules, this.#learned) ? this.#exclude(input) : ctx.capture(input)),
      state: ctx.state,
      logger: ctx.logger,
      signal: ctx.signal,
    };
  }

  /** Records one `policy` record per conversation with exclusions pending, then clears them. */
  async report(): Promise<void> {
    const run = this.#chain.then(async () => {
      for (const [hash, entry] of Object.entries(this.#pending)) {
        await this.#ctx.capture({
          kind: 'policy',
          key: `policy:excluded:${hash}:${entry.first}:${entry.count}`,
          system: { event: 'conversation-excluded', fields: { 'conversation.sha256': hash, count: String(entry.count), from: entry.first, to: entry.last, ...(this.#version === undefined ? {} : { version: this.#version }) } },
        });
        const { [hash]: _done, ...rest } = this.#pending;
        this.#pending = rest;
        await this.#state.setJson(PENDING, this.#pending);
      }
    });
    this.#chain = run.catch(() => undefined);
    await run;
  }

  async #exclude(input: CaptureInput): Promise<CaptureResult> {
    const conversationId = input.conversation?.id ?? '';
    const hash = sha256Text(conversationId);
    const now = new Date().toISOString();
    const learn = input.conversation?.type === 'direct' && !this.#learned.has(hash);
    const run = this.#chain.then(async () => {
      if (learn) {
        this.#learned.add(hash);
        await this.#state.setJson(LEARNED, [...this.#learned]);
      }
      const entry = this.#pending[hash];
      this.#pending = { ...this.#pending, [hash]: { count: (entry?.count ?? 0) + 1, first: entry?.first ?? now, last: now } };
      await this.#state.setJson(PENDING, this.#pending);
    });
    this.#chain = run.catch(() => undefined);
    await run;
    this.excluded += 1;
    this.#ctx.logger.debug({ conversation: hash.slice(0, 12) }, 'event excluded by capture policy; counted, not stored');
    return { status: 'excluded', stream: this.#ctx.stream, key: `excluded:${hash}`, seq: 0 };
  }
}
