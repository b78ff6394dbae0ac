/**
 * Edits a fixture chat.db the way restores and syncs leave real ones: rows that appear below the
 * relay's cursor, where reading forward never finds them. Each change is one transaction, so a
 * running relay never sees a half-made row.
 */
import { randomUUID } from 'node:crypto';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import { encodeBplist } from '../bplist/bplist-writer.ts';

/** Moves the row `guid` to the ROWID of the row `replacing`, which is deleted. */
export function moveBelowCursor(file: string, guid: string, replacing: string): void {
  transaction(file, (sql) => {
    const from = rowidOf(sql, guid);
    const to = rowidOf(sql, replacing);
    sql.prepare('DELETE FROM chat_message_join WHERE message_id = ?').run(to);
    sql.prepare('DELETE FROM message WHERE ROWID = ?').run(to);
    sql.prepare('UPDATE message SET ROWID = ? WHERE ROWID = ?').run(to, from);
    sql.prepare('UPDATE chat_message_join SET message_id = ? WHERE message_id = ?').run(to, from);
  });
}

/**
 * Writes, at the ROWID of the row `replacing` (deleted), a copy of row `template` that was
 * unsent before anything read it (as Messages leaves it: no text, no body, `rp` in the summary).
 * Returns the new row's GUID.
 */
export function plantUnsentRow(file: string, template: string, replacing: string): string {
  const guid = randomUUID().toUpperCase();
  const info = encodeBplist({ amc: 0, otr: { 0: { lo: 0, le: 5 } }, rp: [0], ust: true });
  transaction(file, (sql) => {
    const from = rowidOf(sql, template);
    const to = rowidOf(sql, replacing);
    sql.prepare('DELETE FROM chat_message_join WHERE message_id = ?').run(to);
    sql.prepare('DELETE FROM message WHERE ROWID = ?').run(to);
    const columns = sql.prepare('PRAGMA table_info(message)').all().map((row) => `"${String(row['name'])}"`).filter((name) => name !== '"ROWID"' && name !== '"guid"');
    sql.prepare(`INSERT INTO message (ROWID, guid, ${columns.join(', ')}) SELECT ?, ?, ${columns.join(', ')} FROM message WHERE ROWID = ?`).run(to, guid, from);
    const set: Record<string, SQLInputValue> = { text: null, attributedBody: null, message_summary_info: info };
    for (const [name, value] of Object.entries(set)) sql.prepare(`UPDATE message SET "${name}" = ? WHERE ROWID = ?`).run(value, to);
    sql.prepare('UPDATE message SET date_edited = date + 1, part_count = 0 WHERE ROWID = ?').run(to);
    sql.prepare('INSERT INTO chat_message_join (chat_id, message_id, message_date) SELECT chat_id, ?, message_date FROM chat_message_join WHERE message_id = ?').run(to, from);
  });
  return guid;
}

function rowidOf(sql: DatabaseSync, guid: string): number | bigint {
  const found = sql.prepare('SELECT ROWID AS r FROM message WHERE guid = ?').get(guid)?.['r'];
  if (typeof found !== 'number' && typeof found !== 'bigint') throw new Error('no such row in the fixture chat.db');
  return found;
}

function transaction(file: string, change: (sql: DatabaseSync) => void): void {
  const sql = new DatabaseSync(file, { enableForeignKeyConstraints: false, timeout: 10_000 });
  try {
    sql.exec('BEGIN IMMEDIATE');
    change(sql);
    sql.exec('COMMIT');
  } finally {
    sql.close();
  }
}
