/**
 * Reconciliation: compare each chat's recent history on Telegram with the archive and record
 * what is missing. It closes the gaps that update delivery cannot: `differenceTooLong` and
 * `channelDifferenceTooLong`, messages from before the session was linked, deletes Telegram
 * never announced.
 *
 * For each chat (the given ones, or the most recent dialogs):
 * - `messages.getHistory` (newest first, up to `limit`);
 * - a message whose `message:<peer>:<id>` key is not archived is recorded through the normal
 *   pipeline (media downloaded, raw = the message's own TL bytes, `meta.source =
 *   "messages.getHistory"`);
 * - an archived message whose content fingerprint changed is recorded as an edit;
 * - a message in our index, inside the fetched id range, that Telegram no longer returns is
 *   recorded as deleted (`meta.detectedBy = "reconcile"`).
 * Records use the same idempotency keys as live capture, so running it twice adds nothing.
 */
import { OffchannelError, type ConnectorContext } from '@offchannel/core';
import { Long, PeersIndex, getMarkedPeerId, type tl } from '@mtcute/core';
import type { BaseTelegramClient } from '@mtcute/core/client.js';
import { errorCode } from './error-code.ts';
import type { MessageIndex } from './message-index.ts';

export interface ReconcileTelegramOptions {
  /** Marked peer ids to check (e.g. `"123"`, `"-4001"`, `"-1001500000001"`); default: the most recent dialogs. */
  readonly chats?: readonly string[];
  /** How many recent dialogs to check when `chats` is not given (default 50). */
  readonly dialogs?: number;
  /** How many recent messages to compare per chat (default 100, at most 100 per request). */
  readonly limit?: number;
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
}

/** What reconciliation needs from a running connector (kept internal to the package). */
export interface ReconcileHost {
  readonly client: BaseTelegramClient;
  readonly ctx: ConnectorContext;
  readonly index: MessageIndex;
  /** Runs one update through the live pipeline; resolves to the number of records written. */
  handle(update: tl.TypeUpdate, peers: PeersIndex, raw: Uint8Array, source: string): Promise<number>;
  encode(object: tl.TlObject): Uint8Array;
}

/** Reconciles a running MTProto connector (see {@link ReconcileTelegramOptions}). */
export async function reconcileTelegram(connector: { reconcile(options?: ReconcileTelegramOptions): Promise<ReconcileTelegramReport> }, options: ReconcileTelegramOptions = {}): Promise<ReconcileTelegramReport> {
  return connector.reconcile(options);
}

export async function runReconcile(host: ReconcileHost, options: ReconcileTelegramOptions): Promise<ReconcileTelegramReport> {
  const limit = Math.min(100, Math.max(1, options.limit ?? 100));
  const chats = options.chats ?? (await recentDialogs(host.client, options.dialogs ?? 50));
  const report = { chats: chats.length, messagesChecked: 0, missingRecorded: 0, editsRecorded: 0, deletesRecorded: 0, skipped: [] as { chat: string; code: string }[] };
  for (const chat of chats) {
    const marked = Number(chat);
    const input = Number.isSafeInteger(marked) ? await host.client.storage.peers.getById(marked) : null;
    if (!input) {
      report.skipped.push({ chat, code: 'PEER_NOT_CACHED' });
      continue;
    }
    let history: tl.messages.TypeMessages;
    try {
      history = await host.client.call({ _: 'messages.getHistory', peer: input, offsetId: 0, offsetDate: 0, addOffset: 0, limit, maxId: 0, minId: 0, hash: Long.ZERO });
    } catch (error) {
      report.skipped.push({ chat, code: errorCode(error) });
      continue;
    }
    if (history._ === 'messages.messagesNotModified') continue;
    const peers = PeersIndex.from(history);
    const present = new Set<number>();
    for (const message of [...history.messages].reverse()) {
      if (message._ === 'messageEmpty' || String(getMarkedPeerId(message.peerId)) !== chat) continue;
      present.add(message.id);
      report.messagesChecked++;
      const archived = (await host.ctx.lookup(`message:${chat}:${message.id}`)) !== undefined;
      const raw = host.encode(message);
      const channel = message.peerId._ === 'peerChannel';
      if (!archived) {
        const update: tl.TypeUpdate = channel ? { _: 'updateNewChannelMessage', message, pts: 0, ptsCount: 0 } : { _: 'updateNewMessage', message, pts: 0, ptsCount: 0 };
        if ((await host.handle(update, peers, raw, 'messages.getHistory')) > 0) report.missingRecorded++;
      } else if (message._ === 'message' && message.editDate !== undefined) {
        const update: tl.TypeUpdate = channel ? { _: 'updateEditChannelMessage', message, pts: 0, ptsCount: 0 } : { _: 'updateEditMessage', message, pts: 0, ptsCount: 0 };
        if ((await host.handle(update, peers, raw, 'messages.getHistory')) > 0) report.editsRecorded++;
      }
    }
    // Deletes nobody told us about: indexed ids inside the returned window that are gone.
    if (present.size === 0) continue;
    const oldest = Math.min(...present);
    const newest = Math.max(...present);
    const gone = host.index.idsFor(chat).filter((id) => id >= oldest && id <= newest && !present.has(id));
    if (gone.length > 0) {
      const update: tl.TypeUpdate = chat.startsWith('-100')
        ? { _: 'updateDeleteChannelMessages', channelId: Number(chat.slice(4)), messages: gone, pts: 0, ptsCount: 0 }
        : { _: 'updateDeleteMessages', messages: gone, pts: 0, ptsCount: 0 };
      report.deletesRecorded += await host.handle(update, peers, host.encode(history), 'reconcile');
    }
  }
  return report;
}

async function recentDialogs(client: BaseTelegramClient, count: number): Promise<string[]> {
  const result = await client.call({ _: 'messages.getDialogs', offsetDate: 0, offsetId: 0, offsetPeer: { _: 'inputPeerEmpty' }, limit: Math.min(100, Math.max(1, count)), hash: Long.ZERO });
  if (result._ === 'messages.dialogsNotModified') throw new OffchannelError('TELEGRAM_RECONCILE_FAILED', 'Telegram returned no dialog list; pass the chats to reconcile explicitly.');
  return result.dialogs.filter((dialog): dialog is tl.RawDialog => dialog._ === 'dialog').map((dialog) => String(getMarkedPeerId(dialog.peer)));
}
