/**
 * Read-only access to chat.db through `node:sqlite` (no native build). The database is opened
 * in place, read-only, never copied and never with `immutable=1`, so SQLite reads the WAL
 * like Messages does. Whole rows (a record's evidence) are read in short read transactions — a
 * batch of new rows ({@link ChatDb.readBatch}), one row and its joined rows ({@link ChatDb.bundle}),
 * one joined row — other queries are single autocommit statements; no read transaction stays
 * open to hold back Messages' checkpoints. Integers come back as BigInt (dates exceed 2^53).
 *
 * The message table's columns are discovered with `PRAGMA table_info` at open and again whenever
 * Messages changes the schema while the relay runs (each read transaction checks
 * `schema_version` first): they differ by macOS version and by upgrade history, so optional
 * columns are only used when present.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { ChatDbError } from '../errors.ts';

/** A column value as node:sqlite returns it with BigInt reads. */
export type SqlValue = null | bigint | number | string | Uint8Array;
/** One row, columns in the table's order. */
export type SqlRow = Readonly<Record<string, SqlValue>>;

/** A message row with the rows it joins to: everything the mapping needs. */
export interface RowBundle {
  readonly message: SqlRow;
  /** `handle` row of `message.handle_id` (the sender of an incoming message). */
  readonly handle?: SqlRow;
  /** The chat the message belongs to (lowest chat ROWID when several). */
  readonly chat?: SqlRow;
  /** `handle` row of `message.other_handle` (group membership events). */
  readonly otherHandle?: SqlRow;
  readonly attachments: readonly SqlRow[];
}

/** The per-row state the sweep compares between ticks. */
export interface RowFingerprint {
  readonly rowid: bigint;
  readonly guid: string;
  readonly fingerprint: string;
}

const REQUIRED_TABLES = ['message', 'handle', 'chat', 'chat_message_join', 'chat_handle_join', 'attachment', 'message_attachment_join'];
/** Columns whose changes mean an edit, unsend, receipt or attachment progress. */
const CHANGE_COLUMNS = ['date_edited', 'date_retracted', 'date_delivered', 'date_read', 'part_count'];

/** A read-only connection to chat.db. */
export class ChatDb {
  readonly #db: DatabaseSync;
  #columns: ReadonlySet<string>;
  readonly #hasSequence: boolean;
  /** `message` columns as this Mac's schema has them, quoted, for every SELECT of a full row. */
  #messageColumns: string;
  readonly #statements = new Map<string, StatementSync>();
  /** Whole-row statements (a row's evidence) read as arrays, with the shape their rows are built from. */
  readonly #rowStatements = new Map<string, { readonly statement: StatementSync; readonly shape: RowShape | undefined }>();
  #closed = false;
  /** Inside a read transaction whose schema {@link #startReading} checked. */
  #reading = false;
  #schemaVersion: SqlValue | undefined;

  private constructor(db: DatabaseSync, columns: ReadonlySet<string>, hasSequence: boolean) {
    this.#db = db;
    this.#columns = columns;
    this.#messageColumns = selectList(columns);
    this.#hasSequence = hasSequence;
  }

  /** Opens chat.db read-only. Throws {@link ChatDbError} when it cannot (missing Full Disk Access, wrong path). */
  static open(path: string): ChatDb {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path, { readOnly: true, timeout: 5000 });
    } catch (error) {
      throw new ChatDbError('CHAT_DB_UNAVAILABLE', 'cannot open chat.db read-only: check the path and that the process running the relay has Full Disk Access (see the @offchannel/imessage README)', { cause: error });
    }
    try {
      const tables = new Set(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((row) => String(row['name'])));
      const missing = REQUIRED_TABLES.filter((table) => !tables.has(table));
      if (missing.length > 0) throw new ChatDbError('CHAT_DB_UNSUPPORTED', `not a Messages database: missing tables ${missing.join(', ')}`);
      return new ChatDb(db, messageColumns(db), tables.has('sqlite_sequence'));
    } catch (error) {
      db.close();
      if (error instanceof ChatDbError) throw error;
      throw new ChatDbError('CHAT_DB_UNAVAILABLE', 'cannot read chat.db: check Full Disk Access', { cause: error });
    }
  }

  /** True when the message table has this column on this Mac. */
  has(column: string): boolean {
    return this.#columns.has(column);
  }

  /** Changes whenever another connection (Messages) commits. One cheap pragma. */
  dataVersion(): bigint {
    return this.#get('PRAGMA data_version')['data_version'] as bigint;
  }

  /** The largest message ROWID that exists. */
  maxRowId(): bigint {
    return (this.#get('SELECT COALESCE(MAX(ROWID), 0) AS m FROM message')['m'] as bigint | null) ?? 0n;
  }

  /**
   * The largest message ROWID ever handed out (AUTOINCREMENT's `sqlite_sequence`), which only
   * goes down when the database itself is replaced; MAX(ROWID) when there is no sequence row.
   */
  highestRowIdEver(): bigint {
    const seq = this.#hasSequence ? this.#get("SELECT seq FROM sqlite_sequence WHERE name = 'message'")['seq'] : undefined;
    return typeof seq === 'bigint' ? seq : this.maxRowId();
  }

  /** Message rows after `cursor`, oldest first. */
  rowsAfter(cursor: bigint, limit: number): SqlRow[] {
    return this.#rows(`SELECT ${this.#messageColumns} FROM message WHERE ROWID > ? ORDER BY ROWID LIMIT ?`, cursor, BigInt(limit));
  }

  /** ROWIDs and GUIDs of message rows in (`after`, `upto`], oldest first (the sweep's scan: the primary key only). */
  guidsBetween(after: bigint, upto: bigint, limit: number): { rowid: bigint; guid: string }[] {
    return this.#all('SELECT ROWID AS rowid, guid FROM message WHERE ROWID > ? AND ROWID <= ? ORDER BY ROWID LIMIT ?', after, upto, BigInt(limit)).map((row) => ({ rowid: row['rowid'] as bigint, guid: String(row['guid']) }));
  }

  /** The row with this ROWID, with its joined rows, or `undefined` when it is gone. */
  bundle(rowid: bigint): RowBundle | undefined {
    return this.#read(() => {
      const message = this.#rows(`SELECT ${this.#messageColumns} FROM message WHERE ROWID = ?`, rowid)[0];
      return message === undefined ? undefined : this.bundleOf(message);
    });
  }

  /** One row's joined rows, a query each (what {@link readBatch} does per batch). */
  bundleOf(message: SqlRow): RowBundle {
    const rowid = message['ROWID'] as bigint;
    const handle = this.handle(message['handle_id']);
    const chat = this.#rows('SELECT c.* FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id WHERE j.message_id = ? ORDER BY c.ROWID LIMIT 1', rowid)[0];
    const otherHandle = this.has('other_handle') ? this.handle(message['other_handle']) : undefined;
    const attachments = this.#rows('SELECT a.* FROM message_attachment_join j JOIN attachment a ON a.ROWID = j.attachment_id WHERE j.message_id = ? ORDER BY a.ROWID', rowid);
    return bundleFrom(message, handle, chat, otherHandle, attachments);
  }

  handle(rowid: SqlValue | undefined): SqlRow | undefined {
    if (typeof rowid !== 'bigint' || rowid <= 0n) return undefined;
    return this.#rows('SELECT * FROM handle WHERE ROWID = ?', rowid)[0];
  }

  /** The largest chat ROWID. */
  maxChatRowId(): bigint {
    return (this.#get('SELECT COALESCE(MAX(ROWID), 0) AS m FROM chat')['m'] as bigint | null) ?? 0n;
  }

  /** Chats after `cursor`, oldest first. */
  chatsAfter(cursor: bigint): SqlRow[] {
    return this.#all('SELECT * FROM chat WHERE ROWID > ? ORDER BY ROWID LIMIT 500', cursor);
  }

  /** Handles of a chat's members. */
  members(chatRowid: bigint): SqlRow[] {
    return this.#all('SELECT h.* FROM chat_handle_join j JOIN handle h ON h.ROWID = j.handle_id WHERE j.chat_id = ? ORDER BY h.ROWID', chatRowid);
  }

  /**
   * Fingerprints of rows up to `maxRowid` sent after `sinceDate` (uses the `date` index), or,
   * with `marks`, of rows edited or retracted after those marks (a full scan, run rarely).
   */
  fingerprints(maxRowid: bigint, window: { readonly sinceDate: bigint } | { readonly editedAfter: bigint; readonly retractedAfter: bigint }): RowFingerprint[] {
    const select = `${this.#fingerprintSelect()} WHERE m.ROWID <= ?`;
    let rows: SqlRow[];
    if ('sinceDate' in window) {
      rows = this.#all(`${select} AND m.date > ?`, maxRowid, window.sinceDate);
    } else {
      const edited = this.has('date_edited') ? 'COALESCE(m.date_edited, 0) > ?' : '0 AND ? IS NULL';
      const retracted = this.has('date_retracted') ? 'COALESCE(m.date_retracted, 0) > ?' : '0 AND ? IS NULL';
      rows = this.#all(`${select} AND ((${edited}) OR (${retracted}))`, maxRowid, window.editedAfter, window.retractedAfter);
    }
    return rows.map((row) => ({ rowid: row['rowid'] as bigint, guid: String(row['guid']), fingerprint: String(row['fingerprint']) }));
  }

  /**
   * The next message rows after `cursor` with their joined rows and fingerprints, read in one
   * read transaction: each fingerprint is of exactly the row state read. The joined rows are
   * the ones {@link bundleOf} reads, fetched per batch instead of per row (the first import's
   * hot path): one query for the chat joins of the ROWID range, one for its attachment joins,
   * and each handle, chat and attachment row read once per batch.
   */
  readBatch(cursor: bigint, limit: number): { readonly bundles: RowBundle[]; readonly fingerprints: ReadonlyMap<string, string> } {
    return this.#read(() => {
      const messages = this.rowsAfter(cursor, limit);
      const last = messages.at(-1)?.['ROWID'];
      if (typeof last !== 'bigint') return { bundles: [], fingerprints: new Map<string, string>() };
      const bundles = this.#bundlesOf(messages, cursor, last);
      const rows = this.#all(`${this.#fingerprintSelect()} WHERE m.ROWID > ? AND m.ROWID <= ?`, cursor, last);
      return { bundles, fingerprints: new Map(rows.map((row) => [String(row['guid']), String(row['fingerprint'])])) };
    });
  }

  /** {@link bundleOf} for every message row with a ROWID in (`after`, `upto`], inside the caller's read transaction. */
  #bundlesOf(messages: readonly SqlRow[], after: bigint, upto: bigint): RowBundle[] {
    // Keyed by the decimal ROWID: the join tables' message_id compares with ROWIDs as SQLite
    // compares them, whatever JS type a value comes back as.
    const chatOf = new Map<string, bigint>();
    for (const row of this.#all('SELECT j.message_id AS m, MIN(c.ROWID) AS c FROM chat_message_join j JOIN chat c ON c.ROWID = j.chat_id WHERE j.message_id > ? AND j.message_id <= ? GROUP BY j.message_id', after, upto)) {
      chatOf.set(String(row['m']), row['c'] as bigint);
    }
    const attachmentsOf = new Map<string, bigint[]>();
    for (const row of this.#all('SELECT j.message_id AS m, a.ROWID AS a FROM message_attachment_join j JOIN attachment a ON a.ROWID = j.attachment_id WHERE j.message_id > ? AND j.message_id <= ? ORDER BY j.message_id, a.ROWID', after, upto)) {
      const key = String(row['m']);
      const list = attachmentsOf.get(key);
      if (list === undefined) attachmentsOf.set(key, [row['a'] as bigint]);
      else list.push(row['a'] as bigint);
    }
    const handles = new Map<bigint, SqlRow | undefined>();
    const handle = (rowid: SqlValue | undefined): SqlRow | undefined => {
      if (typeof rowid !== 'bigint' || rowid <= 0n) return undefined;
      if (!handles.has(rowid)) handles.set(rowid, this.handle(rowid));
      return handles.get(rowid);
    };
    const chats = new Map<bigint, SqlRow | undefined>();
    const attachments = new Map<bigint, SqlRow | undefined>();
    const hasOther = this.has('other_handle');
    return messages.map((message) => {
      const key = String(message['ROWID']);
      const chatRowid = chatOf.get(key);
      let chat: SqlRow | undefined;
      if (chatRowid !== undefined) {
        if (!chats.has(chatRowid)) chats.set(chatRowid, this.#rows('SELECT * FROM chat WHERE ROWID = ?', chatRowid)[0]);
        chat = chats.get(chatRowid);
      }
      const rows: SqlRow[] = [];
      for (const rowid of attachmentsOf.get(key) ?? []) {
        if (!attachments.has(rowid)) attachments.set(rowid, this.#rows('SELECT * FROM attachment WHERE ROWID = ?', rowid)[0]);
        const row = attachments.get(rowid);
        if (row !== undefined) rows.push(row);
      }
      return bundleFrom(message, handle(message['handle_id']), chat, hasOther ? handle(message['other_handle']) : undefined, rows);
    });
  }

  #fingerprintSelect(): string {
    const parts = CHANGE_COLUMNS.filter((c) => this.has(c)).map((c) => `COALESCE(m.${c}, 0)`);
    if (this.has('message_summary_info')) parts.push("COALESCE(hex(substr(m.message_summary_info, -64)) || length(m.message_summary_info), '')");
    parts.push("(SELECT COALESCE(group_concat(a.ROWID || ':' || COALESCE(a.transfer_state, ''), ','), '') FROM message_attachment_join j JOIN attachment a ON a.ROWID = j.attachment_id WHERE j.message_id = m.ROWID)");
    return `SELECT m.ROWID AS rowid, m.guid AS guid, ${parts.join(" || '|' || ")} AS fingerprint FROM message m`;
  }

  /** The largest `date_edited` and `date_retracted` among rows up to `maxRowid`. */
  changeMarks(maxRowid: bigint): { edited: bigint; retracted: bigint } {
    const edited = this.has('date_edited') ? 'COALESCE(MAX(date_edited), 0)' : '0';
    const retracted = this.has('date_retracted') ? 'COALESCE(MAX(date_retracted), 0)' : '0';
    const row = this.#get(`SELECT ${edited} AS e, ${retracted} AS r FROM message WHERE ROWID <= ?`, maxRowid);
    return { edited: typeof row['e'] === 'bigint' ? row['e'] : 0n, retracted: typeof row['r'] === 'bigint' ? row['r'] : 0n };
  }

  /** The attachment row with this GUID, or `undefined`. */
  attachment(guid: string): SqlRow | undefined {
    return this.#all('SELECT * FROM attachment WHERE guid = ?', guid)[0];
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  #all(sql: string, ...params: (bigint | string)[]): SqlRow[] {
    return this.#statement(sql).all(...params);
  }

  /**
   * Whole rows — message, handle, chat, attachment: every record's evidence, and the first import
   * reads 100,000s — read as arrays and built into objects of one shape per statement, which V8
   * keeps in fast mode, where node:sqlite's own row objects (a message row has ~95 columns) are
   * hash tables: slower to build, to read by name and to walk in the raw-row encoder. Same columns,
   * same order, same values: the same rows and the same raw bytes.
   */
  #rows(sql: string, ...params: bigint[]): SqlRow[] {
    return this.#read(() => this.#rowsNow(sql, params));
  }

  /**
   * Runs `read` in one read transaction (or in the one already open): every query in it sees
   * one snapshot, the schema checked first. The transaction is ended however `read` ends; a
   * failure to end it never hides `read`'s own error.
   */
  #read<T>(read: () => T): T {
    if (this.#reading) return read();
    this.#db.exec('BEGIN');
    try {
      this.#startReading();
      return read();
    } finally {
      this.#reading = false;
      try {
        this.#db.exec('COMMIT');
      } catch {
        try {
          this.#db.exec('ROLLBACK'); // SQLite may have ended it already (an I/O error)
        } catch {
          // None open: nothing to end.
        }
      }
    }
  }

  /**
   * Called first in each read transaction. Row shapes hold a statement's column names, but
   * SQLite re-prepares a statement after a schema change and `SELECT *` then returns the
   * table's new columns (Messages migrates chat.db after an OS update, while the relay runs):
   * when `schema_version` moved, the message table's columns are read again and the statements
   * and their shapes made again.
   */
  #startReading(): void {
    const version = this.#statement('PRAGMA schema_version').get()?.['schema_version'];
    if (version !== this.#schemaVersion) {
      if (this.#schemaVersion !== undefined) {
        // A statement reading a table makes this connection load the new schema (PRAGMA
        // schema_version reads the file's counter, not the schema); then the columns.
        this.#db.prepare('SELECT 1 FROM message LIMIT 1').all();
        this.#columns = messageColumns(this.#db);
        this.#messageColumns = selectList(this.#columns);
        this.#statements.clear();
      }
      this.#rowStatements.clear();
      this.#schemaVersion = version;
    }
    this.#reading = true;
  }

  #rowsNow(sql: string, params: readonly bigint[]): SqlRow[] {
    let entry = this.#rowStatements.get(sql);
    if (entry === undefined) {
      const statement = this.#db.prepare(sql);
      statement.setReadBigInts(true);
      // Node 22.13–22.15 has neither: node:sqlite's own rows there, the same rows, only slower.
      const arrays = typeof statement.setReturnArrays === 'function' && typeof statement.columns === 'function';
      if (arrays) statement.setReturnArrays(true);
      entry = { statement, shape: arrays ? rowShape(statement.columns().map((column) => column.name)) : undefined };
      this.#rowStatements.set(sql, entry);
    }
    const { statement, shape } = entry;
    if (shape === undefined) return statement.all(...params);
    return (statement.all(...params) as unknown as SqlValue[][]).map((values) => rowOf(shape, values));
  }

  #get(sql: string, ...params: (bigint | string)[]): Record<string, SqlValue> {
    return (this.#statement(sql).get(...params) ?? {});
  }

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      statement.setReadBigInts(true); // per statement: works on every Node with node:sqlite
      this.#statements.set(sql, statement);
    }
    return statement;
  }
}

/** The message table's columns (`ROWID` first); throws when one the relay needs is missing. */
function messageColumns(db: DatabaseSync): ReadonlySet<string> {
  const columns = new Set(['ROWID', ...db.prepare('PRAGMA table_info(message)').all().map((row) => String(row['name']))]);
  for (const column of ['guid', 'date', 'is_from_me', 'handle_id']) {
    if (!columns.has(column)) throw new ChatDbError('CHAT_DB_UNSUPPORTED', `message table has no ${column} column`);
  }
  return columns;
}

/** The SELECT list of a whole message row. `ROWID AS "ROWID"`: an undeclared ROWID would be named `rowid`. */
function selectList(columns: ReadonlySet<string>): string {
  return [...columns].map((name) => (name === 'ROWID' ? 'ROWID AS "ROWID"' : `"${name.replaceAll('"', '""')}"`)).join(', ');
}

/** The columns of a statement's rows, and an object with every one of them (null) to copy per row. */
interface RowShape {
  readonly names: readonly string[];
  readonly template: Readonly<Record<string, null>>;
}

function rowShape(names: readonly string[]): RowShape {
  // JSON.parse builds the template in V8's fast mode, keys in the order an object of these
  // columns has them (as node:sqlite's rows do), `__proto__` an own column like any other;
  // spreading it copies that shape.
  return { names, template: JSON.parse(JSON.stringify(Object.fromEntries(names.map((name) => [name, null])))) as Record<string, null> };
}

/**
 * One row as an object of its statement's shape. Unlike node:sqlite's rows its prototype is
 * Object.prototype (a null prototype would cost V8's fast mode): rows are read by column name,
 * their columns walked as own keys only (the raw-row encoder uses `Object.keys`), and no column
 * the relay reads is named like an Object.prototype member.
 */
function rowOf(shape: RowShape, values: readonly SqlValue[]): SqlRow {
  const row: Record<string, SqlValue> = { ...shape.template };
  const { names } = shape;
  for (let index = 0; index < names.length; index++) row[names[index] as string] = values[index] as SqlValue;
  return row;
}

function bundleFrom(message: SqlRow, handle: SqlRow | undefined, chat: SqlRow | undefined, otherHandle: SqlRow | undefined, attachments: SqlRow[]): RowBundle {
  return { message, attachments, ...(handle ? { handle } : {}), ...(chat ? { chat } : {}), ...(otherHandle ? { otherHandle } : {}) };
}
