/**
 * The running SHA-256 of an active segment, which its seal records, computed on a worker thread.
 *
 * Every byte appended to a segment is hashed once more for the seal (the recorder has already
 * hashed each record for the chain). On the main thread that second pass cost about as much as
 * anything else the sink does per record. Here the main thread only tells the worker where each
 * appended batch lies in the file (descriptor, offset, length: no copy of the bytes, nothing
 * transferred) and the worker reads them back and hashes them, in the order they were sent, in
 * parallel with the next batch. The digest is asked for only when the segment is sealed, and
 * the descriptor is closed only after the worker answered (digest) or acknowledged (discard).
 *
 * Nothing about durability depends on it: the seal is written after the digest arrives, and a
 * segment is never acknowledged on its seal. If the worker fails or a read back fails, the digest
 * rejects and the seal hashes the segment's file instead (stream-appender.ts); a worker that
 * failed before it came online is not started again in this process (every segment then hashes
 * locally). A worker that does not answer a digest or discard within
 * {@link SEGMENT_HASH_TIMEOUT_MS} (a read of a segment blocked: a stuck network file system, a
 * descriptor that is not a regular file) is given up the same way — its waits reject with
 * {@link SegmentHashTimeoutError}, it is terminated, and no worker is started again in this
 * process — so a seal or a close never waits on it forever. A segment recovered at open keeps its hash on the main thread
 * ({@link localSegmentHash}): the state of a running hash cannot be handed over.
 */
import type { Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { OffchannelError } from '@offchannel/core';
import type { SegmentHashReply, SegmentHashRequest } from './segment-hash-worker.ts';

/**
 * How long a digest or discard waits for the worker. Its reads come from the page cache (the
 * bytes were just written): a 32 MiB segment takes well under a second even on a loaded host.
 */
export const SEGMENT_HASH_TIMEOUT_MS = 60_000;

/** The segment-hash worker did not answer in time: the seal hashes the file on the calling thread. */
export class SegmentHashTimeoutError extends OffchannelError {
  constructor(ms: number) {
    super(
      'SEGMENT_HASH_TIMEOUT',
      `the segment-hash worker did not answer within ${ms} ms: a read of a segment file is blocked (a stuck network file system or a file that is not a regular file). The seal hashes the file on the main thread instead and this process no longer uses the worker; check the archive's file system, then restart the process`,
      { logSafe: true, disposition: 'retryable' },
    );
  }
}

/** A segment's running SHA-256. */
export interface SegmentHash {
  /**
   * Adds `bytes`, just written durably at offset `at` of the segment's file (appends are
   * contiguous: `at` is the size before them). Used at once, never kept: the caller may reuse them.
   */
  update(bytes: Uint8Array, at: number): void;
  /** The hex digest of everything added; call once, when the segment is sealed. */
  digest(): Promise<string>;
  /** Forgets the hash without a digest (the segment is closed unsealed); close the file after. */
  discard(): Promise<void>;
}

/** A running hash kept on the calling thread (a recovered segment's). */
export function localSegmentHash(hash: Hash): SegmentHash {
  return {
    update: (bytes) => {
      hash.update(bytes);
    },
    digest: async () => hash.copy().digest('hex'),
    discard: async () => undefined,
  };
}

/**
 * A running hash of the file open as descriptor `fd`, kept on the process's segment-hash worker
 * — or, when no worker can be started, on the calling thread (`fallback`). The descriptor must
 * stay open until `digest` or `discard` has settled.
 */
export function workerSegmentHash(fallback: () => Hash, fd: number, options: { readonly timeoutMs?: number; readonly workerFile?: URL } = {}): SegmentHash {
  const timeoutMs = options.timeoutMs ?? SEGMENT_HASH_TIMEOUT_MS;
  let hasher: SegmentHasher;
  try {
    hasher = SegmentHasher.shared(options.workerFile);
  } catch {
    return localSegmentHash(fallback());
  }
  const id = hasher.open();
  return {
    update: (bytes, at) => {
      hasher.update(id, fd, at, bytes.length);
    },
    digest: () => hasher.digest(id, timeoutMs),
    discard: () => hasher.discard(id, timeoutMs),
  };
}

/** One worker thread for all segments of the process; replaced after a failure. */
class SegmentHasher {
  private static current: SegmentHasher | undefined;
  /** Set when a worker failed before it ever came online (its file missing, a bundle without it). */
  private static unavailable = false;
  private readonly worker: Worker;
  private online = false;
  /** Digests and discards awaited, by segment id (a discard resolves with an empty string). */
  private readonly pending = new Map<number, { resolve: (hex: string) => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private failed: Error | undefined;

  /** `workerFile`: the worker's entry module when one is started (tests); default, the real one. */
  static shared(workerFile?: URL): SegmentHasher {
    const current = SegmentHasher.current;
    if (current?.failed && !current.online) SegmentHasher.unavailable = true;
    // A worker that cannot start never will in this process: the caller hashes on its thread.
    if (SegmentHasher.unavailable) throw new Error('no segment-hash worker in this process');
    if (current && !current.failed) return current;
    const started = new SegmentHasher(workerFile);
    SegmentHasher.current = started;
    return started;
  }

  private constructor(workerFile?: URL) {
    const file = import.meta.url.endsWith('.ts') ? './segment-hash-worker.ts' : './segment-hash-worker.js';
    this.worker = new Worker(workerFile ?? new URL(file, import.meta.url));
    this.worker.on('online', () => {
      this.online = true;
    });
    this.worker.on('message', (reply: SegmentHashReply) => {
      this.online = true;
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.worker.unref();
      if ('error' in reply) waiter?.reject(new Error(`the segment-hash worker could not read the segment back: ${reply.error}`));
      else waiter?.resolve('hex' in reply ? reply.hex : '');
    });
    this.worker.on('error', (error) => {
      this.fail(error as Error);
    });
    this.worker.on('exit', (code) => {
      this.fail(new Error(`the segment-hash worker exited (code ${code})`));
    });
    // Idle, it never keeps the process alive; while a digest is awaited it does (see digest).
    // After the listeners: adding a 'message' listener refs the worker again.
    this.worker.unref();
  }

  open(): number {
    return this.nextId++;
  }

  update(id: number, fd: number, at: number, length: number): void {
    if (this.failed) return; // the digest will reject
    this.worker.postMessage({ id, fd, at, length } satisfies SegmentHashRequest);
  }

  /** Resolves once the worker is done with segment `id` (at once if the worker failed; after `timeoutMs` if it hangs). */
  async discard(id: number, timeoutMs: number): Promise<void> {
    if (this.failed) return;
    await this.ask(id, { id, discard: true }, timeoutMs).catch(() => undefined); // failed: it reads no more
  }

  digest(id: number, timeoutMs: number): Promise<string> {
    if (this.failed) return Promise.reject(this.failed);
    return this.ask(id, { id, digest: true }, timeoutMs);
  }

  private ask(id: number, request: SegmentHashRequest, timeoutMs: number): Promise<string> {
    const { promise, resolve, reject } = Promise.withResolvers<string>();
    if (this.pending.size === 0) this.worker.ref();
    // The worker answers in order: no answer in time means it is stuck in a read, for every waiter.
    const timer = setTimeout(() => {
      this.giveUp(new SegmentHashTimeoutError(timeoutMs));
    }, timeoutMs);
    timer.unref();
    const settle = (): void => {
      clearTimeout(timer);
    };
    this.pending.set(id, {
      resolve: (hex) => {
        settle();
        resolve(hex);
      },
      reject: (error) => {
        settle();
        reject(error);
      },
    });
    this.worker.postMessage(request);
    return promise;
  }

  /** Fails every waiter; the worker is not used again. */
  private fail(error: Error): void {
    this.failed ??= error;
    for (const waiter of this.pending.values()) waiter.reject(this.failed);
    this.pending.clear();
  }

  /**
   * A worker stuck in a read: fail its waiters, start no other in this process (it would block on
   * the same file system), and terminate it — which takes effect once its read returns, if ever;
   * unreferenced meanwhile, it never keeps the process alive.
   */
  private giveUp(error: SegmentHashTimeoutError): void {
    SegmentHasher.unavailable = true;
    this.fail(error);
    this.worker.unref();
    void this.worker.terminate();
  }
}
