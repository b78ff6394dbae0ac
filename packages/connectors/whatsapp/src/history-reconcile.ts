/**
 * Reconciliation for WhatsApp: after a gap, ask the phone for the chats' history around it.
 *
 * WhatsApp keeps no history on its servers; the primary phone does. Baileys'
 * `fetchMessageHistory(count, oldestKey, oldestTimestampMs)` sends the phone a peer-data
 * operation (`HISTORY_SYNC_ON_DEMAND`) asking for `count` messages of one chat older than
 * `oldestKey`; the phone answers with a history-sync notification that Baileys emits as
 * `messaging-history.set` with `syncType` ON_DEMAND. The connector records those messages
 * through the normal mapping (same idempotency keys as live capture: what is archived already
 * is a duplicate, not a second record; new ones carry `meta.recoveredBy: "history-on-demand"`).
 *
 * What to ask for: a gap (today the offline count: the server announced more messages than
 * arrived) says how many were lost and when, not in which chat. Every chat that received a
 * message since the gap began is asked for the messages before its first such message (the
 * anchor), page by page until the phone's answer reaches back before the gap. A chat whose
 * only messages were lost has no anchor until its next message arrives; the gap stays pending
 * and the next attempt asks that chat too.
 *
 * Outcomes, each one `system` record pointing at the gap record's key (docs/record-schema.md):
 * `gap-backfilled` (the phone answered for every chat asked: `recorded` new records) or
 * `gap-not-recovered` (the phone did not answer within the timeout — it is offline, which is
 * common — or no chat can be asked yet). A gap not recovered stays pending for the next attempt,
 * up to {@link MAX_ATTEMPTS}.
 */
import { OffchannelError, type StateStore } from '@offchannel/core';
import { jidNormalizedUser, type BaileysEventMap, type proto, type WAMessageKey } from '@whiskeysockets/baileys';
import type { RecoveryWindow } from './raw-envelope.ts';

/** The socket call that asks the phone (Baileys' `fetchMessageHistory`; resolves with the request's message id). */
export type FetchMessageHistory = (count: number, oldestKey: WAMessageKey, oldestTimestampMs: number) => Promise<string>;

export interface ReconcileWhatsAppOptions {
  /** How long to wait for the phone's answer to one request, ms. Default 60 000. */
  readonly timeoutMs?: number;
  /** Messages asked per request (one page). Default 50. */
  readonly count?: number;
  readonly signal?: AbortSignal;
}

export interface ReconcileWhatsAppReport {
  /** Gaps pending when the run began (each one is attempted). */
  readonly gaps: number;
  /** Gaps whose every chat the phone answered for (no longer pending). */
  readonly recovered: number;
  /** Gaps still pending, with the reason of this attempt. */
  readonly notRecovered: readonly { readonly gap: string; readonly reason: string }[];
  readonly chatsAsked: number;
  readonly chatsAnswered: number;
  /** Messages the phone returned, and those of them that were not archived yet (recorded now). */
  readonly returned: number;
  readonly recorded: number;
}

/** What the reconciler records: an outcome for a gap (mapped in map-whatsapp.ts). */
export interface GapOutcome {
  readonly gap: string;
  readonly outcome: 'backfilled' | 'not-recovered';
  readonly reason?: string;
  readonly chats: number;
  readonly answered: number;
  readonly returned: number;
  readonly recorded: number;
  readonly attempt: number;
  /** Messages since the gap began in chats left unasked by the anchor limits (their chats are asked later). */
  readonly notAsked: number;
}

interface Anchor {
  readonly remoteJid: string;
  readonly fromMe: boolean;
  readonly id: string;
  readonly participant?: string;
  /** Seconds (the message's server timestamp). */
  readonly t: number;
}

interface PendingGap {
  readonly key: string;
  readonly from: string;
  readonly to: string;
  readonly missing: number;
  anchors: Record<string, Anchor>;
  attempts: number;
  /** Messages since the gap began whose chat got no anchor (limits): the gap is not complete while there are any. */
  notAsked?: number;
}

/** State key of the pending gaps. */
const STATE = 'reconcile';
/** Chats anchored per gap, gaps kept pending, pages per chat: bounds on what a hostile stream can make us hold or ask. */
const MAX_ANCHORS = 200;
/** Chats one sender (other than the custodian) can anchor per gap: no one contact takes every slot. */
const MAX_ANCHORS_PER_SENDER = 10;
const MAX_GAPS = 50;
const MAX_PAGES = 20;
/** Attempts before a gap is given up (its last `gap-not-recovered` record says so). */
export const MAX_ATTEMPTS = 10;

interface Waiter {
  readonly chat: string;
  readonly requestId: string;
  resolve(messages: readonly proto.IWebMessageInfo[]): void;
}

export class HistoryReconciler {
  readonly #state: StateStore;
  #gaps: PendingGap[] = [];
  /** Open offline window (between `offline_preview` and the count): first message per chat, and those left without one. */
  #window: { anchors: Record<string, Anchor>; notAsked?: number } | undefined;
  #waiters = new Set<Waiter>();
  /** The gap being asked about, and its new (not yet archived) messages within it, counted by the connector's mapping. */
  #current: PendingGap | undefined;
  #recovered = 0;
  #running: Promise<ReconcileWhatsAppReport> | undefined;

  private constructor(state: StateStore) {
    this.#state = state;
  }

  static async load(state: StateStore): Promise<HistoryReconciler> {
    const reconciler = new HistoryReconciler(state);
    const saved = await state.getJson<{ gaps?: PendingGap[] }>(STATE);
    if (Array.isArray(saved?.gaps)) reconciler.#gaps = saved.gaps.slice(0, MAX_GAPS);
    return reconciler;
  }

  get pending(): number {
    return this.#gaps.length;
  }

  /** The server began an offline delivery: anchor the chats that receive messages from now on. */
  openWindow(): void {
    this.#window = { anchors: {} };
  }

  /** The offline count settled: a mismatch is a gap to reconcile (`key` = the gap record's key). */
  settleWindow(gap: { readonly key: string; readonly from: string; readonly to: string; readonly missing: number } | undefined): Promise<void> | undefined {
    const window = this.#window;
    this.#window = undefined;
    if (!gap || this.#gaps.some((g) => g.key === gap.key)) return undefined;
    this.#gaps.push({ ...gap, anchors: window?.anchors ?? {}, attempts: 0, ...(window?.notAsked ? { notAsked: window.notAsked } : {}) });
    if (this.#gaps.length > MAX_GAPS) this.#gaps.shift();
    return this.#save();
  }

  /** A live or offline message (not history): the first one per chat after a gap began is its anchor. */
  seen(message: proto.IWebMessageInfo): boolean {
    if (!this.#window && this.#gaps.length === 0) return false;
    const anchor = anchorOf(message);
    if (!anchor) return false;
    const chat = chatOf(anchor.remoteJid);
    if (this.#window) addAnchor(this.#window, chat, anchor);
    let changed = false;
    for (const gap of this.#gaps) {
      if (anchor.t * 1000 < Date.parse(gap.from)) continue;
      changed = addAnchor(gap, chat, anchor) || changed;
    }
    return changed;
  }

  /**
   * An ON_DEMAND history set arrived: resolves the requests it answers — the one whose id is its
   * `peerDataRequestSessionId`, or (no such request, or no id) those for the chats it holds.
   */
  answered(history: BaileysEventMap['messaging-history.set']): void {
    const session = typeof history.peerDataRequestSessionId === 'string' ? history.peerDataRequestSessionId : undefined;
    const ofChat = (waiter: Waiter) => history.messages.filter((m) => typeof m.key?.remoteJid === 'string' && chatOf(m.key.remoteJid) === waiter.chat);
    const waiters = [...this.#waiters];
    const bySession = session === undefined ? [] : waiters.filter((w) => w.requestId === session);
    const matched = bySession.length > 0 ? bySession : waiters.filter((w) => ofChat(w).length > 0);
    for (const waiter of matched) {
      this.#waiters.delete(waiter);
      waiter.resolve(ofChat(waiter));
    }
  }

  /** The gap being asked about now: the phone's answers carry it, so the mapping can tell what falls within it. */
  get recovering(): RecoveryWindow | undefined {
    const gap = this.#current;
    return gap ? { gap: gap.key, from: gap.from, to: gap.to } : undefined;
  }

  /** The mapping saw an on-demand message within this gap that was not archived yet. */
  countRecovered(gap: string): void {
    if (gap === this.#current?.key) this.#recovered++;
  }

  save(): Promise<void> {
    return this.#save();
  }

  /**
   * One attempt at every pending gap. `settled` waits until what the phone returned is
   * archived (so the counts are final); `record` writes each gap's outcome. One run at a time.
   */
  run(fetch: FetchMessageHistory | undefined, settled: () => Promise<void>, record: (outcome: GapOutcome) => void, options: ReconcileWhatsAppOptions = {}): Promise<ReconcileWhatsAppReport> {
    this.#running ??= this.#run(fetch, settled, record, options).finally(() => {
      this.#running = undefined;
      this.#current = undefined;
    });
    return this.#running;
  }

  async #run(fetch: FetchMessageHistory | undefined, settled: () => Promise<void>, record: (outcome: GapOutcome) => void, options: ReconcileWhatsAppOptions): Promise<ReconcileWhatsAppReport> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const count = options.count ?? 50;
    const gaps = [...this.#gaps];
    const report = { gaps: gaps.length, recovered: 0, notRecovered: [] as { gap: string; reason: string }[], chatsAsked: 0, chatsAnswered: 0, returned: 0, recorded: 0 };
    for (const gap of gaps) {
      if (options.signal?.aborted) throw new OffchannelError('RECONCILE_INTERRUPTED', 'interrupted before every gap was tried: run it again (nothing is recorded twice)');
      gap.attempts++;
      const chats = Object.entries(gap.anchors);
      this.#current = gap;
      this.#recovered = 0;
      let reason: string | undefined;
      const answers = fetch === undefined ? [] : await Promise.all(chats.map(([chat, anchor]) => this.#askChat(fetch, chat, anchor, Date.parse(gap.from), count, timeoutMs, options.signal)));
      if (options.signal?.aborted) throw new OffchannelError('RECONCILE_INTERRUPTED', 'interrupted while waiting for the phone: run it again (nothing is recorded twice)');
      if (fetch === undefined) reason = 'not-connected';
      else if (chats.length === 0) reason = 'no-chat-to-ask';
      const answered = answers.filter((a) => a !== undefined);
      const returned = answered.reduce((sum, n) => sum + n, 0);
      if (!reason && answered.length === 0) reason = 'phone-did-not-answer';
      await settled();
      const recorded = this.#recovered;
      this.#current = undefined;
      report.chatsAsked += chats.length;
      report.chatsAnswered += answered.length;
      report.returned += returned;
      report.recorded += recorded;
      // Chats that answered need not be asked again; the others stay as the gap's anchors.
      gap.anchors = Object.fromEntries(chats.filter((_, i) => answers[i] === undefined));
      // Chats left without an anchor (limits) are asked next time: not complete until then.
      const notAsked = gap.notAsked ?? 0;
      delete gap.notAsked;
      const partial = answered.length < chats.length ? 'some-chats-did-not-answer' : 'some-chats-not-asked';
      const complete = reason === undefined && answered.length === chats.length && notAsked === 0;
      if (complete || gap.attempts >= MAX_ATTEMPTS) this.#gaps = this.#gaps.filter((g) => g !== gap);
      if (complete) report.recovered++;
      else report.notRecovered.push({ gap: gap.key, reason: reason ?? partial });
      const outcome = reason === undefined ? 'backfilled' : 'not-recovered';
      record({ gap: gap.key, outcome, ...(complete ? {} : { reason: reason ?? partial }), chats: chats.length, answered: answered.length, returned, recorded, attempt: gap.attempts, notAsked });
      await this.#save();
    }
    return report;
  }

  /** Pages back through one chat from its anchor; the number of messages returned, or `undefined` when the phone did not answer. */
  async #askChat(fetch: FetchMessageHistory, chat: string, anchor: Anchor, gapFrom: number, count: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<number | undefined> {
    let oldest = anchor;
    let total: number | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const messages = await this.#ask(fetch, chat, oldest, count, timeoutMs, signal);
      if (messages === undefined) return total;
      total = (total ?? 0) + messages.length;
      const older = messages.map(anchorOf).filter((a): a is Anchor => a !== undefined).sort((a, b) => a.t - b.t)[0];
      // Done: a short page (nothing older), or the answer reaches back before the gap.
      if (messages.length < count || !older || older.t * 1000 < gapFrom || older.t >= oldest.t) return total;
      oldest = older;
    }
    return total;
  }

  async #ask(fetch: FetchMessageHistory, chat: string, anchor: Anchor, count: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<readonly proto.IWebMessageInfo[] | undefined> {
    let requestId: string;
    const key: WAMessageKey = { remoteJid: anchor.remoteJid, fromMe: anchor.fromMe, id: anchor.id, ...(anchor.participant ? { participant: anchor.participant } : {}) };
    // The answer can overtake the request's promise: listen first, under a provisional id.
    let waiter: Waiter | undefined;
    const answer = new Promise<readonly proto.IWebMessageInfo[]>((resolve) => { waiter = { chat, requestId: '', resolve }; });
    const pending = waiter as unknown as Waiter;
    this.#waiters.add(pending);
    try {
      requestId = await fetch(count, key, anchor.t * 1000);
    } catch {
      this.#waiters.delete(pending);
      return undefined;
    }
    (pending as { requestId: string }).requestId = requestId;
    let timer: NodeJS.Timeout | undefined;
    const stop = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => { resolve(undefined); }, timeoutMs);
      signal?.addEventListener('abort', () => { resolve(undefined); }, { once: true });
    });
    try {
      return await Promise.race([answer, stop]);
    } finally {
      clearTimeout(timer);
      this.#waiters.delete(pending);
    }
  }

  async #save(): Promise<void> {
    await this.#state.setJson(STATE, { gaps: this.#gaps });
  }
}

/** The chat a JID belongs to, as the mapping names it (`conversation.id`). */
export function chatOf(jid: string): string {
  try {
    return jidNormalizedUser(jid) || jid;
  } catch {
    return jid;
  }
}

/** A message the phone keeps in a chat's history (not a protocol message, reaction or stub), as a request anchor. */
/** Anchors `chat` unless it has one; false (and counted) when the limits leave it without. */
function addAnchor(into: { anchors: Record<string, Anchor>; notAsked?: number }, chat: string, anchor: Anchor): boolean {
  if (into.anchors[chat]) return false;
  const anchors = Object.values(into.anchors);
  const sender = senderOf(anchor);
  const bySender = sender === undefined ? 0 : anchors.filter((a) => senderOf(a) === sender).length;
  if (anchors.length >= MAX_ANCHORS || bySender >= MAX_ANCHORS_PER_SENDER) {
    into.notAsked = (into.notAsked ?? 0) + 1;
    return true;
  }
  into.anchors[chat] = anchor;
  return true;
}

/** Who sent it, unless the custodian did (their own messages anchor any number of chats). */
function senderOf(anchor: Anchor): string | undefined {
  return anchor.fromMe ? undefined : jidNormalizedUser(anchor.participant ?? anchor.remoteJid);
}

function anchorOf(message: proto.IWebMessageInfo): Anchor | undefined {
  const key = message.key;
  const content = message.message;
  const t = Number(message.messageTimestamp ?? 0);
  if (!key?.id || typeof key.remoteJid !== 'string' || !content || !Number.isSafeInteger(t) || t <= 0) return undefined;
  if (content.protocolMessage || content.reactionMessage || (content.senderKeyDistributionMessage && !content.conversation && !content.extendedTextMessage)) return undefined;
  if (key.remoteJid === 'status@broadcast' || key.remoteJid.endsWith('@newsletter')) return undefined;
  return { remoteJid: key.remoteJid, fromMe: key.fromMe === true, id: key.id, ...(key.participant ? { participant: key.participant } : {}), t };
}
