import { constants } from 'node:fs';
import { type FileHandle, link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/** fsync a directory so that entries created or removed in it are durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsync a file's data and metadata. */
export async function syncFile(file: string): Promise<void> {
  const handle = await open(file, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** `mkdir -p` that fsyncs every directory it created (and its parent), so new paths survive a crash. */
export async function ensureDirectory(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode: 0o755 });
  if (first === undefined) return;
  let current = dir;
  const created: string[] = [];
  while (current.length >= first.length) {
    created.push(current);
    current = path.dirname(current);
  }
  for (const directory of [...created, path.dirname(first)]) await syncDirectory(directory);
}

/** Writes `bytes` to `file` completely at `position`. */
export async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset, position + offset);
    offset += bytesWritten;
  }
}

/**
 * Creates `target` with exactly `bytes`, read-only, durably, never replacing an existing file:
 * stage in `tmpDir`, fsync, chmod 0444, hard-link into place (fails if present), fsync the
 * directory. Returns `false` (and leaves the existing file alone) if `target` already exists.
 */
export async function createReadOnlyFile(tmpDir: string, target: string, bytes: Uint8Array): Promise<boolean> {
  const staged = path.join(tmpDir, `${path.basename(target)}.${randomBytes(6).toString('hex')}`);
  const handle = await open(staged, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o444);
  try {
    await writeFully(handle, bytes, 0);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  try {
    await link(staged, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(staged);
  }
  await syncDirectory(path.dirname(target));
  return true;
}

/** The file's bytes, or `undefined` if it does not exist. */
export async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

export function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'ENOENT';
}
