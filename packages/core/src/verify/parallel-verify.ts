/**
 * Parallel verification of one stream: the sink hands out whole segments, worker threads
 * verify them (verify-chunk.ts), and this thread stitches the results in order — chain across
 * chunks, contiguous seq, unique keys, blobs, Merkle roots against the checkpoints. It gives
 * up (returns `undefined`, having reported nothing) when the stream is too small to be worth
 * it or anything looks wrong; the sequential verifier then names the problem precisely.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { HASH_BYTES } from '../merkle/merkle-hash.ts';
import type { Sink, StreamHead } from '../sink/sink.ts';
import type { CheckpointCheck } from './checkpoint-check.ts';
import type { VerifyChunkRequest, VerifyChunkResult } from './verify-chunk.ts';
import { KeyFingerprints } from './key-fingerprints.ts';

/** A finding the parallel pass would report if it completes. */
export interface PendingFinding {
  readonly seq: number;
  readonly kind: 'duplicate-key' | 'blob';
  readonly field?: string;
  readonly sha256?: string;
  readonly size?: number;
  /** For a duplicate key: earlier seqs whose keys share its fingerprint, and the key (to confirm). */
  readonly candidates?: readonly number[];
  readonly key?: string;
}

export interface ParallelOutcome {
  readonly records: number;
  readonly head: StreamHead;
  /** Duplicate keys and blob references, in seq order, for the caller to check and report. */
  readonly findings: readonly PendingFinding[];
  /** Size of the pool that did the work. */
  readonly workers: number;
}

/** A small pool of verification workers. */
export class VerifyPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: (() => void)[] = [];
  private readonly pending = new Map<number, { resolve: (result: VerifyChunkResult) => void; reject: (error: Error) => void }>();
  private broken: Error | undefined;

  private constructor() {}

  /** Starts `size` workers, or returns `undefined` if fewer than two would help. */
  static create(size = availableParallelism()): VerifyPool | undefined {
    if (size < 2) return undefined;
    const pool = new VerifyPool();
    const file = import.meta.url.endsWith('.ts') ? './verify-worker.ts' : './verify-worker.js';
    try {
      for (let index = 0; index < size; index++) {
        const worker = new Worker(new URL(file, import.meta.url));
        worker.on('message', (result: VerifyChunkResult) => {
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

  async run(request: VerifyChunkRequest): Promise<VerifyChunkResult> {
    while (this.idle.length === 0) {
      if (this.broken) throw this.broken;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    if (this.broken) throw this.broken;
    const worker = this.idle.pop() as Worker;
    const { promise, resolve, reject } = Promise.withResolvers<VerifyChunkResult>();
    this.pending.set(request.id, { resolve, reject });
    const owned = request.bytes.byteOffset === 0 && request.bytes.byteLength === request.bytes.buffer.byteLength;
    const bytes = owned ? request.bytes : Uint8Array.from(request.bytes);
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

/** Verifies `stream` with the pool; `undefined` when the caller should verify it sequentially. */
export async function verifyStreamParallel(sink: Sink, stream: string, getPool: () => VerifyPool | undefined, checkpoints: CheckpointCheck | undefined, onProgress?: (seq: number) => void): Promise<ParallelOutcome | undefined> {
  if (!sink.readSegments) return undefined;
  const chunks = sink.readSegments(stream)[Symbol.asyncIterator]();
  const first = await chunks.next();
  if (first.done) return undefined;
  const second = await chunks.next();
  if (second.done) {
    await chunks.return?.();
    return undefined; // one segment: not worth the workers
  }
  const pool = getPool();
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
  submit(first.value);
  submit(second.value);
  let reading = true;
  let head: StreamHead = { seq: 0, hash: '0'.repeat(64) };
  const keys = new KeyFingerprints();
  const findings: PendingFinding[] = [];
  try {
    while (inFlight.length > 0) {
      // One segment per worker plus the one being read: memory bounded by the segment size.
      while (reading && inFlight.length < pool.size + 1) {
        const next = await chunks.next();
        if (next.done) reading = false;
        else submit(next.value);
      }
      const result = await (inFlight.shift() as Promise<VerifyChunkResult>);
      if (result.problem !== undefined || result.count === 0) return undefined;
      if (result.firstSeq !== head.seq + 1 || result.firstPrev !== head.hash) return undefined;
      let blob = 0;
      for (let index = 0; index < result.count; index++) {
        const seq = result.firstSeq + index;
        const key = result.keys[index] as string;
        const candidates = keys.add(key, seq);
        if (candidates) findings.push({ seq, kind: 'duplicate-key', candidates, key });
        // Blob references in record order, after the record's key check (as the sequential pass does).
        for (; blob < result.blobs.length && (result.blobs[blob] as readonly [number, string, string, number])[0] === seq; blob++) {
          const [, field, sha256, size] = result.blobs[blob] as readonly [number, string, string, number];
          findings.push({ seq, kind: 'blob', field, sha256, size });
        }
        checkpoints?.feedLeaf(result.leaves.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES), seq);
        if (seq % 1000 === 0) onProgress?.(seq);
      }
      head = { seq: result.firstSeq + result.count - 1, hash: result.lastHash };
    }
  } catch {
    return undefined;
  } finally {
    await chunks.return?.();
  }
  return { records: head.seq, head, findings, workers: pool.size };
}
