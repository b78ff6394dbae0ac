import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ExportJob } from '../export-job.ts';
import { ExportError } from '../export-error.ts';
import type { ConversationSummary } from '../index-db/archive-index.ts';
import type { CheckpointRef } from './rsmf-slice.ts';
import type { WrittenFile } from '../written-file.ts';

/** What the worker is started with (rsmf-worker.ts). */
export interface RsmfWorkerData {
  readonly indexFile: string;
  readonly dir: string;
  readonly temp: string;
  readonly range: ExportJob['range'];
  readonly checkpoints: readonly (readonly [string, CheckpointRef])[];
  readonly generator: string;
}

/** Main thread → worker. */
export type ToRsmfWorker =
  | { readonly type: 'conversation'; readonly conversation: ConversationSummary }
  | { readonly type: 'blob'; readonly id: number; readonly bytes: Uint8Array | null; readonly failed?: true }
  | { readonly type: 'stop' }
  | { readonly type: 'end' };

/** Worker → main thread. */
export type FromRsmfWorker =
  | { readonly type: 'blob'; readonly id: number; readonly sha256: string }
  | { readonly type: 'written'; readonly file: WrittenFile }
  | { readonly type: 'events'; readonly count: number }
  | { readonly type: 'done' }
  | { readonly type: 'failed'; readonly code: string | undefined; readonly message: string };

/**
 * Heap limits of the worker (MiB): it holds one event and one slice's participants and
 * attachment list at a time; a small young generation keeps its resident memory small.
 */
const WORKER_LIMITS = { maxOldGenerationSizeMb: 128, maxYoungGenerationSizeMb: 16 };

/**
 * The second thread of an RSMF export: writes whole conversations from the index (opened
 * read-only) while the main thread writes others. Blobs (long texts, attachments) are read by
 * the main thread from the sink and checked against their hash in the worker, as on the main
 * thread (verified-blob.ts). A failure in the worker stops the export with the same error code
 * and message.
 */
export class RsmfWorker {
  readonly #worker: Worker;
  readonly #job: ExportJob;
  #exited = false;
  /** An error of the main thread's sink while serving a blob: reported instead of the worker's consequence. */
  #blobError: unknown;

  private constructor(worker: Worker, job: ExportJob) {
    this.#worker = worker;
    this.#job = job;
    worker.once('exit', () => {
      this.#exited = true;
    });
  }

  /** Starts the worker, or returns `undefined` on a single core or when a worker cannot start (the main thread then writes everything). */
  static start(job: ExportJob, dir: string): RsmfWorker | undefined {
    if (availableParallelism() < 2) return undefined;
    const workerData: RsmfWorkerData = { indexFile: job.index.file, dir, temp: job.temp, range: job.range, checkpoints: [...job.checkpoints], generator: job.generator };
    const file = import.meta.url.endsWith('.ts') ? './rsmf-worker.ts' : './rsmf-worker.js';
    try {
      return new RsmfWorker(new Worker(new URL(file, import.meta.url), { workerData, resourceLimits: WORKER_LIMITS }), job);
    } catch {
      return undefined;
    }
  }

  /**
   * Gives the worker conversations from `take` one at a time until it returns none; `count`
   * gets the worker's events as they are written. Resolves when the worker has finished and
   * exited, rejects with its failure.
   */
  run(take: () => ConversationSummary | undefined, count: (events: number) => void): Promise<void> {
    const worker = this.#worker;
    return new Promise<void>((resolve, reject) => {
      let failed = false;
      const fail = (error: unknown): void => {
        if (failed) return;
        failed = true;
        reject(this.#blobError ?? error);
      };
      const next = (): void => {
        const conversation = take();
        worker.postMessage(conversation ? ({ type: 'conversation', conversation } satisfies ToRsmfWorker) : ({ type: 'end' } satisfies ToRsmfWorker));
      };
      worker.on('message', (message: FromRsmfWorker) => {
        try {
          switch (message.type) {
            case 'blob':
              this.#serveBlob(message.id, message.sha256);
              break;
            case 'written':
              this.#job.written(message.file);
              break;
            case 'events':
              count(message.count);
              break;
            case 'done':
              next();
              break;
            case 'failed':
              fail(message.code?.startsWith('EXPORT_') ? new ExportError(message.code as ExportError['code'], message.message) : new Error(`RSMF worker thread: ${message.message}`));
              break;
          }
        } catch (error) {
          // `count` reports progress, which throws when the export is aborted.
          worker.postMessage({ type: 'stop' } satisfies ToRsmfWorker);
          fail(error);
        }
      });
      worker.once('error', fail);
      worker.once('exit', (code) => {
        if (code === 0 && !failed) resolve();
        else fail(new Error(`the RSMF worker thread exited with code ${code}`));
      });
      next();
    });
  }

  /** Stops the worker after its current event (its partial files are removed by its own cleanup) and waits for it to exit. */
  async stop(): Promise<void> {
    if (this.#exited) return;
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.postMessage({ type: 'stop' } satisfies ToRsmfWorker);
    const timer = setTimeout(() => void this.#worker.terminate(), 30_000);
    await exited;
    clearTimeout(timer);
  }

  #serveBlob(id: number, sha256: string): void {
    this.#job.sink.getBlob(sha256).then(
      (bytes) => {
        if (!this.#exited) this.#worker.postMessage({ type: 'blob', id, bytes: bytes ?? null } satisfies ToRsmfWorker);
      },
      (error: unknown) => {
        this.#blobError ??= error;
        if (!this.#exited) this.#worker.postMessage({ type: 'blob', id, bytes: null, failed: true } satisfies ToRsmfWorker);
      },
    );
  }
}
