/**
 * What `offchannel capture` tells Prometheus (config `metrics`; docs/metrics.md). Every series
 * is labelled by stream name (`<channel>:<account>`) at most, plus a state, record kind or
 * error code from fixed vocabularies: never a conversation, a sender or message content.
 *
 * Fed by the recorder (`onCapture`: kinds, latency, errors), the account supervisors (failure
 * codes), the forwarder (`onForwarded`: spool backlog and lag) and the capture runner
 * (`noteAttestation`). States and ages are read when Prometheus scrapes.
 */
import { type BlobsPrunedEvent, type CaptureEvent, type ForwardedEvent, type PrunedEvent, RECORD_KINDS } from '@offchannel/core';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AccountSnapshot } from './account-supervisor.ts';

/** Every state a stream can show: the account's, or its running connector's own. */
export const STREAM_STATES = [
  'starting', 'running', 'restarting', 'not-linked', 'logged-out', 'claimed-elsewhere', 'failed', 'stopped',
  'idle', 'linking', 'reconnecting', 'stopping',
] as const;

/** Seconds from `capture()` to durable. */
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** An error code used as a label: our codes are upper-case words; anything else is `OTHER`. */
const CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

export interface CaptureMetricsOptions {
  /** The accounts now, read at each scrape. */
  readonly accounts: () => readonly AccountSnapshot[];
  /** Per stream, the last seq the S3 copy holds (S3 archives only), read at each scrape. */
  readonly forwarded?: () => ReadonlyMap<string, number | undefined>;
  /** Default `Date.now`. */
  readonly now?: () => number;
  /** Node.js process metrics (`process_*`, `nodejs_*`). Default true. */
  readonly processMetrics?: boolean;
}

/** Per stream, what the scrape needs beyond the counters. */
interface StreamMarks {
  lastEventAt?: number;
  lastAttestationAt?: number;
  /** Highest seq this process wrote to the spool (0: it wrote none, so the backlog is unknown). */
  spoolHead: number;
  /** This process recorded into the stream. */
  recording: boolean;
  /** Highest seq known copied to S3. */
  forwardedSeq: number;
  /** (seq, time) of the first record written in each second not yet copied: the lag's clock. */
  readonly unforwarded: { seq: number; at: number }[];
}

export class CaptureMetrics {
  readonly registry = new Registry();
  readonly #options: CaptureMetricsOptions;
  readonly #now: () => number;
  readonly #started: number;
  readonly #marks = new Map<string, StreamMarks>();
  readonly #records: Counter<'stream' | 'kind'>;
  readonly #duplicates: Counter<'stream'>;
  readonly #captureErrors: Counter<'stream' | 'code'>;
  readonly #failures: Counter<'stream' | 'code'>;
  readonly #latency: Histogram<'stream'>;
  readonly #unauthorized: Counter;
  readonly #prunedBytes: Counter<'what'>;
  readonly #pruned: Counter<'what'>;
  readonly #prunedUndelivered: Counter<'stream'>;

  constructor(options: CaptureMetricsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#started = this.#now();
    const registers = [this.registry];
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.#records = new Counter({ name: 'offchannel_records_total', help: 'New records written, by stream and record kind.', labelNames: ['stream', 'kind'], registers });
    this.#duplicates = new Counter({ name: 'offchannel_duplicates_total', help: 'Captures already in the archive (replays): nothing new written.', labelNames: ['stream'], registers });
    this.#captureErrors = new Counter({ name: 'offchannel_capture_errors_total', help: 'Captures that failed (not durable, not acknowledged upstream), by error code.', labelNames: ['stream', 'code'], registers });
    this.#failures = new Counter({ name: 'offchannel_connector_failures_total', help: 'Connector failures that restarted or parked an account, by error code.', labelNames: ['stream', 'code'], registers });
    this.#latency = new Histogram({ name: 'offchannel_capture_latency_seconds', help: 'From the connector handing an event to the recorder to the record being durable.', labelNames: ['stream'], buckets: LATENCY_BUCKETS, registers });
    this.#prunedBytes = new Counter({ name: 'offchannel_spool_pruned_bytes_total', help: 'Bytes dropped from the local spool once S3 held them: what="segments" (records) or "blobs".', labelNames: ['what'], registers });
    this.#pruned = new Counter({ name: 'offchannel_spool_pruned_total', help: 'Files dropped from the local spool once S3 held them: what="segments" or "blobs".', labelNames: ['what'], registers });
    this.#prunedUndelivered = new Counter({ name: 'offchannel_spool_pruned_undelivered_records_total', help: 'Records the spool size cap (spoolPrune.maxBytes) dropped before a delivery target had delivered them; each target records them as delivery-missed. Deliver them from S3.', labelNames: ['stream'], registers });
    this.#unauthorized = new Counter({ name: 'offchannel_metrics_unauthorized_requests_total', help: 'Requests to the metrics endpoint refused for a missing or wrong bearer token.', registers });
    const state = new Gauge({
      name: 'offchannel_connector_state',
      help: '1 for the state each stream is in (the running connector\'s own state, else the account\'s: not-linked, logged-out, restarting…), 0 for the others.',
      labelNames: ['stream', 'state'],
      registers,
      collect: () => {
        state.reset();
        for (const account of this.#options.accounts()) {
          const current = account.state === 'running' && account.connector ? account.connector.state : account.state;
          for (const name of STREAM_STATES) state.set({ stream: account.stream, state: name }, name === current ? 1 : 0);
        }
      },
    });
    const sinceEvent = new Gauge({
      name: 'offchannel_seconds_since_last_event',
      help: 'Seconds since this process last captured a platform event on the stream (not system or policy records); +Inf when none since it started.',
      labelNames: ['stream'],
      registers,
      collect: () => {
        sinceEvent.reset();
        for (const account of this.#options.accounts()) sinceEvent.set({ stream: account.stream }, this.#age(this.#marks.get(account.stream)?.lastEventAt));
      },
    });
    const sinceAttestation = new Gauge({
      name: 'offchannel_seconds_since_last_attestation',
      help: 'Seconds since the stream was last attested live; +Inf when never since this process started.',
      labelNames: ['stream'],
      registers,
      collect: () => {
        sinceAttestation.reset();
        for (const account of this.#options.accounts()) sinceAttestation.set({ stream: account.stream }, this.#age(this.#marks.get(account.stream)?.lastAttestationAt));
      },
    });
    if (options.forwarded) {
      const forwarded = options.forwarded;
      // Each gauge computes its own values at collect time: the registry reads them one by one.
      const backlog = new Gauge({
        name: 'offchannel_spool_backlog_records',
        help: 'Records in the local spool not yet copied to S3.',
        labelNames: ['stream'],
        registers,
        collect: () => {
          backlog.reset();
          for (const { stream, behind } of this.#behind(forwarded())) backlog.set({ stream }, behind);
        },
      });
      const lag = new Gauge({
        name: 'offchannel_forwarder_lag_seconds',
        help: 'Age of the oldest record in the spool not yet copied to S3 (0 when none; at least the time since start for records left by an earlier run).',
        labelNames: ['stream'],
        registers,
        collect: () => {
          lag.reset();
          for (const { stream, behind, oldest } of this.#behind(forwarded())) lag.set({ stream }, behind === 0 ? 0 : this.#age(oldest));
        },
      });
    }
  }

  /** `RecorderOptions.onCapture`. */
  readonly observeCapture = (event: CaptureEvent): void => {
    const stream = event.stream;
    if (event.status === 'failed') {
      this.#captureErrors.inc({ stream, code: labelCode(event.code) });
      return;
    }
    this.#latency.observe({ stream }, event.seconds);
    const marks = this.#mark(stream);
    const now = this.#now();
    if (event.kind !== 'system' && event.kind !== 'policy') marks.lastEventAt = now;
    if (event.status === 'duplicate') this.#duplicates.inc({ stream });
    if (event.status !== 'recorded' || event.seq === undefined) return;
    marks.recording = true;
    this.#records.inc({ stream, kind: RECORD_KINDS.find((kind) => kind === event.kind) ?? 'unknown' });
    if (event.seq > marks.spoolHead) {
      marks.spoolHead = event.seq;
      const last = marks.unforwarded.at(-1);
      if (!last || now - last.at >= 1000) marks.unforwarded.push({ seq: event.seq, at: now });
    }
  };

  /** `ForwarderOptions.onForwarded`. */
  readonly observeForwarded = (event: ForwardedEvent): void => {
    this.#forwardedTo(this.#mark(event.stream), event.lastSeq);
  };

  /** `ForwarderOptions.onPruned`: sealed segments dropped from the spool. */
  readonly observePruned = (event: PrunedEvent): void => {
    this.#pruned.inc({ what: 'segments' }, event.segments);
    this.#prunedBytes.inc({ what: 'segments' }, event.bytes);
    if (event.passedHold) this.#prunedUndelivered.inc({ stream: event.stream }, event.passedHold.throughSeq - event.passedHold.fromSeq + 1);
  };

  /** `ForwarderOptions.onBlobsPruned`: blobs dropped from the spool. */
  readonly observeBlobsPruned = (event: BlobsPrunedEvent): void => {
    this.#pruned.inc({ what: 'blobs' }, event.blobs);
    this.#prunedBytes.inc({ what: 'blobs' }, event.bytes);
  };

  /** An account's connector failed; it restarts or is parked (`code`: the error's code). */
  noteFailure(stream: string, code: string): void {
    this.#failures.inc({ stream, code: labelCode(code) });
  }

  /** The stream was attested live at `at` (the attestation hook; see docs/metrics.md). */
  noteAttestation(stream: string, at: Date): void {
    const marks = this.#mark(stream);
    const time = at.getTime();
    if (Number.isFinite(time) && (marks.lastAttestationAt === undefined || time > marks.lastAttestationAt)) marks.lastAttestationAt = time;
  }

  /** A request to the endpoint without the right token. */
  noteUnauthorized(): void {
    this.#unauthorized.inc();
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  async render(): Promise<{ readonly contentType: string; readonly body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  #mark(stream: string): StreamMarks {
    let marks = this.#marks.get(stream);
    if (!marks) {
      marks = { spoolHead: 0, recording: false, forwardedSeq: 0, unforwarded: [] };
      this.#marks.set(stream, marks);
    }
    return marks;
  }

  /**
   * Per stream this process records into: records not yet copied, and when the oldest of them
   * was written. Streams others write to the spool (delivery receipts) are left out: their head
   * is not known here, and a 0 would be a false all-clear.
   */
  #behind(copied: ReadonlyMap<string, number | undefined>): { readonly stream: string; readonly behind: number; readonly oldest: number }[] {
    return [...this.#marks].flatMap(([stream, marks]) => {
      if (!marks.recording) return [];
      this.#forwardedTo(marks, copied.get(stream) ?? 0);
      return [{ stream, behind: Math.max(0, marks.spoolHead - marks.forwardedSeq), oldest: marks.unforwarded[0]?.at ?? this.#started }];
    });
  }

  #forwardedTo(marks: StreamMarks, seq: number): void {
    if (seq <= marks.forwardedSeq) return;
    marks.forwardedSeq = seq;
    marks.spoolHead = Math.max(marks.spoolHead, seq);
    let drop = 0;
    while (drop < marks.unforwarded.length && (marks.unforwarded[drop]?.seq ?? Infinity) <= seq) drop++;
    marks.unforwarded.splice(0, drop);
  }

  /** Seconds since `at`, never negative; +Inf for never. */
  #age(at: number | undefined): number {
    return at === undefined ? Infinity : Math.max(0, (this.#now() - at) / 1000);
  }
}

function labelCode(code: string | undefined): string {
  return code !== undefined && CODE.test(code) ? code : 'OTHER';
}
