import { createHash } from 'node:crypto';
import { open, rename } from 'node:fs/promises';

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
 * (never overwriting), then fsync and rename into place. If `fill` throws, the file is closed
 * and the error passed on; nothing is renamed.
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
  } finally {
    await handle.close();
  }
  await rename(partial, file);
  return { path: file, size, sha256: hash.digest('hex') };
}
