/**
 * Parallel verification of one stream: the sink hands out chunks (segments, or pieces of them
 * in a buffer the sink reuses), this thread cuts
 * them into line-aligned slices of at most {@link SLICE_BYTES}, copied into a few buffers that
 * go to a worker and come back, worker threads verify the slices (verify-chunk.ts), and
 * this thread stitches the results in order — chain across chunks, contiguous seq, unique
 * keys, blobs, Merkle roots against the checkpoints. Reading and sending slices runs on its
 * own ({@link SliceReader}) while results are stitched, so file reads and stitching overlap.
 * At most two slices per worker are in flight, so the workers' heaps stay small whatever the
 * segment size. It gives
 * up (returns `undefined`, having reported nothing) when the stream is too small to be worth
 * it or anything looks wrong; the sequential verifier then names the problem precisely.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Sink, StreamHead } from '../sink/sink.ts';
import type { CheckpointCheck } from './checkpoint-check.ts';
import type { VerifyChunkRequest, VerifyChunkResult } from './verify-chunk.ts';
import { KeyFingerprints } from './key-fingerprints.ts';

/** Largest slice of a segment sent to a worker (a longer line is no record: the sequential pass reports it). */
export const SLICE_BYTES = 4 * 1024 * 1024;

/**
 * Cuts `bytes` (whole records, each ending in a newline; the first has seq `firstSeq`) into
 * line-aligned slices of at most `maxBytes` (views of `bytes`, not copies).
 */
export function* lineSlices(firstSeq: number, segment: Uint8Array, maxBytes = SLICE_BYTES): Generator<{ firstSeq: number; bytes: Uint8Array }> {
  // A Buffer view (no copy): its indexOf is a native byte search, a Uint8Array's is not.
  const bytes = Buffer.from(segment.buffer, segment.byteOffset, segment.byteLength);
  let start = 0;
  let seq = firstSeq;
  while (start < bytes.length) {
    let end = start + maxBytes >= bytes.length ? bytes.length : bytes.lastIndexOf(0x0a, start + maxBytes - 1) + 1;
    if (end <= start) {
      // One line longer than maxBytes: whole (or the rest, if it has no newline).
      const newline = bytes.indexOf(0x0a, start);
      end = newline === -1 ? bytes.length : newline + 1;
    }
    yield { firstSeq: seq, bytes: bytes.subarray(start, end) };
    if (end === bytes.length) break; // no next slice to number (a sink's piece is often one slice)
    for (let at = bytes.indexOf(0x0a, start); at !== -1 && at < end; at = bytes.indexOf(0x0a, at + 1)) seq++;
    start = end;
  }
}

type Segment = { readonly firstSeq: number; readonly bytes: Uint8Array };

async function firstSegments(segments: AsyncIterator<Segment>, count: number): Promise<Segment[]> {
  const found: Segment[] = [];
  while (found.length < count) {
    const next = await segments.next();
    if (next.done) break;
    // Copied: the sink may use the buffer again for the next chunk (see `Sink.readSegments`).
    found.push({ firstSeq: next.value.firstSeq, bytes: new Uint8Array(next.value.bytes) });
  }
  return found;
}

/** Every segment of `stream` as slices (see {@link lineSlices}); one segment is held at a time. */
async function* streamSlices(segments: AsyncIterator<Segment>, pending: Segment[]): AsyncGenerator<{ firstSeq: number; bytes: Uint8Array }> {
  for (let segment = pending.shift(); segment; segment = pending.shift()) yield* lineSlices(segment.firstSeq, segment.bytes);
  for (let next = await segments.next(); !next.done; next = await segments.next()) yield* lineSlices(next.value.firstSeq, next.value.bytes);
}

/** A finding the parallel pass would report if it completes. */
export interface PendingFinding {
  readonly seq: number;
  readonly kind: 'duplicate-key' | 'blob';
  readonly field?: string;
  readonly sha256?: string;
  readonly size?: number;
  /** For a duplicate key: earlier seqs whose keys share its fingerprint (to confirm by reading both records' keys). */
  readonly candidates?: readonly number[];
}

export interface ParallelOutcome {
  readonly records: number;
  readonly head: StreamHead;
  /** Duplicate-key candidates and unsound blob references, in seq order, for the caller to check and report. */
  readonly findings: readonly PendingFinding[];
  /** Size of the pool that did the work. */
  readonly workers: number;
}

/**
 * The buffers slices travel in: transferred to a worker with a slice, transferred back with
 * its result, and used again. Verification then leaves no garbage buffers for the garbage
 * collector to free late, in this thread or in the workers.
 */
class SliceBuffers {
  private readonly free: ArrayBuffer[] = [];

  /** A copy of `bytes` in a buffer of its own (a reused one when it fits). */
  copy(bytes: Uint8Array): Uint8Array {
    const buffer = bytes.length <= SLICE_BYTES ? (this.free.pop() ?? new ArrayBuffer(SLICE_BYTES)) : new ArrayBuffer(bytes.length);
    const copy = new Uint8Array(buffer, 0, bytes.length);
    copy.set(bytes);
    return copy;
  }

  /** A buffer back from a worker. */
  release(buffer: ArrayBuffer | undefined): void {
    if (buffer?.byteLength === SLICE_BYTES) this.free.push(buffer);
  }
}

/** Heap limits of a worker (MiB): ample for one slice, small enough that garbage is collected early. */
const WORKER_LIMITS = { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 8 };

/** A small pool of verification workers. */
export class VerifyPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: (() => void)[] = [];
  private readonly pending = new Map<number, { resolve: (result: VerifyChunkResult) => void; reject: (error: Error) => void }>();
  private readonly buffers = new SliceBuffers();
  private broken: Error | undefined;

  private constructor() {}

  /** Starts `size` workers, or returns `undefined` if fewer than two would help. */
  static create(size = availableParallelism()): VerifyPool | undefined {
    if (size < 2) return undefined;
    const pool = new VerifyPool();
    const file = import.meta.url.endsWith('.ts') ? './verify-worker.ts' : './verify-worker.js';
    try {
      for (let index = 0; index < size; index++) {
        // A worker holds one slice's records at a time: a small heap makes it collect early.
        const worker = new Worker(new URL(file, import.meta.url), { resourceLimits: WORKER_LIMITS });
        worker.on('message', (result: VerifyChunkResult) => {
          pool.buffers.release(result.returned);
          const entry = pool.pending.get(result.id);
          pool.pending.delete(result.id);
          pool.release(worker);
          entry?.resolve(result);
        });
        worker.on('error', (error: Error) => {
          pool.fail(error);
        });
        pool.workers.push(worker);
        pool.idle.push(worker);
      }
    } catch {
      void pool.close();
      return undefined;
    }
    return pool;
  }

  get size(): number {
    return this.workers.length;
  }

  get usable(): boolean {
    return this.broken === undefined;
  }

  /**
   * Verifies a chunk in a worker; `request.bytes` is copied, before this returns, into a
   * buffer the worker hands back.
   */
  run(request: VerifyChunkRequest): Promise<VerifyChunkResult> {
    // Copied now, before waiting for a worker: the sink may reuse `request.bytes` for its next chunk.
    return this.send({ ...request, bytes: this.buffers.copy(request.bytes) });
  }

  private async send(request: VerifyChunkRequest): Promise<VerifyChunkResult> {
    const bytes = request.bytes;
    while (this.idle.length === 0) {
      if (this.broken) throw this.broken;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    if (this.broken) throw this.broken;
    const worker = this.idle.pop() as Worker;
    const { promise, resolve, reject } = Promise.withResolvers<VerifyChunkResult>();
    this.pending.set(request.id, { resolve, reject });
    worker.postMessage({ ...request, bytes }, [bytes.buffer as ArrayBuffer]);
    return promise;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private release(worker: Worker): void {
    this.idle.push(worker);
    this.waiting.shift()?.();
  }

  private fail(error: Error): void {
    this.broken = error;
    for (const entry of this.pending.values()) entry.reject(error);
    this.pending.clear();
    for (const wake of this.waiting.splice(0)) wake();
  }
}

/**
 * Reads the slices and sends them to the workers (`submit`) whenever `room()` allows, on its
 * own, while the caller waits for and stitches the results: reading a piece (file I/O) and
 * stitching a result then overlap instead of taking turns, and the workers wait less. It
 * stops at the end, at an error or a line longer than a slice (`failed`: the caller verifies
 * sequentially), or when told to.
 */
class SliceReader {
  /** The slices ended, or reading stopped: no more will be sent. */
  finished = false;
  /** Set when reading failed or a line was longer than a slice. */
  failed = false;
  private stopped = false;
  private wakeReader: (() => void) | undefined;
  private wakeCaller: (() => void) | undefined;
  private readonly running: Promise<void>;
  private readonly slices: AsyncGenerator<{ firstSeq: number; bytes: Uint8Array }>;
  private readonly submit: (slice: { firstSeq: number; bytes: Uint8Array }) => void;
  private readonly room: () => boolean;

  constructor(slices: AsyncGenerator<{ firstSeq: number; bytes: Uint8Array }>, submit: (slice: { firstSeq: number; bytes: Uint8Array }) => void, room: () => boolean) {
    this.slices = slices;
    this.submit = submit;
    this.room = room;
    this.running = this.run();
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        while (!this.stopped && !this.room()) await new Promise<void>((resolve) => (this.wakeReader = resolve));
        if (this.stopped) return;
        const next = await this.slices.next();
        if (next.done || this.stopped) return;
        // A line longer than a slice is longer than any record: the sequential pass names it.
        if (next.value.bytes.length > SLICE_BYTES) {
          this.failed = true;
          return;
        }
        this.submit(next.value);
        this.arrived();
      }
    } catch {
      this.failed = true;
    } finally {
      this.finished = true;
      this.arrived();
    }
  }

  private arrived(): void {
    const wake = this.wakeCaller;
    this.wakeCaller = undefined;
    wake?.();
  }

  /** A result was taken: there may be room for another slice. */
  wake(): void {
    const wake = this.wakeReader;
    this.wakeReader = undefined;
    wake?.();
  }

  /** Waits until a slice was sent or reading ended. */
  async arrival(): Promise<void> {
    if (!this.finished) await new Promise<void>((resolve) => (this.wakeCaller = resolve));
  }

  /** Stops reading (at the next slice) and waits for the reader to let go of the slices. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.running;
  }
}

/** Verifies `stream` with the pool; `undefined` when the caller should verify it sequentially. */
export async function verifyStreamParallel(
  sink: Sink,
  stream: string,
  getPool: () => VerifyPool | undefined,
  checkpoints: CheckpointCheck | undefined,
  blobSound: (sha256: string, size: number) => Promise<boolean>,
  onProgress?: (seq: number) => void,
): Promise<ParallelOutcome | undefined> {
  if (!sink.readSegments) return undefined;
  const chunks = sink.readSegments(stream)[Symbol.asyncIterator]();
  // Two chunks at least, or it is not worth the workers; held (copied) only until they are sliced.
  const pending = await firstSegments(chunks, 2);
  const pool = pending.length < 2 ? undefined : getPool();
  if (!pool?.usable) {
    await chunks.return?.();
    return undefined;
  }
  const inFlight: Promise<VerifyChunkResult>[] = [];
  let id = 0;
  const submit = (chunk: { firstSeq: number; bytes: Uint8Array }): void => {
    const result = pool.run({ id: id++, stream, firstSeq: chunk.firstSeq, bytes: chunk.bytes });
    result.catch(() => undefined); // awaited below in order; never left unhandled if we stop early
    inFlight.push(result);
  };
  const slices = streamSlices(chunks, pending);
  const reader = new SliceReader(slices, submit, () => inFlight.length < pool.size * 2);
  let head: StreamHead = { seq: 0, hash: '0'.repeat(64) };
  const keys = new KeyFingerprints();
  const findings: PendingFinding[] = [];
  try {
    for (;;) {
      // The next result in order, while the reader reads and sends the slices after it.
      if (inFlight.length === 0) {
        if (reader.finished) break;
        await reader.arrival();
        continue;
      }
      const result = await (inFlight.shift() as Promise<VerifyChunkResult>);
      reader.wake();
      if (reader.failed || result.problem !== undefined || result.count === 0) return undefined;
      if (result.firstSeq !== head.seq + 1 || result.firstPrev !== head.hash) return undefined;
      let blob = 0;
      for (let index = 0; index < result.count; index++) {
        const seq = result.firstSeq + index;
        const candidates = keys.addFingerprint(result.fingerprints[index] as number, seq);
        if (candidates) findings.push({ seq, kind: 'duplicate-key', candidates });
        // Blob references in record order, after the record's key check (as the sequential pass does).
        for (; blob < result.blobs.length && (result.blobs[blob] as readonly [number, string, string, number])[0] === seq; blob++) {
          const [, field, sha256, size] = result.blobs[blob] as readonly [number, string, string, number];
          // Only unsound references are kept (the caller reports them): memory does not grow with the blobs.
          if (!(await blobSound(sha256, size))) findings.push({ seq, kind: 'blob', field, sha256, size });
        }
        if (seq % 1000 === 0) onProgress?.(seq);
      }
      checkpoints?.feedLeaves(result.leaves, result.count, result.firstSeq, result.tileRoots);
      head = { seq: result.firstSeq + result.count - 1, hash: result.lastHash };
    }
    if (reader.failed) return undefined;
  } catch {
    return undefined;
  } finally {
    await reader.stop();
    await slices.return(undefined);
    await chunks.return?.();
  }
  if (head.seq === 0) return undefined;
  return { records: head.seq, head, findings, workers: pool.size };
}
