/**
 * Reads attachment files named by chat.db (`attachment.filename`, usually
 * `~/Library/Messages/Attachments/…`) once their transfer is complete (`transfer_state` 5).
 * Bytes are hashed and stored by the recorder; a file that is missing, unreadable, outside the
 * attachments directory or over the size limit becomes an `unavailable` attachment naming
 * why, never a dropped one.
 *
 * The file name is data from a database, not a path we trust: whatever wrote the row could
 * name `~/.ssh/id_ed25519`, `/etc/…`, `…/Attachments/../../`, or a symlink or FIFO placed in
 * the attachments directory, and anything read here lands in a WORM archive for years. So:
 * the real path (every symlink resolved) must lie inside the real attachments directory; only
 * a regular file is opened, without following a final symlink and without blocking; the open
 * handle must be the file that was checked (same device and inode, path still resolving to
 * it); and its size is taken from the handle and must not change while it is read.
 */
import { constants } from 'node:fs';
import { lstat, open, realpath, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import type { AttachmentInput } from '@offchannel/core';
import type { SqlRow } from './chat-db/chat-db.ts';
import { unavailable } from './map-chat-db-row.ts';

/** `attachment.transfer_state` once the file is fully on disk. */
export const TRANSFER_COMPLETE = 5n;
const MESSAGES_ATTACHMENTS = '~/Library/Messages/Attachments/';
/** Read-only; a symlink as the last component fails (ELOOP); a FIFO opens without waiting for a writer. */
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/** Where to find attachment files and how large a file may be archived. */
export interface AttachmentReadOptions {
  /** The only directory files are read from; default `~/Library/Messages/Attachments`. */
  readonly attachmentsDir?: string;
  readonly maxBytes: number;
  /** Test seam: runs after the checks and before the open, so tests can swap the file. */
  readonly beforeOpen?: (file: string) => Promise<void>;
}

/** Messages' own attachments directory for the user running the relay. */
export function defaultAttachmentsDir(): string {
  return path.join(homedir(), 'Library', 'Messages', 'Attachments');
}

/** True when the row's transfer is complete. */
export function isTransferComplete(row: SqlRow): boolean {
  return row['transfer_state'] === TRANSFER_COMPLETE;
}

/** The attachment's content, or an unavailable marker saying why not. */
export async function readAttachment(row: SqlRow, options: AttachmentReadOptions): Promise<AttachmentInput> {
  if (!isTransferComplete(row)) return unavailable(row, 'transfer-pending');
  const filename = row['filename'];
  if (typeof filename !== 'string' || filename.length === 0) return unavailable(row, 'no-file-name');
  const root = options.attachmentsDir ?? defaultAttachmentsDir();
  const file = locate(filename, root);
  if (file === undefined) return unavailable(row, 'outside-attachments');
  try {
    const result = await readInside(file, root, options);
    if (typeof result === 'string') return unavailable(row, result);
    if ('tooLarge' in result) return { ...unavailable(row, 'too-large'), size: result.tooLarge };
    const name = typeof row['transfer_name'] === 'string' && row['transfer_name'] ? row['transfer_name'] : path.basename(file);
    const mime = typeof row['mime_type'] === 'string' && row['mime_type'] ? row['mime_type'] : 'application/octet-stream';
    return { bytes: result.bytes, mime, name };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return unavailable(row, 'file-missing');
    if (code === 'ELOOP') return unavailable(row, 'file-changed'); // the checked path became a symlink
    return unavailable(row, `file-unreadable: ${typeof code === 'string' ? code : 'error'}`);
  }
}

/**
 * The stored name as a path, or `undefined` when it cannot be in the attachments directory
 * (`~/…` elsewhere, relative, or `..` leading out). Symlinks are checked later, on disk.
 */
function locate(filename: string, root: string): string | undefined {
  let file: string;
  if (filename.startsWith(MESSAGES_ATTACHMENTS)) file = path.resolve(root, filename.slice(MESSAGES_ATTACHMENTS.length));
  else if (path.isAbsolute(filename)) file = path.resolve(filename);
  else return undefined;
  return isInside(path.resolve(root), file) ? file : undefined;
}

type ReadResult = { readonly bytes: Uint8Array } | { readonly tooLarge: number } | string;

async function readInside(file: string, root: string, options: AttachmentReadOptions): Promise<ReadResult> {
  const realRoot = await realpath(root);
  const real = await realpath(file);
  if (!isInside(realRoot, real)) return 'outside-attachments';
  const checked = await lstat(real);
  if (!checked.isFile()) return 'not-a-file'; // FIFOs, sockets, devices and directories are never opened
  await options.beforeOpen?.(real);
  const handle = await open(real, OPEN_FLAGS);
  try {
    const info = await handle.stat();
    if (!info.isFile()) return 'not-a-file';
    // Swapped since the check (a parent directory made a symlink, the file replaced)?
    if (info.dev !== checked.dev || info.ino !== checked.ino) return 'file-changed';
    const still = await lstat(real);
    if ((await realpath(real)) !== real || still.dev !== info.dev || still.ino !== info.ino) return 'file-changed';
    if (info.size > options.maxBytes) return { tooLarge: info.size };
    const bytes = await readExactly(handle, info.size);
    return bytes === undefined ? 'file-changed' : { bytes };
  } finally {
    await handle.close();
  }
}

/** Reads `size` bytes from the handle; `undefined` when the file is shorter or longer now. */
async function readExactly(handle: FileHandle, size: number): Promise<Uint8Array | undefined> {
  const buffer = new Uint8Array(size + 1); // one spare byte shows a file that grew
  let total = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, total, buffer.length - total, total);
    if (bytesRead === 0) break;
    total += bytesRead;
    if (total === buffer.length) return undefined;
  }
  return total === size ? buffer.subarray(0, size) : undefined;
}

/** True when `file` is strictly below `dir` (both absolute and normalized). */
function isInside(dir: string, file: string): boolean {
  const relative = path.relative(dir, file);
  return relative !== '' && !relative.startsWith(`..${path.sep}`) && relative !== '..' && !path.isAbsolute(relative);
}
