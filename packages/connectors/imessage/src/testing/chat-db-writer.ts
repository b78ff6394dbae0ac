/**
 * Writes to a fixture chat.db the way Messages does: one transaction per event, rows shaped
 * as on a real Mac (attributedBody typedstreams, message_summary_info binary plists,
 * nanosecond dates). Runs inside the fixture writer process, never in the relay's process.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import { encodeBplist } from '../bplist/bplist-writer.ts';
import type { PlistDict, PlistValue } from '../bplist/bplist-reader.ts';
import { parseBplist } from '../bplist/bplist-reader.ts';
import { encodeAttributedBody, type WritableRun } from '../typedstream/typedstream-writer.ts';
import { unixMsToAppleNs } from '../apple-time.ts';

/** One scripted event, as sent to the writer process. */
export type WriterOp =
  | { op: 'message'; fromMe: boolean; peer?: string; chat?: string; text: string; bodyOnly?: boolean; emptyText?: boolean; bodyBase64?: string; service?: string; replyTo?: string; mention?: string; attachment?: { name: string; mime: string; filename?: string } }
  | { op: 'edit'; guid: string; text: string }
  | { op: 'unsend'; guid: string; legacy?: boolean }
  | { op: 'tapback'; target: string; type: number; fromMe: boolean; peer?: string; chat?: string }
  | { op: 'complete-transfer'; attachment: string; base64: string }
  | { op: 'group'; name: string; members: string[] }
  | { op: 'rename'; chat: string; name: string; peer: string }
  | { op: 'delivered'; guid: string }
  | { op: 'checkpoint' };

/** What an op reports back: the GUIDs it created or changed. */
export interface WriterResult {
  readonly guid?: string;
  readonly attachment?: string;
  readonly chat?: string;
  /** For an edit: the new version's index in the `ec` history (1 for the first edit). */
  readonly version?: number;
}

const PART = '__kIMMessagePartAttributeName';

/** Applies ops to a writable chat.db connection. */
export class ChatDbWriter {
  readonly #db: DatabaseSync;
  readonly #self: string;
  readonly #attachmentsDir: string;

  constructor(db: DatabaseSync, self: string, attachmentsDir: string) {
    this.#db = db;
    this.#self = self;
    this.#attachmentsDir = attachmentsDir;
  }

  apply(op: WriterOp): WriterResult {
    if (op.op === 'checkpoint') {
      this.#db.exec('PRAGMA wal_checkpoint(TRUNCATE)'); // as Messages does: the WAL file is emptied
      return {};
    }
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const result = this.#apply(op);
      this.#db.exec('COMMIT');
      return result;
    } catch (error) {
      this.#db.exec('ROLLBACK');
      throw error;
    }
  }

  #apply(op: WriterOp): WriterResult {
    switch (op.op) {
      case 'message':
        return this.#message(op);
      case 'edit':
        return this.#edit(op.guid, op.text);
      case 'unsend':
        return this.#unsend(op.guid, op.legacy ?? false);
      case 'tapback': {
        const chat = this.#chatFor(op.chat, op.peer);
        const handle = op.peer ? this.#handle(op.peer, 'iMessage') : 0;
        const guid = this.#insertMessage({ is_from_me: op.fromMe ? 1 : 0, handle_id: op.fromMe && !op.peer ? 0 : handle, associated_message_guid: `p:0/${op.target}`, associated_message_type: op.type, attributedBody: encodeAttributedBody('Reacted to a message') }, chat);
        return { guid, chat: this.#chatGuid(chat) };
      }
      case 'complete-transfer': {
        const row = this.#db.prepare('SELECT filename FROM attachment WHERE guid = ?').get(op.attachment);
        if (!row) throw new Error('no such attachment');
        const stored = String(row['filename']);
        const prefix = '~/Library/Messages/Attachments/';
        // A hostile name (tests set their own) gets no file: the test decides what is on disk there.
        if (stored.startsWith(prefix) && !stored.split('/').includes('..')) {
          const file = path.join(this.#attachmentsDir, stored.slice(prefix.length));
          mkdirSync(path.dirname(file), { recursive: true });
          writeFileSync(file, Buffer.from(op.base64, 'base64'));
        }
        this.#db.prepare('UPDATE attachment SET transfer_state = 5, total_bytes = ? WHERE guid = ?').run(Buffer.from(op.base64, 'base64').length, op.attachment);
        return { attachment: op.attachment };
      }
      case 'group': {
        const guid = `iMessage;+;chat${randomUUID().replaceAll('-', '').slice(0, 18)}`;
        const chat = this.#run('INSERT INTO chat (guid, style, chat_identifier, service_name, room_name, display_name) VALUES (?, 43, ?, ?, ?, ?)', guid, guid.slice(11), 'iMessage', guid.slice(11), op.name);
        for (const member of op.members) this.#run('INSERT INTO chat_handle_join (chat_id, handle_id) VALUES (?, ?)', chat, this.#handle(member, 'iMessage'));
        return { chat: guid };
      }
      case 'rename': {
        const chat = this.#chatFor(op.chat, undefined);
        this.#run('UPDATE chat SET display_name = ? WHERE ROWID = ?', op.name, chat);
        const guid = this.#insertMessage({ item_type: 2, group_title: op.name, handle_id: this.#handle(op.peer, 'iMessage') }, chat);
        return { guid };
      }
      case 'delivered':
        this.#run('UPDATE message SET is_delivered = 1, date_delivered = ? WHERE guid = ?', now(), op.guid);
        return { guid: op.guid };
      case 'checkpoint':
        return {};
    }
  }

  #message(op: Extract<WriterOp, { op: 'message' }>): WriterResult {
    const service = op.service ?? 'iMessage';
    const chat = this.#chatFor(op.chat, op.peer, service);
    const runs: WritableRun[] = [];
    let text = op.text;
    let attachmentGuid: string | undefined;
    if (op.attachment) {
      attachmentGuid = randomUUID().toUpperCase();
      runs.push({ length: 1, attributes: { [PART]: 0, __kIMFileTransferGUIDAttributeName: `at_0_${attachmentGuid}`, __kIMFilenameAttributeName: op.attachment.name } });
      text = `\uFFFC${op.text}`;
      if (op.text) runs.push({ length: op.text.length, attributes: { [PART]: 1 } });
    } else if (op.mention) {
      const at = text.indexOf('@');
      runs.push({ length: at, attributes: { [PART]: 0 } }, { length: text.length - at, attributes: { [PART]: 0, __kIMMentionConfirmedMention: op.mention } });
    } else if (text.length > 0) {
      runs.push({ length: text.length, attributes: { [PART]: 0 } });
    }
    const body = op.bodyBase64 === undefined ? encodeAttributedBody(text, { runs }) : Buffer.from(op.bodyBase64, 'base64');
    const guid = this.#insertMessage(
      {
        text: op.emptyText ? '' : op.bodyOnly || op.bodyBase64 !== undefined ? null : text,
        attributedBody: body,
        service,
        is_from_me: op.fromMe ? 1 : 0,
        handle_id: op.peer ? this.#handle(op.peer, service) : 0,
        thread_originator_guid: op.replyTo ?? null,
        thread_originator_part: op.replyTo ? '0:0:1' : null,
        cache_has_attachments: op.attachment ? 1 : 0,
      },
      chat,
    );
    if (attachmentGuid && op.attachment) {
      const filename = op.attachment.filename ?? `~/Library/Messages/Attachments/${attachmentGuid.slice(0, 2).toLowerCase()}/00/${attachmentGuid}/${op.attachment.name}`;
      const attachment = this.#run('INSERT INTO attachment (guid, original_guid, created_date, filename, mime_type, transfer_state, transfer_name) VALUES (?, ?, ?, ?, ?, 0, ?)', attachmentGuid, attachmentGuid, now(), filename, op.attachment.mime, op.attachment.name);
      const message = this.#db.prepare('SELECT ROWID FROM message WHERE guid = ?').get(guid)?.['ROWID'] as SQLInputValue;
      this.#run('INSERT INTO message_attachment_join (message_id, attachment_id) VALUES (?, ?)', message, attachment);
    }
    return { guid, chat: this.#chatGuid(chat), ...(attachmentGuid ? { attachment: attachmentGuid } : {}) };
  }

  /** An edit rewrites the row and appends to `ec` in message_summary_info: entry 0 is the original. */
  #edit(guid: string, text: string): WriterResult {
    const row = this.#row(guid);
    const summary = row['message_summary_info'] instanceof Uint8Array ? (parseBplist(row['message_summary_info']) as PlistDict) : {};
    const body = encodeAttributedBody(text);
    const earlier = (summary['ec'] as PlistDict | undefined)?.['0'] as readonly PlistValue[] | undefined;
    const history: PlistValue[] = [...(earlier ?? [{ d: seconds(row['date'] as bigint), t: row['attributedBody'] as Uint8Array }])];
    history.push({ d: Date.now() / 1000 - 978_307_200, t: body });
    const info: PlistDict = { amc: 0, ec: { 0: history }, ep: [0], otr: { 0: { lo: 0, le: text.length } }, ust: true };
    this.#run('UPDATE message SET text = NULL, attributedBody = ?, date_edited = ?, message_summary_info = ? WHERE guid = ?', body, now(), encodeBplist(info), guid);
    return { guid, version: history.length - 1 };
  }

  /** macOS 26: stamps date_edited, clears the body, lists the part in `rp`. Older: date_retracted. */
  #unsend(guid: string, legacy: boolean): WriterResult {
    const row = this.#row(guid);
    const length = typeof row['text'] === 'string' ? row['text'].length : 1;
    const info = encodeBplist({ amc: 0, otr: { 0: { lo: 0, le: length } }, rp: [0], ust: true });
    if (legacy) this.#run('UPDATE message SET date_retracted = ? WHERE guid = ?', now(), guid);
    else this.#run('UPDATE message SET text = NULL, attributedBody = NULL, date_edited = ?, part_count = 0, message_summary_info = ? WHERE guid = ?', now(), info, guid);
    return { guid };
  }

  #insertMessage(columns: Record<string, SQLInputValue>, chat: number | bigint): string {
    const guid = randomUUID().toUpperCase();
    const all: Record<string, SQLInputValue> = { guid, date: now(), service: 'iMessage', account: `E:${this.#self}`, destination_caller_id: this.#self, is_sent: 1, is_finished: 1, ...columns };
    if (this.#has('part_count')) all['part_count'] = 1;
    const names = Object.keys(all);
    const rowid = this.#run(`INSERT INTO message (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})`, ...Object.values(all));
    this.#run('INSERT INTO chat_message_join (chat_id, message_id, message_date) VALUES (?, ?, ?)', chat, rowid, all['date'] as bigint);
    return guid;
  }

  #chatFor(chatGuid: string | undefined, peer: string | undefined, service = 'iMessage'): number | bigint {
    if (chatGuid) {
      const row = this.#db.prepare('SELECT ROWID FROM chat WHERE guid = ?').get(chatGuid);
      if (!row) throw new Error('no such chat');
      return row['ROWID'] as number | bigint;
    }
    if (!peer) throw new Error('a message needs a chat or a peer');
    const guid = `${service};-;${peer}`;
    const row = this.#db.prepare('SELECT ROWID FROM chat WHERE guid = ?').get(guid);
    if (row) return row['ROWID'] as number | bigint;
    const chat = this.#run('INSERT INTO chat (guid, style, chat_identifier, service_name) VALUES (?, 45, ?, ?)', guid, peer, service);
    this.#run('INSERT INTO chat_handle_join (chat_id, handle_id) VALUES (?, ?)', chat, this.#handle(peer, service));
    return chat;
  }

  #chatGuid(chat: number | bigint): string {
    return String(this.#db.prepare('SELECT guid FROM chat WHERE ROWID = ?').get(chat)?.['guid']);
  }

  #handle(id: string, service: string): number | bigint {
    const row = this.#db.prepare('SELECT ROWID FROM handle WHERE id = ? AND service = ?').get(id, service);
    return row ? (row['ROWID'] as number | bigint) : this.#run('INSERT INTO handle (id, service, uncanonicalized_id) VALUES (?, ?, ?)', id, service, id);
  }

  #row(guid: string): Record<string, SQLInputValue> {
    const row = this.#db.prepare('SELECT * FROM message WHERE guid = ?').get(guid);
    if (!row) throw new Error('no such message');
    return row;
  }

  #has(column: string): boolean {
    return this.#db.prepare('PRAGMA table_info(message)').all().some((c) => c['name'] === column);
  }

  #run(sql: string, ...params: SQLInputValue[]): number | bigint {
    return this.#db.prepare(sql).run(...params).lastInsertRowid;
  }
}

function now(): bigint {
  return unixMsToAppleNs(Date.now());
}

function seconds(date: bigint): number {
  return Number(date) / 1e9;
}
