/**
 * Downloads media after its message is archived, a bounded number at a time.
 *
 * Baileys has acknowledged a message before the connector sees it, so nothing may hold up the
 * capture of the messages behind it: a slow or silent media server only delays the
 * attachment's own follow-up record (map-whatsapp.ts, `mapMediaOutcome`). Every submitted
 * download ends in exactly one outcome — the file, the reason it failed (`timeout`, after the
 * downloader's timeout), or `stopped` when the connector stops first. {@link MediaQueue.close}
 * does not wait for a download to notice the abort: it reports `stopped` at once and ignores
 * whatever the download does later, so stop() cannot hang on a media server.
 */
import type { MediaDownloader } from './media-download.ts';
import { MediaUnavailableError } from './media-unavailable-error.ts';
import type { MediaOutcome, PendingMedia } from './map-whatsapp.ts';

/** Default downloads in flight per account. */
export const DEFAULT_MEDIA_CONCURRENCY = 4;

interface Running {
  readonly media: PendingMedia;
  readonly abort: AbortController;
  settled: boolean;
}

export class MediaQueue {
  readonly #download: MediaDownloader;
  readonly #concurrency: number;
  readonly #onOutcome: (media: PendingMedia, outcome: MediaOutcome) => void;
  readonly #waiting: PendingMedia[] = [];
  readonly #running = new Set<Running>();
  #closed = false;
  #idle: (() => void)[] = [];

  constructor(download: MediaDownloader, concurrency: number, onOutcome: (media: PendingMedia, outcome: MediaOutcome) => void) {
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) throw new RangeError('media concurrency must be a positive integer');
    this.#download = download;
    this.#concurrency = concurrency;
    this.#onOutcome = onOutcome;
  }

  /** Downloads waiting or running. */
  get size(): number {
    return this.#waiting.length + this.#running.size;
  }

  /** Queues a download; after close() it is reported `stopped` at once. */
  submit(media: PendingMedia): void {
    if (this.#closed) {
      this.#report(media, { reason: 'stopped' });
      return;
    }
    this.#waiting.push(media);
    this.#next();
  }

  /** Resolves when nothing is waiting or running. */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Accepts downloads again (the connector is starting). */
  open(): void {
    this.#closed = false;
  }

  /** Cancels everything: each waiting or running download is reported `stopped`, now. */
  close(): void {
    this.#closed = true;
    for (const media of this.#waiting.splice(0)) this.#report(media, { reason: 'stopped' });
    for (const job of this.#running) {
      job.abort.abort();
      this.#settle(job, { reason: 'stopped' });
    }
  }

  #next(): void {
    while (!this.#closed && this.#running.size < this.#concurrency && this.#waiting.length > 0) {
      const media = this.#waiting.shift() as PendingMedia;
      const job: Running = { media, abort: new AbortController(), settled: false };
      this.#running.add(job);
      this.#download(media.ref, job.abort.signal).then(
        (bytes) => { this.#settle(job, { bytes }); },
        (error: unknown) => { this.#settle(job, { reason: reasonOf(error) }); },
      );
    }
    if (this.size === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  #settle(job: Running, outcome: MediaOutcome): void {
    if (job.settled) return;
    job.settled = true;
    this.#running.delete(job);
    this.#report(job.media, outcome);
    this.#next();
  }

  #report(media: PendingMedia, outcome: MediaOutcome): void {
    this.#onOutcome(media, outcome);
  }
}

/** A short code for the record; never the error's message (it could name a URL or a person). */
function reasonOf(error: unknown): string {
  if (error instanceof MediaUnavailableError) return error.reason;
  return `download-failed: ${error instanceof Error ? error.name : 'unknown'}`;
}
