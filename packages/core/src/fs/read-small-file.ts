/**
 * Reads a small file that a path from a config, a state folder or the platform names — a lock,
 * a cursor, a key, a state file — without letting that path hang or flood the process:
 *
 * - the file is opened with `O_NONBLOCK`, so a FIFO planted in its place (by an attacker or a
 *   mistake) cannot block the open until a writer appears (a regular file ignores the flag);
 * - with `O_NOFOLLOW` unless `followLinks` is set, so a symbolic link in its place is refused
 *   (`ELOOP`) instead of read from wherever it points;
 * - the open descriptor is `fstat`ed: anything but a regular file (FIFO, device, socket,
 *   directory) is refused, never read;
 * - at most `maxBytes` are read: a larger file is refused, also one that grows while read.
 *
 * Every refusal goes through the caller's `refuse(problem)`, so the error is the caller's own
 * typed error saying what to do; `problem` reads "is a FIFO (named pipe), not a regular file",
 * "is a symbolic link", "is larger than 1024 bytes". Other failures (`ENOENT`, `EACCES`) are
 * thrown as `node:fs` throws them, so callers keep their "missing file" handling.
 */
import { type Stats, closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';

export interface SmallFileOptions {
  /** The largest file accepted, in bytes. */
  readonly maxBytes: number;
  /** Follow a symbolic link in the file's place (default false: refused). */
  readonly followLinks?: boolean;
  /** Builds the error thrown when the file is refused; `problem` says why. */
  readonly refuse: (problem: string) => Error;
}

const NONBLOCK = constants.O_NONBLOCK ?? 0;
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

function flags(options: SmallFileOptions): number {
  return constants.O_RDONLY | NONBLOCK | (constants.O_NOCTTY ?? 0) | (options.followLinks === true ? 0 : NOFOLLOW);
}

/** What is wrong with `info` for a file of at most `maxBytes`, or undefined. */
function problemOf(info: Stats, maxBytes: number): string | undefined {
  if (info.isFIFO()) return 'is a FIFO (named pipe), not a regular file';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'is a device, not a regular file';
  if (info.isSocket()) return 'is a socket, not a regular file';
  if (info.isDirectory()) return 'is a directory, not a regular file';
  if (!info.isFile()) return 'is not a regular file';
  if (info.size > maxBytes) return tooLarge(maxBytes);
  return undefined;
}

const tooLarge = (maxBytes: number): string => `is larger than ${maxBytes} bytes`;

/** The file's size and one byte more (to see the end), never over `maxBytes + 1`. */
const firstLength = (info: Stats, maxBytes: number): number => Math.min(info.size, maxBytes) + 1;

/** A full buffer: the file grew while read. Twice as large, up to `maxBytes + 1`; refused past that. */
function grown(buffer: Buffer, options: SmallFileOptions): Buffer {
  if (buffer.length > options.maxBytes) throw options.refuse(tooLarge(options.maxBytes));
  const larger = Buffer.alloc(Math.min(buffer.length * 2, options.maxBytes + 1));
  buffer.copy(larger);
  return larger;
}

function openFailed(error: unknown, options: SmallFileOptions): Error {
  // With O_NOFOLLOW, a symbolic link in the last component fails with ELOOP.
  if ((error as { code?: string }).code === 'ELOOP' && options.followLinks !== true) return options.refuse('is a symbolic link');
  return error as Error;
}

/** The bytes of `file`, read as described above. */
export function readSmallFileSync(file: string, options: SmallFileOptions): Buffer {
  let fd: number;
  try {
    fd = openSync(file, flags(options));
  } catch (error) {
    throw openFailed(error, options);
  }
  try {
    const info = fstatSync(fd);
    const problem = problemOf(info, options.maxBytes);
    if (problem !== undefined) throw options.refuse(problem);
    let buffer: Buffer = Buffer.alloc(firstLength(info, options.maxBytes));
    let size = 0;
    for (;;) {
      const read = readSync(fd, buffer, size, buffer.length - size, size);
      if (read === 0) return buffer.subarray(0, size);
      size += read;
      if (size === buffer.length) buffer = grown(buffer, options);
    }
  } finally {
    closeSync(fd);
  }
}

/** The bytes of `file`, read as described above, without blocking the event loop. */
export async function readSmallFile(file: string, options: SmallFileOptions): Promise<Buffer> {
  let handle;
  try {
    handle = await open(file, flags(options));
  } catch (error) {
    throw openFailed(error, options);
  }
  try {
    const info = await handle.stat();
    const problem = problemOf(info, options.maxBytes);
    if (problem !== undefined) throw options.refuse(problem);
    let buffer: Buffer = Buffer.alloc(firstLength(info, options.maxBytes));
    let size = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, size, buffer.length - size, size);
      if (bytesRead === 0) return buffer.subarray(0, size);
      size += bytesRead;
      if (size === buffer.length) buffer = grown(buffer, options);
    }
  } finally {
    await handle.close();
  }
}
