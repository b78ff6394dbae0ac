/**
 * The running SHA-256 of an active segment, which its seal records, computed on a worker thread.
 *
 * Every byte appended to a segment is hashed once more for the seal (the recorder has already
 * hashed each record for the chain). On the main thread that second pass cost about as much as
 * anything else the sink does per record; here the main thread only copies each batch once
 * (memcpy, no hashing) and posts it, and one worker per process hashes the bytes in the order
 * they were sent, in parallel with the next batch. The digest is asked for only when the segment
 * is sealed.
 *
 * Nothing about durability depends on it: the seal is written after the digest arrives, and a
 * segment is never acknowledged on its seal. If the worker fails, every pending digest rejects
 * and the seal hashes the segment's file instead (stream-appender.ts); a worker that failed before
 * it came online is not started again in this process (every segment then hashes locally). A segment recovered at open keeps its hash on the
 * main thread ({@link localSegmentHash}): the state of a running hash cannot be handed over.
 */
import type { Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { SegmentHashRequest } from './segment-hash-worker.ts';

/** A segment's running SHA-256. */
export interface SegmentHash {
  /** Adds appended bytes (copied at once: the caller may reuse its buffer). */
  update(bytes: Uint8Array): void;
  /** The hex digest of everything added; call once, when the segment is sealed. */
  digest(): Promise<string>;
  /** Forgets the hash without a digest (the segment is closed unsealed). */
  discard(): void;
}

/** A running hash kept on the calling thread (a recovered segment's). */
export function localSegmentHash(hash: Hash): SegmentHash {
  return {
    update: (bytes) => {
      hash.update(bytes);
    },
    digest: async () => hash.copy().digest('hex'),
    discard: () => undefined,
  };
}

/**
 * A running hash kept on the process's segment-hash worker — or, when no worker can be started,
 * on the calling thread (`fallback`).
 */
export function workerSegmentHash(fallback: () => Hash): SegmentHash {
  let hasher: SegmentHasher;
  try {
    hasher = SegmentHasher.shared();
  } catch {
    return localSegmentHash(fallback());
  }
  const id = hasher.open();
  return {
    update: (bytes) => {
      hasher.update(id, bytes);
    },
    digest: () => hasher.digest(id),
    discard: () => {
      hasher.discard(id);
    },
  };
}

/** One worker thread for all segments of the process; replaced after a failure. */
class SegmentHasher {
  private static current: SegmentHasher | undefined;
  /** Set when a worker failed before it ever came online (its file missing, a bundle without it). */
  private static unavailable = false;
  private readonly worker: Worker;
  private online = false;
  private readonly pending = new Map<number, { resolve: (hex: string) => void; reject: (error: Error) => void }>();
  private nextId = 1;
  private failed: Error | undefined;

  static shared(): SegmentHasher {
    const current = SegmentHasher.current;
    if (current?.failed && !current.online) SegmentHasher.unavailable = true;
    // A worker that cannot start never will in this process: the caller hashes on its thread.
    if (SegmentHasher.unavailable) throw new Error('no segment-hash worker in this process');
    if (current && !current.failed) return current;
    const started = new SegmentHasher();
    SegmentHasher.current = started;
    return started;
  }

  private constructor() {
    const file = import.meta.url.endsWith('.ts') ? './segment-hash-worker.ts' : './segment-hash-worker.js';
    this.worker = new Worker(new URL(file, import.meta.url));
    this.worker.on('online', () => {
      this.online = true;
    });
    this.worker.on('message', ({ id, hex }: { id: number; hex: string }) => {
      this.online = true;
      const waiter = this.pending.get(id);
      this.pending.delete(id);
      if (this.pending.size === 0) this.worker.unref();
      waiter?.resolve(hex);
    });
    const fail = (error: Error): void => {
      this.failed ??= error;
      for (const waiter of this.pending.values()) waiter.reject(this.failed);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => {
      fail(new Error(`the segment-hash worker exited (code ${code})`));
    });
    // Idle, it never keeps the process alive; while a digest is awaited it does (see digest).
    // After the listeners: adding a 'message' listener refs the worker again.
    this.worker.unref();
  }

  open(): number {
    return this.nextId++;
  }

  update(id: number, bytes: Uint8Array): void {
    if (this.failed) return; // the digest will reject
    // A copy of exactly these bytes, whose memory moves to the worker (no second copy).
    const copy = new Uint8Array(bytes);
    this.worker.postMessage({ id, bytes: copy } satisfies SegmentHashRequest, [copy.buffer]);
  }

  discard(id: number): void {
    if (!this.failed) this.worker.postMessage({ id, discard: true } satisfies SegmentHashRequest);
  }

  digest(id: number): Promise<string> {
    if (this.failed) return Promise.reject(this.failed);
    const { promise, resolve, reject } = Promise.withResolvers<string>();
    if (this.pending.size === 0) this.worker.ref();
    this.pending.set(id, { resolve, reject });
    this.worker.postMessage({ id, digest: true } satisfies SegmentHashRequest);
    return promise;
  }
}
