/**
 * The durable delivery cursor of one target: `<state>/<target>.cursor.json`, 0600, replaced
 * atomically (temp file, fsync, rename, fsync of the directory). It records, per stream, the
 * highest seq below which every record was delivered, the receipts already counted, and the
 * message in flight. It is written only after the server accepted a message (250) and its
 * receipt record is durable. The receipts stream is the source of truth: on start the cursor is
 * reconciled with it first (a crash between the receipt and the cursor write loses nothing).
 * `<state>/<target>.lock.db` keeps a second deliverer of the same target out: an exclusive lock the
 * kernel holds for the deliverer's process and releases however it ends (`takeOsLock`), so it is
 * never stale. The file is empty and stays when the deliverer stops. Earlier versions used a
 * pid file, `<target>.lock`: while the kernel lock is held this version also keeps such a file,
 * holding its own pid, so that an earlier deliverer started beside it stays out (see
 * `#holdOldLock`); one whose process is gone is removed.
 */
import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, linkSync, lstatSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { type OsLock, OffchannelError, OsLockError, type VerifiedCheckpoint, readSmallFileSync, readVerifiedState, takeOsLock } from '@offchannel/core';
import { DeliveryError } from './delivery-error.ts';

export interface InFlight {
  readonly stream: string;
  readonly seqs: readonly number[];
  readonly messageId: string;
}

export interface DeliveryCursor {
  readonly format: 'offchannel-delivery-cursor';
  readonly v: 1;
  readonly target: string;
  /** Journal address and mode the cursor belongs to; a change needs a new target name. */
  readonly to: string;
  readonly mode: 'record' | 'day';
  /**
   * Per stream: every seq ≤ this was delivered — or has no e-mail form, or is listed in
   * `missed` (pruned from capture's spool before it was delivered; never delivered by this target).
   */
  readonly streams: Readonly<Record<string, number>>;
  /**
   * Per stream, the records the spool lost before this target delivered them (`1-35 40`):
   * each gap also has a `delivery-missed` record in the receipts stream. Absent when none.
   */
  readonly missed?: Readonly<Record<string, string>>;
  /** Receipts-stream seq up to which receipts are reflected here. */
  readonly receipts: number;
  /**
   * SHA-256 of the receipts-stream record at `receipts` (absent when `receipts` is 0, or in a
   * cursor written before it was kept): a state directory of another archive is refused.
   */
  readonly receiptsHash?: string;
  /** Delivery receipts among the receipts-stream records it counts (absent in a cursor written before it was kept). */
  readonly delivered?: number;
  /** When the newest delivery receipt counted here was written (kept across refusals, which are receipts too). */
  readonly lastDeliveredAt?: string;
  /** Sent (or being sent) when this was written: its outcome is unknown until a receipt says. */
  readonly inFlight?: InFlight;
}

/** Largest lock file of an earlier version read: it holds a process id and a newline. */
const MAX_OLD_LOCK_BYTES = 64;
/** The mode of the pid file this version keeps for earlier versions (theirs is 0600): how a stale one of ours is told apart. */
const OWN_PID_FILE_MODE = 0o400;
/** Largest cursor read: a seq per stream (a hundred bytes each), for half a million streams and more. */
export const MAX_CURSOR_BYTES = 64 * 1024 * 1024;

export class DeliveryState {
  readonly file: string;
  /** The verified state beside the cursor (see {@link readVerified}). */
  readonly verifiedFile: string;
  /** See {@link renderIndexFile}. */
  readonly renderIndex: string;
  /** The state directory. */
  readonly dir: string;
  /** The kernel-held lock file. */
  readonly #lockFile: string;
  /** The pid file earlier versions used as the lock. */
  readonly #oldLock: string;
  #lock: OsLock | undefined;
  /** The pid file this deliverer created (device and inode), removed at close. */
  #pidFile: { readonly dev: number; readonly ino: number } | undefined;

  private constructor(dir: string, target: string) {
    this.dir = dir;
    this.file = path.join(dir, `${target}.cursor.json`);
    this.verifiedFile = path.join(dir, `${target}.verified.json`);
    this.renderIndex = path.join(dir, `${target}.render-index.sqlite`);
    this.#lockFile = path.join(dir, `${target}.lock.db`);
    this.#oldLock = path.join(dir, `${target}.lock`);
  }

  /** Creates the directory (0700) if needed and takes the target's lock. */
  static async open(dir: string, target: string): Promise<DeliveryState> {
    const state = new DeliveryState(path.resolve(dir), target);
    try {
      await mkdir(state.dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new DeliveryError('DELIVERY_STATE', `cannot create the state directory ${state.dir} (${(error as { code?: string }).code ?? 'error'}); choose a directory you can write to`, { cause: error });
    }
    state.#takeLock(target);
    try {
      state.#holdOldLock(target);
    } catch (error) {
      state.close();
      throw error;
    }
    return state;
  }

  /**
   * The kernel-held lock ({@link takeOsLock}): held while this deliverer runs, released by the
   * kernel however the process ends — never stale, never taken over, no pid to be fooled by.
   */
  #takeLock(target: string): void {
    try {
      this.#lock = takeOsLock(this.#lockFile);
    } catch (error) {
      if (!OffchannelError.isInstance(error)) throw error;
      const problem = error instanceof OsLockError ? error.problem : error.message;
      if (error.code === 'OS_LOCK_HELD') {
        throw new DeliveryError('DELIVERY_STATE', `target ${target} is being delivered by another process or by this one (lock ${this.#lockFile}); run one deliverer per target`, { cause: error });
      }
      if (error.code === 'OS_LOCK_REFUSED') {
        throw new DeliveryError('DELIVERY_STATE', `the lock ${this.#lockFile} ${problem}; a deliverer's lock is an empty regular file it creates: remove it if no deliverer runs`, { cause: error });
      }
      throw new DeliveryError('DELIVERY_STATE', `cannot take the lock ${this.#lockFile}: it ${problem}; check the state directory`, { cause: error });
    }
  }

  /**
   * Keeps deliverers of earlier versions out, for a release or two while they may still be run
   * beside this one (remove it then): under the kernel lock, `<target>.lock` is created holding
   * this process's pid (0600; written to a new file, `O_EXCL | O_NOFOLLOW`, then hard-linked into
   * place, which fails if the name exists), as earlier versions created their lock; one of theirs
   * sees a live pid and refuses to start. A pid file already there is first retired (see
   * `#retireOldLock`). Removed at {@link close}. It carries the pid file's limits for those
   * earlier versions only: another PID namespace, a pid reused after a crash (docs/delivery.md).
   */
  #holdOldLock(target: string): void {
    // Written whole under another name first, then linked into place (fails if it exists): an
    // earlier deliverer never sees it empty, which it would take for a dead one's.
    const temp = `${this.#oldLock}.${process.pid}.tmp`;
    this.#removeTempPidFiles();
    let fd: number;
    try {
      fd = openSync(temp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600);
    } catch (error) {
      throw new DeliveryError('DELIVERY_STATE', `cannot create ${temp} (${(error as { code?: string }).code ?? 'error'}); check the state directory`, { cause: error });
    }
    try {
      try {
        writeSync(fd, `${process.pid}\n`);
        // Mode 0400 marks it as this version's (an earlier version's is 0600): see #retireOldLock.
        fchmodSync(fd, OWN_PID_FILE_MODE);
        const { dev, ino } = fstatSync(fd);
        this.#pidFile = { dev, ino };
      } finally {
        closeSync(fd);
      }
      for (let attempt = 0; attempt < 3; attempt++) {
        this.#retireOldLock(target);
        try {
          linkSync(temp, this.#oldLock);
          return;
        } catch (error) {
          // An earlier deliverer created it since: look again.
          if ((error as { code?: string }).code !== 'EEXIST') throw error;
        }
      }
      throw new DeliveryError('DELIVERY_STATE', `target ${target}: ${this.#oldLock} keeps reappearing (a deliverer of an earlier offchannel version starting?); run one deliverer per target`);
    } catch (error) {
      this.#pidFile = undefined;
      if (error instanceof DeliveryError) throw error;
      throw new DeliveryError('DELIVERY_STATE', `cannot create ${this.#oldLock} (${(error as { code?: string }).code ?? 'error'}); check the state directory and the disk (full?)`, { cause: error });
    } finally {
      rmSync(temp, { force: true });
    }
  }

  /** Removes the pid file this deliverer created, if that file is still there (never another). */
  #removePidFile(): void {
    const created = this.#pidFile;
    this.#pidFile = undefined;
    if (created === undefined) return;
    try {
      const now = lstatSync(this.#oldLock);
      if (now.dev === created.dev && now.ino === created.ino) rmSync(this.#oldLock, { force: true });
    } catch {
      // Gone already, or unreadable: nothing of ours to remove.
    }
  }

  /**
   * Why `file` must not be opened while the lock is held, or undefined: it is the lock file under
   * another name (a hard link) — this process opening and closing it would drop its own lock,
   * POSIX locks being per process and file — or, with `links`, it has other names at all. Looked
   * at with `lstat`, never opened. A file that does not exist is no alias.
   */
  #aliasOfLock(file: string, { links }: { links: boolean }): string | undefined {
    let info;
    let lock;
    try {
      info = lstatSync(file);
      lock = lstatSync(this.#lockFile);
    } catch {
      return undefined; // gone (the read says so), or unexaminable (the read fails the same way)
    }
    if (info.dev === lock.dev && info.ino === lock.ino) return `is the lock ${this.#lockFile} under another name (a hard link), which must never be opened`;
    if (links && info.isFile() && info.nlink > 1) return `has other names (${info.nlink} hard links), which no lock of an earlier version had`;
    return undefined;
  }

  /**
   * Whether `<target>.lock` is a pid file this version wrote (mode 0400; an earlier version's is
   * 0600). With the kernel lock held here it is stale: its writer held that lock while it existed,
   * so it is gone, whatever process now has its pid (a pid reused after a crash or reboot no longer
   * blocks a start). Its other name, if a crash left one (see {@link #removeTempPidFiles}), goes too.
   */
  #ownStalePidFile(): boolean {
    try {
      const info = lstatSync(this.#oldLock);
      return info.isFile() && (info.mode & 0o777) === OWN_PID_FILE_MODE;
    } catch {
      return false; // absent, or unexaminable (the read says so)
    }
  }

  /** Removes `<target>.lock.<pid>.tmp` files a crash between writing and linking a pid file left. */
  #removeTempPidFiles(): void {
    const dir = path.dirname(this.#oldLock);
    const base = path.basename(this.#oldLock);
    for (const name of readdirSync(dir)) {
      if (name.startsWith(`${base}.`) && /^\.\d+\.tmp$/.test(name.slice(base.length))) rmSync(path.join(dir, name), { force: true });
    }
  }

  /**
   * Earlier versions locked a target with a pid file, `<target>.lock`. With the new lock held, such
   * a file is removed if its process is gone — no deliverer of this version can race on it. If its
   * process runs, it may be a deliverer of the earlier version: refused, so the two never deliver
   * together (stop the old one; if the pid was reused by another program, remove the file).
   */
  #retireOldLock(target: string): void {
    const refuse = (problem: string): DeliveryError =>
      new DeliveryError('DELIVERY_STATE', `the lock ${this.#oldLock} ${problem}; a deliverer's lock of an earlier version is a small regular file holding its pid: remove it if no deliverer runs`);
    if (this.#ownStalePidFile()) {
      rmSync(this.#oldLock, { force: true });
      return;
    }
    let text: string;
    try {
      const alias = this.#aliasOfLock(this.#oldLock, { links: true });
      if (alias !== undefined) throw refuse(alias);
      text = readSmallFileSync(this.#oldLock, { maxBytes: MAX_OLD_LOCK_BYTES, refuse }).toString('utf8');
    } catch (error) {
      if (error instanceof DeliveryError) throw error;
      if ((error as { code?: string }).code === 'ENOENT') return;
      throw new DeliveryError('DELIVERY_STATE', `cannot read the lock ${this.#oldLock} (${(error as { code?: string }).code ?? 'error'})`, { cause: error });
    }
    const pid = Number(text.trim());
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      throw new DeliveryError('DELIVERY_STATE', `target ${target} may be being delivered by process ${pid} of an earlier offchannel version (lock ${this.#oldLock}); run one deliverer per target: stop it first, or remove the file if no deliverer runs`);
    }
    rmSync(this.#oldLock, { force: true });
  }

  /**
   * The stored cursor, or undefined before the first delivery. A damaged file is an error, never
   * a silent restart; so is a FIFO, link, directory or file over {@link MAX_CURSOR_BYTES} in its
   * place (refused, never waited on nor read whole).
   */
  read(): DeliveryCursor | undefined {
    let text: string;
    const refuse = (problem: string): DeliveryError =>
      new DeliveryError('DELIVERY_STATE', `${this.file} ${problem}; a delivery cursor is a regular file this deliverer writes: move it aside — the receipts stream rebuilds the cursor`);
    try {
      const alias = this.#aliasOfLock(this.file, { links: false });
      if (alias !== undefined) throw refuse(alias);
      text = readSmallFileSync(this.file, { maxBytes: MAX_CURSOR_BYTES, refuse }).toString('utf8');
    } catch (error) {
      if (error instanceof DeliveryError) throw error;
      if ((error as { code?: string }).code === 'ENOENT') return undefined;
      throw new DeliveryError('DELIVERY_STATE', `cannot read ${this.file} (${(error as { code?: string }).code ?? 'error'})`, { cause: error });
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new DeliveryError('DELIVERY_STATE', `${this.file} is not valid JSON; move it aside — the receipts stream rebuilds the cursor`, { cause: error });
    }
    const cursor = value as Partial<DeliveryCursor>;
    if (cursor.format !== 'offchannel-delivery-cursor' || cursor.v !== 1 || typeof cursor.streams !== 'object' || cursor.streams === null || !Number.isSafeInteger(cursor.receipts) || (cursor.receipts as number) < 0 || (cursor.delivered !== undefined && (!Number.isSafeInteger(cursor.delivered) || cursor.delivered < 0 || cursor.delivered > (cursor.receipts as number))) || (cursor.receiptsHash !== undefined && (typeof cursor.receiptsHash !== 'string' || !/^[0-9a-f]{64}$/.test(cursor.receiptsHash))) || (cursor.lastDeliveredAt !== undefined && typeof cursor.lastDeliveredAt !== 'string') || !validMissed(cursor.missed)) {
      throw new DeliveryError('DELIVERY_STATE', `${this.file} is not a delivery cursor; move it aside — the receipts stream rebuilds the cursor`);
    }
    return cursor as DeliveryCursor;
  }

  /**
   * The verified state `<state>/<target>.verified.json`: per stream, the newest signed checkpoint
   * (size and root) that a pass of this deliverer verified, in the format of `offchannel verify
   * --save` (core's `readVerifiedState`). Undefined when there is none (the next pass verifies
   * in full). A damaged file, or anything but a regular file, is refused: moving it aside costs
   * one full verification, never a silent one.
   */
  readVerified(): Map<string, VerifiedCheckpoint> | undefined {
    const refuse = (problem: string): DeliveryError =>
      new DeliveryError('DELIVERY_STATE', `${this.verifiedFile} ${problem}; it is the deliverer's memory of what it verified: move it aside and the next pass verifies every stream in full once`);
    let text: string;
    try {
      const alias = this.#aliasOfLock(this.verifiedFile, { links: false });
      if (alias !== undefined) throw refuse(alias);
      text = readSmallFileSync(this.verifiedFile, { maxBytes: MAX_CURSOR_BYTES, refuse }).toString('utf8');
    } catch (error) {
      if (error instanceof DeliveryError) throw error;
      if ((error as { code?: string }).code === 'ENOENT') return undefined;
      throw new DeliveryError('DELIVERY_STATE', `cannot read ${this.verifiedFile} (${(error as { code?: string }).code ?? 'error'})`, { cause: error });
    }
    try {
      return readVerifiedState(text);
    } catch (error) {
      throw refuse(`is not a verified state (${(error as Error).message})`);
    }
  }

  /**
   * The export's working index kept between passes, `<state>/<target>.render-index.sqlite`
   * (derived data: rebuilt from the archive when missing or contradicted). Anything but a
   * regular file at it, its `-wal` or its `-shm` — or the lock under another name — is refused
   * before SQLite opens it (it would write wherever a link points).
   */
  renderIndexFile(): string {
    for (const file of [this.renderIndex, `${this.renderIndex}-wal`, `${this.renderIndex}-shm`]) {
      let info;
      try {
        info = lstatSync(file);
      } catch {
        continue;
      }
      const alias = this.#aliasOfLock(file, { links: false });
      if (alias !== undefined || !info.isFile()) {
        throw new DeliveryError('DELIVERY_STATE', `${file} ${alias ?? 'is not a regular file'}; it is the deliverer's working index, rebuilt from the archive when missing: move every ${path.basename(this.renderIndex)}* file aside`);
      }
    }
    return this.renderIndex;
  }

  /** Atomically replaces the verified state (as the cursor): `text` from core's `verifiedStateOf`. */
  writeVerified(text: string): void {
    this.#replace(this.verifiedFile, text);
  }

  /** Atomically replaces the cursor: temp file (0600), fsync, rename, fsync directory. */
  write(cursor: DeliveryCursor): void {
    this.#replace(this.file, `${JSON.stringify(cursor)}\n`);
  }

  #replace(file: string, text: string): void {
    const temp = `${file}.${process.pid}.tmp`;
    // Removed, then created anew (never through a link, never an existing file: a hard link to the
    // lock there would be truncated, and closing it would drop this process's lock).
    rmSync(temp, { force: true });
    const fd = openSync(temp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0), 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
    const dirFd = openSync(this.dir, constants.O_RDONLY);
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }

  /**
   * Removes the pid file kept for earlier versions, then releases the lock (the empty lock file
   * stays: removing it could drop a newer deliverer's lock).
   */
  close(): void {
    this.#removePidFile();
    this.#lock?.release();
    this.#lock = undefined;
  }
}

/** Only for the pid file of an earlier version (see `#retireOldLock`). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}

/** The cursor's `missed`: absent, or per stream a list of seq ranges (`1-35 40`). */
function validMissed(missed: unknown): boolean {
  if (missed === undefined) return true;
  if (typeof missed !== 'object' || missed === null || Array.isArray(missed)) return false;
  return Object.values(missed).every((ranges) => typeof ranges === 'string' && /^\d+(-\d+)?( \d+(-\d+)?)*$/.test(ranges));
}
