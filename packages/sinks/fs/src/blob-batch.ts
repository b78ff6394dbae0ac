/**
 * One batch of small blob files made durable by synchronous calls on a worker thread (see
 * blob-batch-writer.ts): the same files, names and durability as `createReadOnlyFile`, in one
 * thread-pool-free pass instead of four thread-pool waits per blob:
 *
 * 1. every blob is staged in `tmp/` (`O_EXCL`, `0444`) and written;
 * 2. each staged file is `fdatasync`'d, closed, hard-linked to its name (never replacing a file
 *    there: `EEXIST` is reported and that blob left to the caller to check) and unstaged;
 * 3. the caller fsyncs each directory a blob was linked into, once, after every link of the batch.
 *
 * Writing all, then syncing all, lets the disk take the batch's writes together: on ext4 an
 * fsync writes the inode's table block, which holds 16 inodes, so the later fsyncs of a batch
 * mostly find theirs already written. A blob is reported `linked` only after its data is durable.
 *
 * Imports only `node:` modules: it runs in the worker as it is.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** A batch: `bytes` holds every blob back to back, `ends[i]` where blob i ends. */
export interface BlobBatchRequest {
  readonly id: number;
  readonly tmpDir: string;
  /** Unique per process and writer thread: staged names are `<name>.<prefix><counter>`. */
  readonly prefix: string;
  readonly targets: readonly string[];
  readonly ends: readonly number[];
  readonly bytes: Uint8Array;
}

/**
 * Per blob: `linked` (its data durable, linked under its name: durable once its directory is
 * fsync'd), `exists` (a file already had the name), or the error.
 */
export type BlobOutcome = 'linked' | 'exists' | { readonly code: string; readonly message: string };

export interface BlobBatchResult {
  readonly id: number;
  readonly outcomes: BlobOutcome[];
}

const { O_WRONLY, O_CREAT, O_EXCL } = fs.constants;

let counter = 0;

/** Stages, syncs, links and unstages every blob of `request` (the caller then syncs their directories). */
export function writeBlobBatch(request: BlobBatchRequest): BlobBatchResult {
  const { targets, ends, bytes } = request;
  const outcomes: BlobOutcome[] = [];
  const staged: (string | undefined)[] = [];
  const fds: (number | undefined)[] = [];
  for (let index = 0; index < targets.length; index++) {
    const start = index === 0 ? 0 : (ends[index - 1] as number);
    let name = '';
    let fd: number | undefined;
    try {
      for (let attempt = 1; fd === undefined; attempt++) {
        // After a name was taken, a fresh random part: a name seen in tmp/ predicts none after it.
        const prefix = attempt === 1 ? request.prefix : `${randomBytes(6).toString('hex')}r`;
        name = path.join(request.tmpDir, `${path.basename(targets[index] as string)}.${prefix}${(counter++).toString(36)}`);
        try {
          fd = fs.openSync(name, O_WRONLY | O_CREAT | O_EXCL, 0o444);
        } catch (error) {
          // O_EXCL never reuses a name (a file left by a crashed process): take the next one.
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw error;
        }
      }
      const blob = bytes.subarray(start, ends[index]);
      for (let offset = 0; offset < blob.length; ) offset += fs.writeSync(fd, blob, offset, blob.length - offset, offset);
      outcomes.push('linked');
    } catch (error) {
      outcomes.push(failure(error));
      if (fd !== undefined) abandon(fd, name);
      fd = undefined;
    }
    fds.push(fd);
    staged.push(fd === undefined ? undefined : name);
  }
  for (let index = 0; index < targets.length; index++) {
    const fd = fds[index];
    const name = staged[index];
    if (fd === undefined || name === undefined) continue;
    const target = targets[index] as string;
    try {
      fs.fdatasyncSync(fd);
    } catch (error) {
      outcomes[index] = failure(error);
      abandon(fd, name);
      continue;
    }
    try {
      fs.closeSync(fd);
      fs.linkSync(name, target);
    } catch (error) {
      // tmp/ is not archive content (stale staged files are removed at open): a failed unlink
      // must not hide the answer that matters, e.g. EEXIST (the blob is there: check it).
      outcomes[index] = (error as NodeJS.ErrnoException).code === 'EEXIST' ? 'exists' : failure(error);
      quietly(() => { fs.unlinkSync(name); });
      continue;
    }
    try {
      fs.unlinkSync(name);
    } catch (error) {
      // A complete file under its name that is not known durable: the retry finds it (EEXIST).
      outcomes[index] = failure(error);
    }
  }
  return { id: request.id, outcomes };
}

/** Closes and removes a staged file whose write or sync failed (errors ignored: tmp/ is swept at open). */
function abandon(fd: number, name: string): void {
  quietly(() => { fs.closeSync(fd); });
  quietly(() => { fs.unlinkSync(name); });
}

function quietly(call: () => void): void {
  try {
    call();
  } catch {
    // tmp/ is not archive content
  }
}

function failure(error: unknown): { readonly code: string; readonly message: string } {
  const code = (error as NodeJS.ErrnoException).code;
  return { code: typeof code === 'string' ? code : 'EIO', message: error instanceof Error ? error.message : String(error) };
}
