/**
 * What a witness remembers: for each log (origin), the size and root of the latest checkpoint
 * it cosigned. Two copies, written in this order before any cosignature is returned:
 *
 * 1. the journal — one line `<sha256(origin) hex> <size> <base64 root>` appended and fsync'd
 *    for every cosigned checkpoint that grew a log. Append-only, never rewritten: it is the
 *    witness's high-water mark. Keep it on media the operator never restores from backup
 *    (`--journal`, e.g. a separate disk or a file with `chattr +a`);
 * 2. `logs/<sha256(origin) hex>` — `<origin>\n<size>\n<base64 root>\n`, replaced atomically
 *    (temporary file, fsync, rename, fsync directory).
 *
 * On start the witness takes, per log, the larger of the two. So a state folder restored from
 * an old copy cannot roll a log back while the journal is kept, and a crash between the two
 * writes loses nothing (the journal already has the line). A last journal line without its
 * newline is an append that never completed (no cosignature was returned for it): it is cut off.
 *
 * One witness process per state folder: it holds an exclusive SQLite (POSIX advisory) lock on
 * `<state>/lock` while open — two processes answering for one state could each advance a log
 * from the same size. The kernel releases the lock however the process ends (core's
 * `takeOsLock`, shared with the fs sink's stream writers and delivery targets).
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { type OsLock, OffchannelError, OsLockError, WitnessError, readSmallFile, takeOsLock } from '@offchannel/core';

/** Most refused-checkpoint evidence files kept (the key holder could otherwise fill the disk). */
const MAX_EVIDENCE = 1000;

/** The latest cosigned checkpoint of one log. */
export interface LogHead {
  readonly origin: string;
  readonly size: number;
  readonly root: Uint8Array;
}

/** Largest per-log state file read: an origin line, a size and a root. */
const MAX_LOG_STATE_BYTES = 64 * 1024;
/**
 * The journal is read whole at start (and parsed a line at a time: a string that long is past
 * V8's limit): 1 GiB is about eight million cosigned sizes (a line is ~127 bytes). Only each
 * log's highest line matters, so a journal that large can be compacted.
 */
const MAX_JOURNAL_BYTES = 1024 * 1024 * 1024;

/** The witness's persistent state. */
export class WitnessState {
  readonly #dir: string;
  readonly #journal: string;
  readonly #heads = new Map<string, LogHead>();
  /** Journal high-water marks for logs not (yet) in `logs/` (origin unknown until it is sent again). */
  readonly #journalOnly = new Map<string, { readonly size: number; readonly root: string }>();

  #lock: OsLock | undefined;

  private constructor(dir: string, journal: string) {
    this.#dir = dir;
    this.#journal = journal;
  }

  /** Opens (creating if needed, mode 0700) the state folder and the journal, and locks the folder. */
  static async open(dir: string, journal = path.join(dir, 'journal')): Promise<WitnessState> {
    await mkdir(path.join(dir, 'logs'), { recursive: true, mode: 0o700 });
    const state = new WitnessState(dir, journal);
    try {
      state.#lock = takeOsLock(path.join(dir, 'lock'));
    } catch (error) {
      if (OffchannelError.hasCode(error, 'OS_LOCK_HELD')) {
        throw new WitnessError('WITNESS_STATE', `another witness process holds the state folder ${dir}; one witness per state folder — stop the other one first`, { cause: error });
      }
      const problem = error instanceof OsLockError ? error.problem : 'cannot be taken';
      throw new WitnessError('WITNESS_STATE', `the witness's lock ${path.join(dir, 'lock')} ${problem}; it is an empty regular file the witness creates: remove it if no witness runs`, { cause: error });
    }
    try {
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

  /** Releases the state folder's lock. */
  close(): void {
    this.#lock?.release();
    this.#lock = undefined;
  }

  /** The latest cosigned head of `origin`, if any. */
  head(origin: string): LogHead | undefined {
    const head = this.#heads.get(origin);
    if (head) return head;
    const mark = this.#journalOnly.get(originId(origin));
    return mark ? { origin, size: mark.size, root: new Uint8Array(Buffer.from(mark.root, 'base64')) } : undefined;
  }

  /** How many logs the witness knows. */
  get logCount(): number {
    return this.#heads.size + this.#journalOnly.size;
  }

  /** Records `head` as cosigned: journal line first, then the log's file. Resolves when both are durable. */
  async advance(head: LogHead): Promise<void> {
    const id = originId(head.origin);
    const root = Buffer.from(head.root).toString('base64');
    const journal = await open(this.#journal, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
    try {
      await journal.write(`${id} ${head.size} ${root}\n`);
      await journal.sync();
    } finally {
      await journal.close();
    }
    const logs = path.join(this.#dir, 'logs');
    const target = path.join(logs, id);
    const temporary = `${target}.tmp`;
    const file = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
    try {
      await file.write(`${head.origin}\n${head.size}\n${root}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, target);
    await syncDirectory(logs);
    this.#heads.set(head.origin, { origin: head.origin, size: head.size, root: new Uint8Array(head.root) });
    this.#journalOnly.delete(id);
  }

  async #load(): Promise<void> {
    const marks = await this.#readJournal();
    const logs = path.join(this.#dir, 'logs');
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
  }

  /** The highest (size, root) per origin id in the journal; cuts off a torn last line. */
  async #readJournal(): Promise<Map<string, { size: number; root: string }>> {
    const marks = new Map<string, { size: number; root: string }>();
    let bytes: Buffer;
    try {
      // A FIFO, link or device in its place is refused, never waited on or followed.
      const refuse = (problem: string): WitnessError =>
        problem.startsWith('is larger')
          ? new WitnessError('WITNESS_STATE', `the witness journal ${this.#journal} ${problem}; only each log's highest line matters: with the witness stopped, keep a copy of the journal, then write each log's last complete line to a new file (docs/witnessing.md, "Compacting the journal"), fsync it, rename it over the journal (chattr -a first if it is append-only, +a after) and start the witness again`)
          : new WitnessError('WITNESS_STATE', `the witness journal ${this.#journal} ${problem}; the witness will not serve without its journal: restore it from a copy`);
      bytes = await readSmallFile(this.#journal, { maxBytes: MAX_JOURNAL_BYTES, refuse });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return marks;
      throw error;
    }
    const end = bytes.lastIndexOf(0x0a) + 1;
    if (end < bytes.length) {
      const handle = await open(this.#journal, constants.O_WRONLY);
      try {
        await handle.truncate(end);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    // A line at a time from the bytes: the whole journal as one string could pass V8's limit.
    for (let start = 0, index = 0; start < end; index++) {
      const newline = bytes.indexOf(0x0a, start);
      const line = bytes.toString('utf8', start, newline);
      start = newline + 1;
      const match = /^([0-9a-f]{64}) (0|[1-9][0-9]{0,15}) ([A-Za-z0-9+/]{43}=)$/.exec(line);
      if (!match) throw new WitnessError('WITNESS_STATE', `witness journal ${this.#journal} line ${index + 1} is damaged; the witness will not serve without its full journal`);
      const [, id, sizeText, root] = match as unknown as [string, string, string, string];
      const size = Number(sizeText);
      const known = marks.get(id);
      if (known && known.size === size && known.root !== root) {
        throw new WitnessError('WITNESS_STATE', `witness journal ${this.#journal} holds two roots for one log at size ${size} (line ${index + 1}); investigate before serving`);
      }
      if (!known || size >= known.size) marks.set(id, { size, root });
    }
    return marks;
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
