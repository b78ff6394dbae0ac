/**
 * The witness journal on disk: one line `<sha256(origin) hex> <size> <base64 root>\n` per
 * cosigned checkpoint that grew a log, appended and fsync'd, never rewritten.
 *
 * Reading ({@link scanJournal}) goes from a byte offset to the end, a chunk at a time, so
 * memory stays one chunk and one line whatever the journal's length; only what the caller keeps
 * per line (the highest mark per log) grows, and that is per log. The file is opened with
 * `O_NONBLOCK | O_NOFOLLOW` and `fstat`ed, so a FIFO, link or device in its place is refused,
 * never waited on or followed. A last line without its newline, no longer than a line, is an
 * append that never completed (no cosignature was returned for it): it is cut off. Anything
 * else that is not a well-formed line stops the witness.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { WitnessError } from '@offchannel/core';

/** The high-water mark of one log in the journal: its largest cosigned size and that root. */
export interface JournalMark {
  readonly size: number;
  /** Base64, as in the journal line. */
  readonly root: string;
}

/** The longest well-formed line, newline included: 64 + 1 + 16 + 1 + 44 + 1. */
export const MAX_LINE_BYTES = 127;
/** The bytes hashed at each end of a snapshot's journal prefix (see witness-snapshot.ts). */
export const WINDOW_BYTES = 4096;
const CHUNK_BYTES = 1024 * 1024;
const LINE = /^([0-9a-f]{64}) (0|[1-9][0-9]{0,15}) ([A-Za-z0-9+/]{43}=)$/;
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0) | (constants.O_NOCTTY ?? 0);

/** What a scan found. */
export interface JournalScan {
  /** Offset after the last complete line (the journal's length once a torn line is cut). */
  readonly end: number;
  /** Bytes read from the journal. */
  readonly bytesRead: number;
  /** The file read (undefined if there was no journal): the witness appends only to this file. */
  readonly file?: { readonly dev: number; readonly ino: number };
}

/** The journal line for `id` at `size` with `root` (base64). */
export function journalLine(id: string, size: number, root: string): string {
  return `${id} ${size} ${root}\n`;
}

/** Opens the journal for reading, refusing anything but a regular file; undefined if it does not exist. */
async function openJournal(file: string): Promise<Awaited<ReturnType<typeof open>> | undefined> {
  let handle;
  try {
    handle = await open(file, READ_FLAGS);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw unusable(file, 'is a symbolic link');
    throw error;
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw unusable(file, info.isFIFO() ? 'is a FIFO (named pipe), not a regular file' : 'is not a regular file');
  }
  return handle;
}

function unusable(file: string, problem: string): WitnessError {
  return new WitnessError('WITNESS_STATE', `the witness journal ${file} ${problem}; the witness will not serve without its journal: restore it from a copy`);
}

/** The journal's length in bytes (undefined if it does not exist), refusing anything but a regular file. */
export async function journalLength(file: string): Promise<number | undefined> {
  const handle = await openJournal(file);
  if (!handle) return undefined;
  try {
    return (await handle.stat()).size;
  } finally {
    await handle.close();
  }
}

/**
 * SHA-256 (hex) of the journal's bytes `[0, min(offset, WINDOW_BYTES))` and
 * `[max(0, offset - WINDOW_BYTES), offset)`: two small reads, whatever the journal's length.
 * Undefined if the journal is shorter than `offset`.
 */
export async function journalWindows(file: string, offset: number): Promise<{ first: string; last: string } | undefined> {
  const handle = await openJournal(file);
  if (!handle) return offset === 0 ? { first: sha256(Buffer.alloc(0)), last: sha256(Buffer.alloc(0)) } : undefined;
  try {
    if ((await handle.stat()).size < offset) return undefined;
    const read = async (from: number, length: number): Promise<Buffer> => {
      const buffer = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(buffer, done, length - done, from + done);
        if (bytesRead === 0) return buffer.subarray(0, done);
        done += bytesRead;
      }
      return buffer;
    };
    const head = Math.min(offset, WINDOW_BYTES);
    const tail = Math.max(0, offset - WINDOW_BYTES);
    return { first: sha256(await read(0, head)), last: sha256(await read(tail, offset - tail)) };
  } finally {
    await handle.close();
  }
}

/**
 * Reads the journal from `from` (a line boundary) to its end and calls `onLine` for each
 * complete line, in order; cuts off a torn last line. Refuses a damaged line with the byte
 * offset where it starts.
 */
export async function scanJournal(file: string, from: number, onLine: (id: string, size: number, root: string, at: number) => void): Promise<JournalScan> {
  const handle = await openJournal(file);
  if (!handle) return { end: 0, bytesRead: 0 };
  const { dev, ino } = await handle.stat();
  let end = from;
  let bytesRead = 0;
  try {
    const chunk = Buffer.alloc(CHUNK_BYTES);
    // The unfinished line carried from one chunk to the next (at most MAX_LINE_BYTES).
    let carry = Buffer.alloc(0);
    for (let position = from; ; ) {
      const { bytesRead: count } = await handle.read(chunk, 0, CHUNK_BYTES, position);
      if (count === 0) break;
      position += count;
      bytesRead += count;
      const bytes = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, count)]) : chunk.subarray(0, count);
      let start = 0;
      for (let newline = bytes.indexOf(0x0a); newline !== -1; newline = bytes.indexOf(0x0a, start)) {
        const match = LINE.exec(bytes.toString('latin1', start, newline));
        if (!match) throw damaged(file, end);
        const [, id, sizeText, root] = match as unknown as [string, string, string, string];
        onLine(id, Number(sizeText), root, end);
        end += newline + 1 - start;
        start = newline + 1;
      }
      if (bytes.length - start >= MAX_LINE_BYTES) throw damaged(file, end);
      carry = Buffer.from(bytes.subarray(start));
    }
    if (carry.length > 0) await cutTornLine(file, end);
    return { end, bytesRead, file: { dev, ino } };
  } finally {
    await handle.close();
  }
}

function damaged(file: string, at: number): WitnessError {
  return new WitnessError('WITNESS_STATE', `witness journal ${file}: the line at byte ${at} is damaged; the witness will not serve without its full journal: restore it from a copy, or investigate`);
}

/** Truncates the journal to `end`, cutting an append that never completed. */
async function cutTornLine(file: string, end: number): Promise<void> {
  let handle;
  try {
    handle = await open(file, constants.O_WRONLY | (constants.O_NOFOLLOW ?? 0));
    await handle.truncate(end);
    await handle.sync();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EPERM') {
      throw new WitnessError('WITNESS_STATE', `the witness journal ${file} ends with an incomplete line (an append that never completed, no cosignature was returned for it) and cannot be truncated (append-only?): run chattr -a on it, start the witness (it cuts the line), then chattr +a again`);
    }
    throw error;
  } finally {
    await handle?.close();
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
