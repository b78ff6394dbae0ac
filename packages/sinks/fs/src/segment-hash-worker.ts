/**
 * Worker-thread entry for {@link SegmentHasher} (segment-hasher.ts): keeps the running SHA-256
 * of each active segment it is told about. The main thread sends where each appended batch lies
 * in the segment's file (its descriptor, shared by every thread of the process, an offset and a
 * length), never the bytes: the worker reads them back from the file (the page cache) in the
 * order they were sent, so the seal hashes what the file holds. A digest request is answered
 * with the hex digest, or with the reason it cannot be given (a read failed or came up short:
 * the seal then hashes the file itself); a discard is acknowledged so that the main thread
 * closes the descriptor only after the worker is done with it.
 */
import { type Hash, createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

/** What the main thread sends for segment `id`. */
export type SegmentHashRequest =
  | { readonly id: number; readonly fd: number; readonly at: number; readonly length: number }
  | { readonly id: number; readonly digest: true }
  | { readonly id: number; readonly discard: true };

/** What the worker answers: a digest, the reason there is none, or a discard done. */
export type SegmentHashReply = { readonly id: number; readonly hex: string } | { readonly id: number; readonly error: string } | { readonly id: number; readonly discarded: true };

interface Running {
  readonly hash: Hash;
  /** Why a read failed: the digest is refused. */
  failed?: string;
}

const running = new Map<number, Running>();
const buffer = Buffer.allocUnsafe(1024 * 1024);

/** Adds `length` bytes of the file from `at` (positional reads: pread never moves a stream). */
function add(segment: Running, fd: number, at: number, length: number): void {
  for (let done = 0; done < length; ) {
    const read = readSync(fd, buffer, 0, Math.min(buffer.length, length - done), at + done);
    if (read === 0) throw new Error(`the segment file ended at ${at + done}, before ${at + length}`);
    segment.hash.update(buffer.subarray(0, read));
    done += read;
  }
}

parentPort?.on('message', (request: SegmentHashRequest) => {
  const reply = (message: SegmentHashReply): void => {
    parentPort?.postMessage(message);
  };
  if ('discard' in request) {
    running.delete(request.id);
    reply({ id: request.id, discarded: true });
    return;
  }
  let segment = running.get(request.id);
  if (!segment) running.set(request.id, (segment = { hash: createHash('sha256') }));
  if ('length' in request) {
    if (segment.failed !== undefined) return;
    try {
      add(segment, request.fd, request.at, request.length);
    } catch (error) {
      segment.failed = (error as Error).message;
    }
    return;
  }
  running.delete(request.id);
  reply(segment.failed === undefined ? { id: request.id, hex: segment.hash.digest('hex') } : { id: request.id, error: segment.failed });
});
