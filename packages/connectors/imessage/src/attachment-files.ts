/**
 * Reads attachment files named by chat.db (`attachment.filename`, usually
 * `~/Library/Messages/Attachments/…`) once their transfer is complete (`transfer_state` 5).
 * Bytes are hashed and stored by the recorder; a file that is missing, unreadable or over the
 * size limit becomes an `unavailable` attachment naming why, never a dropped one.
 */
import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import type { AttachmentInput } from '@offchannel/core';
import type { SqlRow } from './chat-db/chat-db.ts';
import { unavailable } from './map-chat-db-row.ts';

/** `attachment.transfer_state` once the file is fully on disk. */
export const TRANSFER_COMPLETE = 5n;
const MESSAGES_ATTACHMENTS = '~/Library/Messages/Attachments/';

/** Where to find attachment files and how large a file may be archived. */
export interface AttachmentReadOptions {
  /** Replaces `~/Library/Messages/Attachments` in stored paths (tests, relocated homes). */
  readonly attachmentsDir?: string;
  readonly maxBytes: number;
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
  const file = resolvePath(filename, options.attachmentsDir);
  try {
    const info = await stat(file);
    if (!info.isFile()) return unavailable(row, 'not-a-file');
    if (info.size > options.maxBytes) return { ...unavailable(row, 'too-large'), size: info.size };
    const bytes = await readFile(file);
    const name = typeof row['transfer_name'] === 'string' && row['transfer_name'] ? row['transfer_name'] : path.basename(file);
    const mime = typeof row['mime_type'] === 'string' && row['mime_type'] ? row['mime_type'] : 'application/octet-stream';
    return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), mime, name };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return unavailable(row, code === 'ENOENT' ? 'file-missing' : `file-unreadable: ${typeof code === 'string' ? code : 'error'}`);
  }
}

function resolvePath(filename: string, attachmentsDir: string | undefined): string {
  if (attachmentsDir !== undefined && filename.startsWith(MESSAGES_ATTACHMENTS)) return path.join(attachmentsDir, filename.slice(MESSAGES_ATTACHMENTS.length));
  if (filename.startsWith('~/')) return path.join(homedir(), filename.slice(2));
  return filename;
}
