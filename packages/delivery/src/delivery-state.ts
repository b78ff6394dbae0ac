/**
 * The durable delivery cursor of one target: `<state>/<target>.cursor.json`, 0600, replaced
 * atomically (temp file, fsync, rename, fsync of the directory). It records, per stream, the
 * highest seq below which every record was delivered, the receipts already counted, and the
 * message in flight. It is written only after the server accepted a message (250) and its
 * receipt record is durable. The receipts stream is the source of truth: on start the cursor is
 * reconciled with it first (a crash between the receipt and the cursor write loses nothing).
 * `<state>/<target>.lock` keeps a second deliverer of the same target out.
 */
import { closeSync, constants, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { readSmallFileSync } from '@offchannel/core';
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
  /** Per stream: every seq ≤ this was delivered. */
  readonly streams: Readonly<Record<string, number>>;
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

/** Largest lock file read: it holds a process id and a newline. */
const MAX_LOCK_BYTES = 64;
/** Largest cursor read: a seq per stream (a hundred bytes each), for half a million streams and more. */
export const MAX_CURSOR_BYTES = 64 * 1024 * 1024;

/** Locks this process holds (a second deliverer of a target in the same process is refused too). */
const HELD = new Set<string>();

export class DeliveryState {
  readonly file: string;
  /** The state directory. */
  readonly dir: string;
  readonly #lock: string;

  private constructor(dir: string, target: string) {
    this.dir = dir;
    this.file = path.join(dir, `${target}.cursor.json`);
    this.#lock = path.join(dir, `${target}.lock`);
  }

  /** Creates the directory (0700) if needed and takes the target's lock (a stale one, from a dead process, is taken over). */
  static async open(dir: string, target: string): Promise<DeliveryState> {
    const state = new DeliveryState(path.resolve(dir), target);
    try {
      await mkdir(state.dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new DeliveryError('DELIVERY_STATE', `cannot create the state directory ${state.dir} (${(error as { code?: string }).code ?? 'error'}); choose a directory you can write to`, { cause: error });
    }
    state.#takeLock(target);
    return state;
  }

  #takeLock(target: string): void {
    for (let attempt = 0; attempt < 2; attempt++) {
      let fd: number;
      try {
        fd = openSync(this.#lock, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
      } catch (error) {
        if ((error as { code?: string }).code !== 'EEXIST') throw new DeliveryError('DELIVERY_STATE', `cannot create ${this.#lock}: ${(error as { code?: string }).code ?? 'error'}`, { cause: error });
        const text = this.#readLock();
        // Removed between our create and this read: try the exclusive create again, removing
        // nothing (the lock there now may be a new deliverer's).
        if (text === undefined) continue;
        const pid = Number(text.trim());
        const held = pid === process.pid ? HELD.has(this.#lock) : Number.isSafeInteger(pid) && pid > 0 && alive(pid);
        if (held) throw new DeliveryError('DELIVERY_STATE', `target ${target} is being delivered by process ${pid} (lock ${this.#lock}); run one deliverer per target`);
        rmSync(this.#lock, { force: true });
        continue;
      }
      // The descriptor is closed whatever happens: a plain fd is never closed for us.
      try {
        try {
          writeSync(fd, `${process.pid}\n`);
        } finally {
          closeSync(fd); // throws after freeing the descriptor (EIO): then the pid may not be on disk
        }
      } catch (error) {
        rmSync(this.#lock, { force: true }); // created here, may hold no pid: not a lock
        throw new DeliveryError('DELIVERY_STATE', `cannot write ${this.#lock}: ${(error as { code?: string }).code ?? 'error'}; check the disk (full?)`, { cause: error });
      }
      HELD.add(this.#lock);
      return;
    }
    throw new DeliveryError('DELIVERY_STATE', `could not take the lock ${this.#lock}; remove it if no deliverer runs`);
  }

  /**
   * The lock's pid text (undefined when it is gone). A FIFO, link or anything but a small regular file in its place is
   * refused (never waited on nor read whole): it is no lock this code wrote.
   */
  #readLock(): string | undefined {
    const refuse = (problem: string): DeliveryError =>
      new DeliveryError('DELIVERY_STATE', `the lock ${this.#lock} ${problem}; a deliverer's lock is a small regular file holding its pid: remove it if no deliverer runs`);
    try {
      return readSmallFileSync(this.#lock, { maxBytes: MAX_LOCK_BYTES, refuse }).toString('utf8');
    } catch (error) {
      if (error instanceof DeliveryError) throw error;
      if ((error as { code?: string }).code === 'ENOENT') return undefined;
      throw new DeliveryError('DELIVERY_STATE', `cannot read the lock ${this.#lock} (${(error as { code?: string }).code ?? 'error'})`, { cause: error });
    }
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
    if (cursor.format !== 'offchannel-delivery-cursor' || cursor.v !== 1 || typeof cursor.streams !== 'object' || cursor.streams === null || !Number.isSafeInteger(cursor.receipts) || (cursor.receipts as number) < 0 || (cursor.delivered !== undefined && (!Number.isSafeInteger(cursor.delivered) || cursor.delivered < 0 || cursor.delivered > (cursor.receipts as number))) || (cursor.receiptsHash !== undefined && (typeof cursor.receiptsHash !== 'string' || !/^[0-9a-f]{64}$/.test(cursor.receiptsHash))) || (cursor.lastDeliveredAt !== undefined && typeof cursor.lastDeliveredAt !== 'string')) {
      throw new DeliveryError('DELIVERY_STATE', `${this.file} is not a delivery cursor; move it aside — the receipts stream rebuilds the cursor`);
    }
    return cursor as DeliveryCursor;
  }

  /** Atomically replaces the cursor: temp file (0600), fsync, rename, fsync directory. */
  write(cursor: DeliveryCursor): void {
    const temp = `${this.file}.${process.pid}.tmp`;
    const fd = openSync(temp, constants.O_CREAT | constants.O_TRUNC | constants.O_WRONLY, 0o600);
    try {
      writeSync(fd, `${JSON.stringify(cursor)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, this.file);
    const dirFd = openSync(this.dir, constants.O_RDONLY);
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }

  /** Releases the lock. */
  close(): void {
    if (!HELD.delete(this.#lock)) return;
    rmSync(this.#lock, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}
