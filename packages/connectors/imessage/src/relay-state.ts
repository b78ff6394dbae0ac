/**
 * What the relay keeps in `ctx.state` (encrypted, per stream): its acknowledgements to itself.
 * Every field advances only after the records it covers are durable.
 */
import { OffchannelError } from '@offchannel/core';
import type { ChatDb } from './chat-db/chat-db.ts';

/** State-store name of the relay's cursor. */
export const STATE_NAME = 'imessage-cursor';

/**
 * The saved cursor (BigInts as decimal strings): the last message ROWID and chat ROWID
 * recorded, the edit/unsend marks of the last full sweep, and attachments still transferring.
 */
export interface SavedState {
  readonly v: 1;
  rowid: string;
  chatRowid: string;
  edited: string;
  retracted: string;
  pending: { rowid: string; attachment: string }[];
  /** Rows at or below this ROWID are out of the sweep's scope (history skipped by `startAt: "now"`). Absent: 0. */
  sweepFrom?: string;
}

/** The saved cursor, checked: a damaged one stops the relay rather than silently restarting from 0. */
export function checkState(value: unknown): SavedState | undefined {
  if (value === undefined) return undefined;
  const state = value as Partial<SavedState>;
  const decimal = (field: unknown): boolean => typeof field === 'string' && /^\d{1,20}$/.test(field);
  const ok = state.v === 1 && [state.rowid, state.chatRowid, state.edited, state.retracted].every(decimal) && Array.isArray(state.pending) && state.pending.every((entry) => decimal(entry.rowid) && typeof entry.attachment === 'string') && (state.sweepFrom === undefined || decimal(state.sweepFrom));
  if (!ok) throw new OffchannelError('STATE_INVALID', `the saved iMessage cursor (${STATE_NAME}) is damaged; restore it from backup, or delete it to re-read chat.db from the start (records already archived are kept once by their keys)`);
  return state as SavedState;
}

/** The state of a first start: from the beginning of chat.db, or from what is in it now. */
export function initialState(db: ChatDb, startAt: 'beginning' | 'now'): SavedState {
  if (startAt === 'beginning') return { v: 1, rowid: '0', chatRowid: '0', edited: '0', retracted: '0', pending: [] };
  const max = db.maxRowId();
  const marks = db.changeMarks(max);
  return { v: 1, rowid: max.toString(), chatRowid: db.maxChatRowId().toString(), edited: marks.edited.toString(), retracted: marks.retracted.toString(), pending: [], sweepFrom: max.toString() };
}
