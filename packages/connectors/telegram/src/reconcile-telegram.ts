/**
 * Reconciliation: compare each chat's recent history on Telegram with the archive and record
 * what is missing. It closes the gaps that update delivery cannot: `differenceTooLong` and
 * `channelDifferenceTooLong`, messages from before the session was linked, deletes Telegram
 * never announced.
 *
 * For each chat (the given ones, or the most recent dialogs):
 * - `messages.getHistory` (newest first, up to `limit`);
 * - a message whose `message:<peer>:<id>` key is not archived is recorded through the normal
 *   pipeline (media downloaded, raw = a one-message `messages.messages` with its users and chats,
 *   `meta.source = "messages.getHistory"`);
 * - an archived message whose content fingerprint changed is recorded as an edit;
 * - a message in our index that Telegram no longer returns is recorded as deleted
 *   (`meta.detectedBy = "reconcile"`) if it is newer than the oldest message fetched, or at all
 *   when the chat's whole history was fetched;
 * - history is paged 100 messages per request, dialogs 100 per request.
 * Records use the same idempotency keys as live capture, so running it twice adds nothing.
 */
import { OffchannelError, type ConnectorContext } from '@offchannel/core';
import { Long, PeersIndex, getMarkedPeerId, parseMarkedPeerId, type tl } from '@mtcute/core';
import type { BaseTelegramClient } from '@mtcute/core/client.js';
import { errorCode } from './error-code.ts';
import { historyEvidence } from './map-telegram.ts';
import { type MessageIndex, isChannelPeer } from './message-index.ts';

export interface ReconcileTelegramOptions {
  /** Marked peer ids to check (e.g. `"123"`, `"-4001"`, `"-1001500000001"`); default: the most recent dialogs. */
  readonly chats?: readonly string[];
  /** How many recent dialogs to check when `chats` is not given (default 50; fetched 100 per request). */
  readonly dialogs?: number;
  /** How many recent messages to compare per chat (default 100; fetched 100 per request, at most 10,000). */
  readonly limit?: number;
  /** Called after each chat (checked or skipped): counts only, never content. Must not throw. */
  readonly onProgress?: (progress: { readonly done: number; readonly total: number }) => void;
  /** Stops between chats (and between history pages); the report then says `interrupted`. */
  readonly signal?: AbortSignal;
}

export interface ReconcileTelegramReport {
  readonly chats: number;
  readonly messagesChecked: number;
  /** Messages that were not in the archive and are now. */
  readonly missingRecorded: number;
  /** Content changes found and recorded as edits. */
  readonly editsRecorded: number;
  /** Messages in our index that Telegram no longer returns, recorded as deleted. */
  readonly deletesRecorded: number;
  /** Chats that could not be read (no access hash, forbidden…), by marked id, with the error code. */
  readonly skipped: readonly { readonly chat: string; readonly code: string }[];
  /** `signal` aborted before every chat was checked: run it again to finish (nothing is recorded twice). */
  readonly interrupted: boolean;
}

/** Maps one update found by reconciliation through the live pipeline, queueing its records. */
export type ReconcileRecord = (update: tl.TypeUpdate, peers: PeersIndex, raw: Uint8Array, source: string) => Promise<void>;

/** What reconciliation needs from a running connector (kept internal to the package). */
export interface ReconcileHost {
  readonly client: BaseTelegramClient;
  /**
   * Runs `task` as one step of the connector's capture pipeline, after every update delivered
   * before it has been mapped; live updates delivered meanwhile are mapped after it (so a message
   * that arrives during a chat's check cannot look deleted). `record` maps an update there.
   * Resolves once everything the step recorded is durable, with the task's value and, per call
   * of `record` in order, how many new records it wrote.
   */
  queue<T>(task: (record: ReconcileRecord) => Promise<T>): Promise<{ readonly value: T; readonly recorded: readonly number[] }>;
  readonly ctx: ConnectorContext;
  readonly index: MessageIndex;
  /** The custodian's Telegram user id. */
  readonly selfId: number;
  encode(object: tl.TlObject): Uint8Array;
}

/** Reconciles a running MTProto connector (see {@link ReconcileTelegramOptions}). */
export async function reconcileTelegram(connector: { reconcile(options?: ReconcileTelegramOptions): Promise<ReconcileTelegramReport> }, options: ReconcileTelegramOptions = {}): Promise<ReconcileTelegramReport> {
  return connector.reconcile(options);
}

const PAGE = 100;
/** Dialogs loaded (once per run) to learn the access hash of a chat named by id but not cached. */
const PEER_LOOKUP_DIALOGS = 1000;
const MAX_LIMIT = 10_000;

export async function runReconcile(host: ReconcileHost, options: ReconcileTelegramOptions): Promise<ReconcileTelegramReport> {
  const limit = Math.min(MAX_LIMIT, Math.max(1, Math.floor(options.limit ?? PAGE)));
  const chats = options.chats ?? (await recentDialogs(host.client, Math.max(1, Math.floor(options.dialogs ?? 50))));
  const report = { chats: chats.length, messagesChecked: 0, missingRecorded: 0, editsRecorded: 0, deletesRecorded: 0, skipped: [] as { chat: string; code: string }[], interrupted: false };
  let dialogsLoaded = options.chats === undefined;
  for (const [index, chat] of chats.entries()) {
    if (options.signal?.aborted === true) {
      report.interrupted = true;
      break;
    }
    let skipped = await checkChat(host, chat, limit, options.signal, report);
    if (skipped === 'PEER_NOT_CACHED' && !dialogsLoaded) {
      // A chat named by id that this session has not seen yet: its access hash comes with the
      // dialog list (the client caches the peers of every answer). Load it once, then retry.
      dialogsLoaded = true;
      await recentDialogs(host.client, PEER_LOOKUP_DIALOGS).catch(() => undefined);
      skipped = await checkChat(host, chat, limit, options.signal, report);
    }
    if (skipped) report.skipped.push({ chat, code: skipped });
    options.onProgress?.({ done: index + 1, total: chats.length });
  }
  // Aborted while the last chats were being checked: they may be partly done.
  if (options.signal?.aborted === true) report.interrupted = true;
  return report;
}

/** What each `record` call of a chat's check was for: counted once its records are durable. */
type Finding = 'missing' | 'edit' | 'delete';

/** Checks one chat as one pipeline step; resolves to the error code when it could not be read. */
async function checkChat(host: ReconcileHost, chat: string, limit: number, signal: AbortSignal | undefined, report: Counts): Promise<string | undefined> {
  const findings: Finding[] = [];
  const { value, recorded } = await host.queue((record) => reconcileOne(host, chat, limit, signal, report, async (finding, ...args) => {
    findings.push(finding);
    await record(...args);
  }));
  for (const [index, finding] of findings.entries()) {
    const count = recorded[index] ?? 0;
    if (finding === 'delete') report.deletesRecorded += count;
    else if (count > 0) report[finding === 'missing' ? 'missingRecorded' : 'editsRecorded']++;
  }
  return value;
}

type RecordFinding = (finding: Finding, ...args: Parameters<ReconcileRecord>) => Promise<void>;

/** Checks one chat; resolves to the error code when it could not be read. */
async function reconcileOne(host: ReconcileHost, chat: string, limit: number, signal: AbortSignal | undefined, report: Counts, record: RecordFinding): Promise<string | undefined> {
  const marked = Number(chat);
  const input = Number.isSafeInteger(marked) ? await host.client.storage.peers.getById(marked) : null;
  if (!input) return 'PEER_NOT_CACHED';
  let fetched: Awaited<ReturnType<typeof history>>;
  try {
    fetched = await history(host.client, input, limit, signal);
  } catch (error) {
    return errorCode(error);
  }
  await reconcileChat(host, chat, fetched.pages, fetched.complete, report, signal, record);
  return undefined;
}

interface Counts {
  messagesChecked: number;
  missingRecorded: number;
  editsRecorded: number;
  deletesRecorded: number;
}

interface HistoryPage {
  readonly result: tl.messages.RawMessages | tl.messages.RawMessagesSlice | tl.messages.RawChannelMessages;
  readonly peers: PeersIndex;
}

/**
 * Newest page first, `limit` messages at most, 100 per request (`offsetId` = the oldest id
 * seen). `complete` when the chat's whole history came back (nothing older exists).
 */
async function history(client: BaseTelegramClient, peer: tl.TypeInputPeer, limit: number, signal: AbortSignal | undefined): Promise<{ pages: HistoryPage[]; complete: boolean }> {
  const pages: HistoryPage[] = [];
  let offsetId = 0;
  let fetched = 0;
  while (fetched < limit && signal?.aborted !== true) {
    const result = await client.call({ _: 'messages.getHistory', peer, offsetId, offsetDate: 0, addOffset: 0, limit: Math.min(PAGE, limit - fetched), maxId: 0, minId: 0, hash: Long.ZERO });
    if (result._ === 'messages.messagesNotModified') break;
    pages.push({ result, peers: PeersIndex.from(result) });
    fetched += result.messages.length;
    if (result._ === 'messages.messages') return { pages, complete: true };
    // A slice's `count` is the chat's total, unless Telegram flags it inexact.
    const counted = result.inexact !== true && fetched >= result.count;
    if (result.messages.length === 0 || counted) return { pages, complete: counted };
    const oldest = Math.min(...result.messages.map((message) => message.id));
    if (offsetId !== 0 && oldest >= offsetId) break; // no progress: stop rather than loop
    offsetId = oldest;
  }
  return { pages, complete: false };
}

async function reconcileChat(host: ReconcileHost, chat: string, pages: readonly HistoryPage[], complete: boolean, report: Counts, signal: AbortSignal | undefined, record: RecordFinding): Promise<void> {
  const present = new Set<number>();
  // Oldest page first, oldest message first: records appear in the order the chat had them.
  for (const { result, peers } of [...pages].reverse()) {
    for (const message of [...result.messages].reverse()) {
      // Stopping: leave the rest for the next run (a half-checked chat detects no deletes).
      if (signal?.aborted === true) return;
      if (message._ === 'messageEmpty' || String(getMarkedPeerId(message.peerId)) !== chat) continue;
      present.add(message.id);
      report.messagesChecked++;
      const key = message._ === 'messageService' ? `membership:${chat}:${message.id}` : `message:${chat}:${message.id}`;
      const archived = (await host.ctx.lookup(key)) !== undefined;
      const raw = historyEvidence(message, peers, host.selfId);
      const channel = message.peerId._ === 'peerChannel';
      if (!archived) {
        const update: tl.TypeUpdate = channel ? { _: 'updateNewChannelMessage', message, pts: 0, ptsCount: 0 } : { _: 'updateNewMessage', message, pts: 0, ptsCount: 0 };
        await record('missing', update, peers, raw, 'messages.getHistory');
      } else if (message._ === 'message' && message.editDate !== undefined) {
        const update: tl.TypeUpdate = channel ? { _: 'updateEditChannelMessage', message, pts: 0, ptsCount: 0 } : { _: 'updateEditMessage', message, pts: 0, ptsCount: 0 };
        await record('edit', update, peers, raw, 'messages.getHistory');
      }
    }
  }
  // Deletes nobody told us about: indexed ids that the fetched window covers and that are gone.
  // The window starts at the newest message (anything indexed was handled before this fetch, so
  // existed on Telegram) and reaches back to the oldest one fetched — or, in a private chat or
  // basic group whose whole history came back, to its start. Not for supergroups and channels:
  // their older history can be hidden from a member (rejoined, history hidden from new
  // members) without being deleted.
  const newest = pages[0];
  const channel = isChannelPeer(chat);
  const whole = complete && !channel;
  if (!newest || (present.size === 0 && !whole)) return;
  const from = whole ? 0 : Math.min(...present);
  const gone = host.index.idsFor(chat).filter((id) => id >= from && !present.has(id));
  if (gone.length === 0) return;
  const update: tl.TypeUpdate = channel
    ? { _: 'updateDeleteChannelMessages', channelId: parseMarkedPeerId(Number(chat))[1], messages: gone, pts: 0, ptsCount: 0 }
    : { _: 'updateDeleteMessages', messages: gone, pts: 0, ptsCount: 0 };
  // The evidence for a delete found this way is the newest history page that no longer holds it.
  await record('delete', update, newest.peers, host.encode(newest.result), 'reconcile');
}

/** The `count` most recent dialogs, newest first, 100 per request (Telegram's offset paging). */
async function recentDialogs(client: BaseTelegramClient, count: number): Promise<string[]> {
  const chats: string[] = [];
  const seen = new Set<string>();
  let offset: { date: number; id: number; peer: tl.TypeInputPeer } = { date: 0, id: 0, peer: { _: 'inputPeerEmpty' } };
  while (chats.length < count) {
    const result = await client.call({ _: 'messages.getDialogs', offsetDate: offset.date, offsetId: offset.id, offsetPeer: offset.peer, limit: Math.min(PAGE, count - chats.length), hash: Long.ZERO });
    if (result._ === 'messages.dialogsNotModified') throw new OffchannelError('TELEGRAM_RECONCILE_FAILED', 'Telegram returned no dialog list; pass the chats to reconcile explicitly.');
    const dialogs = result.dialogs.filter((dialog): dialog is tl.RawDialog => dialog._ === 'dialog');
    let added = 0;
    for (const dialog of dialogs) {
      const id = String(getMarkedPeerId(dialog.peer));
      if (seen.has(id)) continue;
      seen.add(id);
      chats.push(id);
      added++;
    }
    const last = dialogs.at(-1);
    const top = last && result.messages.find((message): message is tl.RawMessage | tl.RawMessageService => message._ !== 'messageEmpty' && message.id === last.topMessage && getMarkedPeerId(message.peerId) === getMarkedPeerId(last.peer));
    if (result._ === 'messages.dialogs' || added === 0 || !last || !top) break;
    offset = { date: top.date, id: top.id, peer: (await client.storage.peers.getById(getMarkedPeerId(last.peer))) ?? { _: 'inputPeerEmpty' } };
  }
  return chats.slice(0, count);
}
