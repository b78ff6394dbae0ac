import { createHash } from 'node:crypto';
import { link, open, rename, stat, unlink } from 'node:fs/promises';
import { ExportError } from './export-error.ts';

/** A file the export wrote: its path, size and SHA-256 (listed in `SHA256SUMS`). */
export interface WrittenFile {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
}

/** Writes a file atomically (temp name, fsync, rename) and returns its size and SHA-256. */
export async function writeFileDurably(file: string, bytes: Uint8Array | string): Promise<WrittenFile> {
  return writeStreamingFile(file, (write) => write(bytes));
}

/**
 * Writes a file chunk by chunk as `fill` produces it, hashing as it goes: to `<file>.partial`
 * (never overwriting), then fsync and move into place — never over an existing file (two
 * outputs that would share a name are an error, not a silent replacement). If `fill` throws,
 * the partial file is removed and the error passed on.
 */
export async function writeStreamingFile(file: string, fill: (write: (chunk: string | Uint8Array) => Promise<void>) => Promise<void>): Promise<WrittenFile> {
  const partial = `${file}.partial`;
  const handle = await open(partial, 'wx', 0o644);
  const hash = createHash('sha256');
  let size = 0;
  try {
    await fill(async (chunk) => {
      const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      hash.update(data);
      size += data.byteLength;
      let written = 0;
      while (written < data.byteLength) written += (await handle.write(data, written)).bytesWritten;
    });
    await handle.sync();
    await handle.close();
    await placeNew(partial, file);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await unlink(partial).catch(() => undefined);
    throw error;
  }
  return { path: file, size, sha256: hash.digest('hex') };
}

/** `rename`, but refusing to replace `file`: a hard link fails if it exists (checked first where links are not supported). */
async function placeNew(partial: string, file: string): Promise<void> {
  try {
    await link(partial, file);
    await unlink(partial);
    return;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'EEXIST') throw new ExportError('EXPORT_OUTPUT', `${file} already exists; an export never replaces a file it wrote (two outputs would share this name)`, { cause: error });
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw error;
  }
  const existing = await stat(file).catch(() => undefined);
  if (existing) throw new ExportError('EXPORT_OUTPUT', `${file} already exists; an export never replaces a file it wrote (two outputs would share this name)`);
  await rename(partial, file);
}
