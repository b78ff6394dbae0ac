/**
 * Small blob files written in batches on a few worker threads (blob-batch.ts), instead of five
 * `node:fs` calls per blob on libuv's thread pool. In a backlog every record stores one blob:
 * each thread-pool call costs the main thread a queued request, a wake-up and a callback, and
 * on the bench host those calls, and the fsyncs issued one per file, were most of an import's
 * CPU time (docs/storage-format.md, "Blob writes"). Here the blobs asked for in one turn of the
 * event loop (and while the workers are busy) go to a worker as one message; it writes, syncs
 * and links them with synchronous calls and answers once. Same files, same durability: a blob's
 * promise resolves only once its data and directory entry are on disk.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ClosedError } from '@offchannel/core';
import type { BlobBatchRequest, BlobBatchResult } from './blob-batch.ts';

/**
 * Worker threads per writer: each has one batch on the disk at a time, so this is how many
 * batches' fdatasyncs overlap (eight measured 1.1–1.15× the iMessage import's rate of four).
 */
export const BLOB_BATCH_WORKERS = 8;
/** Blobs per batch at most (each holds a descriptor until its fsync). */
export const BLOB_BATCH_MAX = 32;
/** Bytes per batch at most; a larger blob is written alone. */
const BATCH_BYTES = 1024 * 1024;
/** A worker's heap: it holds one batch's outcomes at a time (the bytes are transferred, off-heap). */
const WORKER_LIMITS = { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 };

/** The worker's entry module, beside this one (sources or the built package). */
const WORKER_FILE = new URL(import.meta.url.endsWith('.ts') ? './blob-batch-worker.ts' : './blob-batch-worker.js', import.meta.url);

interface Entry {
  readonly target: string;
  readonly bytes: Uint8Array;
  readonly resolve: (created: boolean) => void;
  readonly reject: (error: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  readonly prefix: string;
  batch: Entry[] | undefined;
  /** Set once the thread is running: until then nothing is sent to it. */
  online: boolean;
  /** Resolves when the batch on the disk has come back (or its worker was lost). */
  back: PromiseWithResolvers<undefined> | undefined;
}

/** A blob refused because the sink closed before it was written: nothing stored. */
const closedError = (): Error => new ClosedError('fs sink (this blob was not stored)');

export class BlobBatchWriter {
  readonly #tmpDir: string;
  readonly #syncDirectory: (dir: string) => Promise<void>;
  readonly #alone: (target: string, bytes: Uint8Array) => Promise<boolean>;
  readonly #workers: number;
  readonly #workerFile: URL;
  readonly #slots: Slot[] = [];
  #queue: Entry[] = [];
  #scheduled = false;
  #nextId = 0;
  #closed = false;
  /** Set once a worker could not start or died: from then on every blob is written alone. */
  #broken = false;
  readonly #onBroken: (() => void) | undefined;

  /** Whether every blob is now written alone (no threads, or they failed). */
  get broken(): boolean {
    return this.#broken;
  }

  /** Whether blobs go in batches now (a thread runs); if not, they are written alone. */
  get batching(): boolean {
    return !this.#broken && this.#slots.some((slot) => slot.online);
  }

  /**
   * `syncDirectory` makes the links durable: one call per batch and directory, after its links
   * (fs-utils' group commit serves the batches of every worker linked meanwhile at once).
   * `alone` writes one blob the same way without the workers (`createReadOnlyFile`): used for
   * every blob once a worker could not start or died, and for the batch it held — whose blobs
   * may be linked already: `alone` then finds them (false), for the caller to check and sync.
   */
  constructor(
    tmpDir: string,
    syncDirectory: (dir: string) => Promise<void>,
    alone: (target: string, bytes: Uint8Array) => Promise<boolean>,
    workers = BLOB_BATCH_WORKERS,
    workerFile = WORKER_FILE,
    /** Called once, when the writer gives up on its threads (for the sink to log). */
    onBroken?: () => void,
  ) {
    this.#onBroken = onBroken;
    this.#tmpDir = tmpDir;
    this.#syncDirectory = syncDirectory;
    this.#alone = alone;
    this.#broken = workers < 1; // no threads: every blob alone
    this.#workerFile = workerFile;
    this.#workers = workers;
  }

  /**
   * Creates `target` with `bytes` durably, staged in the temporary directory and hard-linked
   * into place: true once it is durable, false if a file already has the name (left alone, for
   * the caller to check). Rejects with the failed call's error (its `code` kept).
   */
  create(target: string, bytes: Uint8Array): Promise<boolean> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#broken) return this.#alone(target, bytes);
    const { promise, resolve, reject } = Promise.withResolvers<boolean>();
    this.#queue.push({ target, bytes, resolve, reject });
    if (!this.#scheduled) {
      // Every blob asked for in this turn goes in the same batches.
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#dispatch();
      });
    }
    return promise;
  }

  /**
   * Refuses the blobs still queued (`CLOSED`), waits for the batches on the disk to come back
   * (their blobs settle as usual), then stops the workers: no put is left unsettled.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const entry of this.#queue.splice(0)) entry.reject(closedError());
    await Promise.all(this.#slots.map((slot) => slot.back?.promise ?? Promise.resolve()));
    const slots = this.#slots.splice(0);
    await Promise.all(slots.map((slot) => slot.worker.terminate()));
  }

  /**
   * Starts every writer thread and resolves once they run (or there will be none): blobs asked
   * for from then on go in batches. For a caller about to write a backlog, and for tests.
   */
  async ready(): Promise<void> {
    while (!this.#broken && !this.#closed && this.#slots.length < this.#workers) this.#start();
    while (!this.#broken && !this.#closed && !this.#slots.every((slot) => slot.online)) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /**
   * Hands queued blobs to idle running workers, starting workers up to the limit. A blob never
   * waits for a thread to start: while none is running yet, what is queued is written alone.
   */
  #dispatch(): void {
    if (this.#broken) {
      this.#writeAlone(this.#queue.splice(0));
      return;
    }
    while (this.#queue.length > 0) {
      const slot = this.#slots.find((candidate) => candidate.online && candidate.batch === undefined);
      if (!slot) {
        // None idle and running: one more starts (its 'online' dispatches again).
        if (this.#slots.length < this.#workers) this.#start();
        if (this.#broken) return; // #start could not start a worker, and wrote the queue alone
        if (!this.#slots.some((candidate) => candidate.online)) this.#writeAlone(this.#queue.splice(0));
        return;
      }
      const idle = this.#slots.filter((candidate) => candidate.online && candidate.batch === undefined).length;
      // Spread what is queued over the idle workers: more writes on the disk at once.
      const share = Math.min(BLOB_BATCH_MAX, Math.ceil(this.#queue.length / Math.max(1, idle)));
      this.#send(slot, this.#take(share));
    }
  }

  #take(count: number): Entry[] {
    let bytes = 0;
    let taken = 0;
    while (taken < count && taken < this.#queue.length) {
      bytes += (this.#queue[taken] as Entry).bytes.length;
      if (taken > 0 && bytes > BATCH_BYTES) break;
      taken++;
    }
    const batch = this.#queue.slice(0, taken);
    this.#queue = this.#queue.slice(taken);
    return batch;
  }

  #send(slot: Slot, batch: Entry[]): void {
    const ends: number[] = [];
    let size = 0;
    for (const entry of batch) ends.push((size += entry.bytes.length));
    // One buffer per batch, transferred: a blob's view of a larger pool is not copied whole.
    const bytes = new Uint8Array(size);
    for (let index = 0, at = 0; index < batch.length; at = ends[index] as number, index++) bytes.set((batch[index] as Entry).bytes, at);
    const request: BlobBatchRequest = { id: this.#nextId++, tmpDir: this.#tmpDir, prefix: slot.prefix, targets: batch.map((entry) => entry.target), ends, bytes };
    slot.batch = batch;
    slot.back = Promise.withResolvers<undefined>();
    slot.worker.ref();
    slot.worker.postMessage(request, [bytes.buffer]);
  }

  /** Resolves a batch's blobs: the linked ones once their directory's fsync (begun now) is done. */
  #settle(batch: Entry[], result: BlobBatchResult): void {
    const linked = new Map<string, Entry[]>();
    for (const [index, entry] of batch.entries()) {
      const outcome = result.outcomes[index];
      if (outcome === 'linked') {
        const dir = path.dirname(entry.target);
        const entries = linked.get(dir);
        if (entries) entries.push(entry);
        else linked.set(dir, [entry]);
      } else if (outcome === 'exists') entry.resolve(false);
      else entry.reject(Object.assign(new Error(outcome?.message ?? 'the blob writer gave no answer'), { code: outcome?.code ?? 'EIO' }));
    }
    for (const [dir, entries] of linked) {
      // A failed fsync fails every blob it served: a retry finds the file, checks and syncs it.
      this.#syncDirectory(dir).then(
        () => { for (const entry of entries) entry.resolve(true); },
        (error: unknown) => { for (const entry of entries) entry.reject(error instanceof Error ? error : new Error(String(error))); },
      );
    }
  }

  #writeAlone(entries: readonly Entry[]): void {
    for (const entry of entries) this.#alone(entry.target, entry.bytes).then(entry.resolve, entry.reject);
  }

  /**
   * Gives up on the workers: what the lost one held and what is queued is written alone. A
   * worker still writing a batch finishes it (its answer settles the batch, then it stops): its
   * open files are closed by its own code, and its blobs are not written twice.
   */
  #breakDown(held: readonly Entry[]): void {
    if (!this.#broken) this.#onBroken?.();
    this.#broken = true;
    for (const slot of [...this.#slots]) {
      if (slot.batch !== undefined) continue; // stops once its batch is back (see #start)
      this.#slots.splice(this.#slots.indexOf(slot), 1);
      void slot.worker.terminate();
    }
    this.#writeAlone([...held, ...this.#queue.splice(0)]);
  }

  #start(): Slot | undefined {
    if (this.#slots.length >= this.#workers || this.#closed) return undefined;
    let worker: Worker;
    try {
      worker = new Worker(this.#workerFile, { resourceLimits: WORKER_LIMITS });
    } catch {
      this.#breakDown([]);
      return undefined;
    }
    const slot: Slot = { worker, prefix: `${randomBytes(6).toString('hex')}w`, batch: undefined, online: false, back: undefined };
    worker.on('online', () => {
      slot.online = true;
      if (!this.#closed) this.#dispatch();
    });
    worker.on('message', (result: BlobBatchResult) => {
      const batch = slot.batch ?? [];
      slot.batch = undefined;
      worker.unref(); // an idle worker never keeps the process alive
      if (this.#broken && this.#slots.includes(slot)) {
        // The writer gave up on its threads while this one finished its batch: stop it now.
        this.#slots.splice(this.#slots.indexOf(slot), 1);
        void worker.terminate();
      }
      this.#dispatch();
      this.#settle(batch, result);
      slot.back?.resolve(undefined);
    });
    const lost = (): void => {
      if (!this.#slots.includes(slot)) return;
      const held = slot.batch ?? [];
      slot.batch = undefined;
      slot.back?.resolve(undefined);
      // Closing: nothing more is written; what the lost worker held is refused, never left hanging.
      if (this.#closed) for (const entry of held) entry.reject(closedError());
      else this.#breakDown(held);
    };
    worker.on('error', lost);
    worker.on('exit', lost);
    worker.unref();
    this.#slots.push(slot);
    return slot;
  }
}
