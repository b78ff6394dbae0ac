/**
 * What a witness remembers: for each log (origin), the size and root of the latest checkpoint
 * it cosigned. Two copies, written in this order before any cosignature is returned:
 *
 * 1. the journal — one line `<sha256(origin) hex> <size> <base64 root>` appended and fsync'd
 *    for every cosigned checkpoint that grew a log (witness-journal.ts). Append-only, never
 *    rewritten: it is the witness's high-water mark. Keep it on media the operator never
 *    restores from backup (`--journal`, e.g. a separate disk or a file with `chattr +a`);
 * 2. `logs/<sha256(origin) hex>` — `<origin>\n<size>\n<base64 root>\n`, replaced atomically
 *    (temporary file, fsync, rename, fsync directory).
 *
 * On start the witness takes, per log, the larger of the two. So a state folder restored from
 * an old copy cannot roll a log back while the journal is kept, and a crash between the two
 * writes loses nothing (the journal already has the line).
 *
 * Start-up does not read the whole journal: `journal.snapshot` (witness-snapshot.ts) holds each
 * log's highest journal line up to a byte offset, and only the journal after it is read. It is
 * rewritten once the journal has grown by as many bytes as the snapshot holds (at least 64 KiB)
 * since the last one, and at start when the journal had grown, so a start reads O(logs) bytes,
 * never O(cosignatures). A snapshot that is missing, damaged or not from this journal (it checks
 * the journal's bytes at both ends of its offset) is ignored: the journal is read whole — a chunk
 * at a time, memory per log — and a new snapshot written. An authenticated snapshot's marks (its
 * HMAC is keyed from this witness's key) still count as a lower bound, as the `logs/` files do:
 * they are sizes this witness cosigned; an unauthenticated one counts for nothing.
 *
 * One witness process per state folder: it holds an exclusive SQLite (POSIX advisory) lock on
 * `<state>/lock` while open — two processes answering for one state could each advance a log
 * from the same size. The kernel releases the lock however the process ends (core's
 * `takeOsLock`, shared with the fs sink's stream writers and delivery targets).
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstat, fsync, open as openFd, write } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { type OsLock, OffchannelError, OsLockError, WitnessError, readSmallFile, takeOsLock } from '@offchannel/core';
import { type JournalMark, journalLength, journalLine, journalWindows, scanJournal } from './witness-journal.ts';
import { type JournalSnapshot, type SnapshotKey, readSnapshot, writeSnapshot } from './witness-snapshot.ts';

/** Most refused-checkpoint evidence files kept (the key holder could otherwise fill the disk). */
const MAX_EVIDENCE = 1000;
/** The journal grows by at least this much between two snapshots. */
const MIN_SNAPSHOT_INTERVAL = 64 * 1024;

/** The latest cosigned checkpoint of one log. */
export interface LogHead {
  readonly origin: string;
  readonly size: number;
  readonly root: Uint8Array;
}

/** How the last start read the journal. */
export interface WitnessStartup {
  /** `used`: only the journal after the snapshot was read; otherwise it was read whole. */
  readonly snapshot: 'used' | 'none' | 'mismatch' | 'unusable' | 'ignored';
  /** Why the snapshot was not used (`mismatch`, `unusable`). */
  readonly reason?: string;
  /** Journal bytes read. */
  readonly journalBytesRead: number;
  /**
   * Logs (origin, or `sha256(origin)` hex when no `logs/` file names it) whose mark an
   * authenticated snapshot that did not match the journal raised above what the journal holds.
   */
  readonly raised?: readonly string[];
}

/** How to open the witness's state. */
export interface WitnessStateOptions {
  /** Authenticates `journal.snapshot`: derived from the witness's signing key (SnapshotKey.fromCosigner). */
  readonly key: SnapshotKey;
  /** The journal (default `<state>/journal`). */
  readonly journal?: string | undefined;
  /**
   * Called once if a journal write fails after bytes may have reached it: the state then refuses
   * every further advance, and the process should stop (a restart cuts a torn line).
   */
  readonly onBroken?: ((error: WitnessError) => void) | undefined;
  /**
   * Read the journal whole (and check every line) even if the snapshot matches; an authentic
   * snapshot still counts as a lower bound.
   */
  readonly readWholeJournal?: boolean | undefined;
  /** Called when a snapshot write while serving fails (the next start reads a longer tail). */
  readonly onSnapshotError?: ((error: unknown) => void) | undefined;
}

/** How the journal is kept open for appending: never through a link, never waiting on a FIFO. */
const APPEND_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);
/** A new temporary file, never through a link, never waiting on a FIFO. */
const TEMPORARY_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);
const openAsync = promisify(openFd);
const fstatAsync = promisify(fstat);
const fsyncAsync = promisify(fsync);
const writeAsync = promisify(write);

/** Largest per-log state file read: an origin line, a size and a root. */
const MAX_LOG_STATE_BYTES = 64 * 1024;

interface PendingLine {
  readonly id: string;
  readonly mark: JournalMark;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** The witness's persistent state. */
export class WitnessState {
  readonly #dir: string;
  readonly #journal: string;
  readonly #key: SnapshotKey;
  readonly #onBroken: ((error: WitnessError) => void) | undefined;
  readonly #onSnapshotError: ((error: unknown) => void) | undefined;
  readonly #readWhole: boolean;
  /** The journal, open for appending from start to close; its device and inode. */
  #fd: number | undefined;
  #file: { readonly dev: number; readonly ino: number } | undefined;
  readonly #heads = new Map<string, LogHead>();
  /** The journal's (and the snapshot's) highest mark per origin id: what the next snapshot holds. */
  readonly #marks = new Map<string, JournalMark>();
  /** Journal high-water marks for logs not (yet) in `logs/` (origin unknown until it is sent again). */
  readonly #journalOnly = new Map<string, JournalMark>();
  /** Offset after the last line this process knows complete and durable; `#marks` covers `[0, #journalEnd)`. */
  #journalEnd = 0;
  /** Lines waiting for the next journal write (one write and one fsync for all of them). */
  #pending: PendingLine[] = [];
  #writing = false;
  /** Set when a journal write failed: what is on disk past `#journalEnd` is unknown until a restart. */
  #broken: WitnessError | undefined;
  #snapshotOffset = -1;
  #snapshotBytes = 0;
  #snapshotting = false;
  #startup: WitnessStartup = { snapshot: 'none', journalBytesRead: 0 };
  #snapshotError: unknown;
  /** Set once the start is done: later snapshot failures are reported through onSnapshotError. */
  #serving = false;

  #lock: OsLock | undefined;
  /** `close()` was called: no new advance starts; the last one in flight releases the state. */
  #closing = false;
  /** Advances started and not yet finished (journal line, log file, snapshot). */
  #inFlight = 0;
  /** Resolves once the journal is closed and the folder's lock released. */
  readonly #released: Promise<void>;
  #release!: () => void;

  private constructor(dir: string, journal: string, options: WitnessStateOptions) {
    this.#dir = dir;
    this.#journal = journal;
    this.#key = options.key;
    this.#onBroken = options.onBroken;
    this.#released = new Promise((resolve) => {
      this.#release = resolve;
    });
    this.#onSnapshotError = options.onSnapshotError;
    this.#readWhole = options.readWholeJournal ?? false;
  }

  /** Opens (creating if needed, mode 0700) the state folder and the journal, and locks the folder. */
  static async open(dir: string, options: WitnessStateOptions): Promise<WitnessState> {
    await mkdir(path.join(dir, 'logs'), { recursive: true, mode: 0o700 });
    const journal = options.journal ?? path.join(dir, 'journal');
    const state = new WitnessState(dir, journal, options);
    try {
      state.#lock = takeOsLock(path.join(dir, 'lock'));
    } catch (error) {
      if (OffchannelError.hasCode(error, 'OS_LOCK_HELD')) {
        throw new WitnessError('WITNESS_STATE', `another witness process holds the state folder ${dir}; one witness per state folder — stop the other one first`, { cause: error });
      }
      const problem = error instanceof OsLockError ? error.problem : 'cannot be taken';
      if (OffchannelError.hasCode(error, 'OS_LOCK_REFUSED')) {
        throw new WitnessError('WITNESS_STATE', `the witness's lock ${path.join(dir, 'lock')} ${problem}; it is an empty regular file the witness creates: remove it if no witness runs`, { cause: error });
      }
      throw new WitnessError('WITNESS_STATE', `cannot take the witness's lock ${path.join(dir, 'lock')}: it ${problem}; check the state folder (permissions, free space, open files) — do not remove the lock while a witness may run`, { cause: error });
    }
    try {
      // The journal must not be the lock under another name: opening and closing it in this
      // process would drop the lock (POSIX locks are per process and file). Looked at, not opened.
      const [named, held] = await Promise.all([lstat(journal).catch(() => undefined), lstat(path.join(dir, 'lock'))]);
      if (named !== undefined && named.dev === held.dev && named.ino === held.ino) {
        throw new WitnessError('WITNESS_STATE', `the witness journal ${journal} is the state folder's lock ${path.join(dir, 'lock')} (the same file); give --journal a file of its own`);
      }
      await state.#load();
    } catch (error) {
      state.close();
      throw error;
    }
    return state;
  }

  /**
   * Keeps a refused checkpoint that a trusted key signed but that contradicts what this witness
   * cosigned — the log's own signed evidence that it forked — as
   * `evidence/<sha256(origin)>.<size>.<sha256(note) hex, 16>.note` (0600, write-once, at most
   * MAX_EVIDENCE files). Best effort: never fails the request.
   */
  async keepEvidence(origin: string, size: number, note: string): Promise<void> {
    const dir = path.join(this.#dir, 'evidence');
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      if ((await readdir(dir)).length >= MAX_EVIDENCE) return;
      const name = `${originId(origin)}.${size}.${createHash('sha256').update(note).digest('hex').slice(0, 16)}.note`;
      const file = await open(path.join(dir, name), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        await file.write(note);
        await file.sync();
      } finally {
        await file.close();
      }
    } catch {
      // Already kept, or the disk refuses: the refusal itself stands either way.
    }
  }

  /**
   * Closes the journal and releases the state folder's lock — at once when no advance is in
   * flight, else when the last one has finished: its write and fsync still use the descriptor
   * (closed under them, the number could be reused by another file and the line land there), and
   * its log file and snapshot are written while this process still holds the folder. Advances
   * asked for after this are refused. `closed()` resolves when it is done.
   */
  close(): void {
    this.#closing = true;
    if (this.#inFlight === 0) this.#closeNow();
  }

  /** Resolves once `close()` has closed the journal and released the folder's lock. */
  closed(): Promise<void> {
    return this.#released;
  }

  #closeNow(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    this.#lock?.release();
    this.#lock = undefined;
    this.#release();
  }

  /** Why the latest snapshot write failed, if it did (the next start then reads a longer tail). */
  get snapshotError(): unknown {
    return this.#snapshotError;
  }

  /** How this state's start read the journal. */
  get startup(): WitnessStartup {
    return this.#startup;
  }

  /** The latest cosigned head of `origin`, if any. */
  head(origin: string): LogHead | undefined {
    const head = this.#heads.get(origin);
    // The journal's mark counts even if the log's file was not written after it (a failed write).
    const mark = this.#marks.get(originId(origin));
    if (mark && (!head || mark.size > head.size)) return { origin, size: mark.size, root: new Uint8Array(Buffer.from(mark.root, 'base64')) };
    return head;
  }

  /** How many logs the witness knows. */
  get logCount(): number {
    return this.#heads.size + this.#journalOnly.size;
  }

  /**
   * Records `head` as cosigned: journal line first, then the log's file. Resolves when both are
   * durable; then writes a snapshot if one is due (its failure does not fail the cosignature:
   * the journal has the line, and the next start reads a longer tail).
   */
  async advance(head: LogHead): Promise<void> {
    if (this.#closing) throw new WitnessError('WITNESS_STATE', 'the witness is stopping: the checkpoint was not cosigned; send it again once it has restarted');
    this.#inFlight++;
    try {
      await this.#advance(head);
    } finally {
      this.#inFlight--;
      if (this.#closing && this.#inFlight === 0) this.#closeNow();
    }
  }

  async #advance(head: LogHead): Promise<void> {
    const id = originId(head.origin);
    const root = Buffer.from(head.root).toString('base64');
    await this.#append(id, { size: head.size, root });
    // Durable in the journal: the head is this size now, whether or not the file below is written.
    this.#heads.set(head.origin, { origin: head.origin, size: head.size, root: new Uint8Array(head.root) });
    this.#journalOnly.delete(id);
    const logs = path.join(this.#dir, 'logs');
    const target = path.join(logs, id);
    const temporary = `${target}.tmp`;
    // Whatever is in its place (a write cut short, a link, a FIFO) is removed, never opened.
    await rm(temporary, { force: true });
    const file = await open(temporary, TEMPORARY_FLAGS, 0o600);
    try {
      await file.write(`${head.origin}\n${head.size}\n${root}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, target);
    await syncDirectory(logs);
    if (this.#journalEnd - this.#snapshotOffset >= Math.max(MIN_SNAPSHOT_INTERVAL, this.#snapshotBytes)) await this.#snapshot();
  }

  /** Appends a journal line: lines waiting together share one write and one fsync, in order. */
  async #append(id: string, mark: JournalMark): Promise<void> {
    if (this.#broken) throw this.#broken;
    // Never a second root at a marked size, never below a mark (the service checks this too).
    for (const known of [this.#marks.get(id), ...this.#pending.filter((line) => line.id === id).map((line) => line.mark)]) {
      if (known && (mark.size < known.size || (mark.size === known.size && mark.root !== known.root))) {
        throw new WitnessError('WITNESS_STATE', `refusing to record size ${mark.size} for a log the journal already marks at size ${known.size}${mark.size === known.size ? ' with another root' : ''}: a fork or a rollback; the checkpoint was not cosigned`);
      }
    }
    await new Promise<void>((resolve, reject) => {
      this.#pending.push({ id, mark, resolve, reject });
      if (!this.#writing) void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0);
        const text = Buffer.from(batch.map((line) => journalLine(line.id, line.mark.size, line.mark.root)).join(''), 'latin1');
        try {
          await this.#write(text);
        } catch (error) {
          for (const line of batch) line.reject(error);
          continue;
        }
        this.#journalEnd += text.length;
        for (const line of batch) {
          // #append refused a second root at a marked size: here a line only raises its mark.
          const known = this.#marks.get(line.id);
          if (!known || line.mark.size > known.size) this.#marks.set(line.id, line.mark);
          line.resolve();
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  /**
   * Appends `text` to the journal through the descriptor opened at start, fsyncs it, and checks
   * that the journal is still the file read at start and ends where this process expects. A
   * failure that left the journal as it was (nothing appended) fails only this batch; any other
   * latches the state: part of a line may be on disk, and no line may follow it until a restart.
   */
  async #write(text: Buffer): Promise<void> {
    if (this.#broken) throw this.#broken;
    const fd = this.#fd;
    if (fd === undefined) throw new WitnessError('WITNESS_STATE', 'the witness state is closed');
    const expected = this.#journalEnd + text.length;
    try {
      const { bytesWritten } = await writeAsync(fd, text, 0, text.length);
      if (bytesWritten !== text.length) throw new Error(`wrote ${bytesWritten} of ${text.length} bytes`);
      await fsyncAsync(fd);
      const { size } = await fstatAsync(fd);
      if (size !== expected) throw new Error(`it is ${size} bytes long where ${expected} were expected: something else writes to it`);
      const named = await lstat(this.#journal).catch(() => undefined);
      if (named?.dev !== this.#file?.dev || named?.ino !== this.#file?.ino) throw new Error('the file at its path is no longer the one the witness opened at start: it was moved, replaced or deleted');
    } catch (error) {
      const size = await fstatAsync(fd).then((info) => info.size, () => -1);
      if (size === this.#journalEnd && !(error as Error).message.startsWith('the file at its path')) {
        throw new WitnessError('WITNESS_STATE', `writing the witness journal ${this.#journal} failed (${(error as Error).message}) before any byte was written; no cosignature was returned for it: retry`);
      }
      this.#broken ??= new WitnessError('WITNESS_STATE', `writing the witness journal ${this.#journal} failed (${(error as Error).message}); no cosignature was returned for it: fix the cause and restart the witness (a torn last line is cut at start)`);
      this.#onBroken?.(this.#broken);
      throw this.#broken;
    }
  }

  /** Raises `id`'s mark to (size, root); refuses a second root at the marked size. */
  #mark(id: string, size: number, root: string, where?: string): void {
    const known = this.#marks.get(id);
    if (known && known.size === size && known.root !== root) {
      throw new WitnessError('WITNESS_STATE', `witness journal ${this.#journal} holds two roots for one log at size ${size}${where ?? ''}; investigate before serving`);
    }
    if (!known || size > known.size) this.#marks.set(id, { size, root });
  }

  /** Writes the snapshot of `[0, #journalEnd)`, unless one is being written. */
  async #snapshot(): Promise<void> {
    if (this.#snapshotting) return;
    this.#snapshotting = true;
    try {
      // Marks and offset are taken together, before any await: the marks cover exactly that prefix.
      const offset = this.#journalEnd;
      const marks = new Map(this.#marks);
      // The check bytes are read by path: it must still name the file opened at start, before and
      // after, or the snapshot would vouch for a replacement's bytes with the original's marks.
      await this.#sameJournal();
      const windows = await journalWindows(this.#journal, offset);
      if (!windows) throw new WitnessError('WITNESS_STATE', `the witness journal ${this.#journal} is shorter than this process wrote; was it replaced while the witness ran?`);
      await this.#sameJournal();
      this.#snapshotBytes = await writeSnapshot(path.join(this.#dir, 'journal.snapshot'), { offset, ...windows, marks }, this.#key);
      this.#snapshotOffset = offset;
      this.#snapshotError = undefined;
    } catch (error) {
      this.#snapshotError = error;
      if (this.#serving) this.#onSnapshotError?.(error);
    } finally {
      this.#snapshotting = false;
    }
  }

  /** Latches the state unless the journal's path still names the file opened at start. */
  async #sameJournal(): Promise<void> {
    const named = await lstat(this.#journal).catch(() => undefined);
    if (named?.dev === this.#file?.dev && named?.ino === this.#file?.ino) return;
    this.#broken ??= new WitnessError('WITNESS_STATE', `the witness journal ${this.#journal} is no longer the file the witness opened at start (moved, replaced or deleted while it ran); no snapshot was written and no cosignature is given until a restart: stop the witness before moving, rotating or restoring its journal`);
    this.#onBroken?.(this.#broken);
    throw this.#broken;
  }

  async #load(): Promise<void> {
    const from = await this.#readJournal();
    const logs = path.join(this.#dir, 'logs');
    const marks = new Map(this.#marks);
    for (const name of await readdir(logs)) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const refuse = (problem: string): WitnessError => new WitnessError('WITNESS_STATE', `witness state file logs/${name} ${problem}; the witness writes only regular files: restore it or delete it (the journal keeps the log's high-water mark)`);
      const text = (await readSmallFile(path.join(logs, name), { maxBytes: MAX_LOG_STATE_BYTES, refuse })).toString('utf8');
      const [origin, sizeText, root] = text.split('\n');
      if (origin === undefined || originId(origin) !== name || !/^[0-9]{1,16}$/.test(sizeText ?? '') || Buffer.from(root ?? '', 'base64').length !== 32) {
        throw new WitnessError('WITNESS_STATE', `witness state file logs/${name} is damaged; restore it or delete it (the journal keeps the log's high-water mark)`);
      }
      const size = Number(sizeText);
      const mark = marks.get(name);
      marks.delete(name);
      if (mark && mark.size > size) {
        // The state file is older than the journal (restored from a copy): the journal wins.
        this.#heads.set(origin, { origin, size: mark.size, root: new Uint8Array(Buffer.from(mark.root, 'base64')) });
      } else {
        if (mark && mark.size === size && mark.root !== root) {
          throw new WitnessError('WITNESS_STATE', `witness state file logs/${name} and the journal disagree on the root at size ${size}; the state was tampered with — investigate before serving`);
        }
        this.#heads.set(origin, { origin, size, root: new Uint8Array(Buffer.from(root ?? '', 'base64')) });
      }
    }
    for (const [id, mark] of marks) this.#journalOnly.set(id, mark);
    if (this.#startup.raised) {
      const origins = new Map([...this.#heads.keys()].map((origin) => [originId(origin), origin]));
      this.#startup = { ...this.#startup, raised: this.#startup.raised.map((id) => origins.get(id) ?? id) };
    }
    // Last, so that a start refused above creates no journal.
    await this.#openAppender();
    if (from !== this.#journalEnd || this.#startup.snapshot !== 'used') await this.#snapshot();
    this.#serving = true;
  }

  /**
   * Opens the journal for appending, once: `O_APPEND | O_NOFOLLOW | O_NONBLOCK`, a regular file,
   * the same file (device and inode) that was just read, and as long as it was read. A journal
   * created here has its directory fsync'd, so the file itself survives a crash.
   */
  async #openAppender(): Promise<void> {
    let fd;
    try {
      fd = await openAsync(this.#journal, APPEND_FLAGS, 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ELOOP') throw new WitnessError('WITNESS_STATE', `the witness journal ${this.#journal} is a symbolic link; the witness will not serve without its journal: restore it from a copy`);
      throw error;
    }
    this.#fd = fd;
    const info = await fstatAsync(fd);
    if (!info.isFile()) throw new WitnessError('WITNESS_STATE', `the witness journal ${this.#journal} is not a regular file; the witness will not serve without its journal: restore it from a copy`);
    if (this.#file === undefined) {
      if (info.size !== 0) throw new WitnessError('WITNESS_STATE', `the witness journal ${this.#journal} appeared while the witness started; start it again`);
      this.#file = { dev: info.dev, ino: info.ino };
      await syncDirectory(path.dirname(this.#journal));
    } else if (info.dev !== this.#file.dev || info.ino !== this.#file.ino || info.size !== this.#journalEnd) {
      throw new WitnessError('WITNESS_STATE', `the witness journal ${this.#journal} was replaced or written to while the witness started; start it again`);
    }
  }

  /**
   * Fills `#marks` from the snapshot and the journal after it (or the whole journal if the
   * snapshot cannot be used); cuts off a torn last line. Returns the offset the read started at.
   */
  async #readJournal(): Promise<number> {
    const found = await readSnapshot(path.join(this.#dir, 'journal.snapshot'), this.#key);
    let from = 0;
    let lowerBound: JournalSnapshot | undefined;
    if (found === undefined) {
      this.#startup = { snapshot: 'none', journalBytesRead: 0 };
    } else if ('problem' in found) {
      this.#startup = { snapshot: 'unusable', reason: `journal.snapshot ${found.problem}`, journalBytesRead: 0 };
    } else {
      const windows = await journalWindows(this.#journal, found.offset);
      if (this.#readWhole && windows && windows.first === found.first && windows.last === found.last) {
        lowerBound = found;
        this.#startup = { snapshot: 'ignored', reason: 'a whole read was asked for', journalBytesRead: 0 };
      } else if (windows && windows.first === found.first && windows.last === found.last) {
        for (const [id, mark] of found.marks) this.#marks.set(id, mark);
        from = found.offset;
        this.#snapshotOffset = found.offset;
        this.#snapshotBytes = found.marks.size * 128;
        this.#startup = { snapshot: 'used', journalBytesRead: 0 };
      } else {
        // Authenticated by this witness's key, so sizes it cosigned: a lower bound.
        lowerBound = found;
        const length = await journalLength(this.#journal);
        if (length === undefined) {
          throw new WitnessError('WITNESS_STATE', `the witness journal ${this.#journal} does not exist, but journal.snapshot (written by this witness) covers ${found.offset} bytes of it: is its disk mounted? Restore the journal; if it is truly lost, create it empty (install -m 600 /dev/null ${this.#journal}) and start again — the snapshot's marks are kept`);
        }
        const reason = length < found.offset ? `the journal is shorter (${length} bytes) than the snapshot's offset ${found.offset}: compacted, or restored from an older copy` : 'the journal differs from the one the snapshot was written from (compacted or replaced)';
        this.#startup = { snapshot: 'mismatch', reason, journalBytesRead: 0 };
      }
    }
    const scan = await scanJournal(this.#journal, from, (id, size, root, at) => {
      this.#mark(id, size, root, ` (line at byte ${at})`);
    });
    this.#journalEnd = scan.end;
    this.#file = scan.file;
    this.#startup = { ...this.#startup, journalBytesRead: scan.bytesRead };
    // An authenticated snapshot not from this journal still records sizes this witness cosigned: a lower bound.
    const raised: string[] = [];
    for (const [id, mark] of lowerBound?.marks ?? []) {
      if ((this.#marks.get(id)?.size ?? -1) < mark.size) raised.push(id);
      this.#mark(id, mark.size, mark.root, ' (the journal and journal.snapshot)');
    }
    if (raised.length > 0) this.#startup = { ...this.#startup, raised };
    return from;
  }
}

/** The file name of a log's state: SHA-256 of its origin, hex. */
export function originId(origin: string): string {
  return createHash('sha256').update(origin, 'utf8').digest('hex');
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
