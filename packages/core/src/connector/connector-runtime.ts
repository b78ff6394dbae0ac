/**
 * The connector runtime: what every connector shares, once. A connector supplies an
 * {@link EventSource} (connect, deliver, acknowledge) and a mapping (event → capture inputs);
 * the runtime owns, with one meaning everywhere:
 *
 * - **Lifecycle.** `start` / `stop` / `status`; a second `start` is `CONNECTOR_ALREADY_STARTED`.
 *   `stop` stops intake, lets captures in flight finish, acknowledges what became durable,
 *   abandons the rest (not acknowledged: redelivered or reconciled), then closes the source.
 * - **Acknowledge after durable, pipelined.** Events are mapped in order and their captures
 *   issued without waiting for each (the recorder group-commits them), up to `maxInFlight`
 *   events not yet acknowledged. The source's `acknowledge` gets each run of events whose
 *   captures are all settled, in order. Staged sources get whole batches (event-source.ts).
 * - **Archive unavailable.** A capture that fails with a retryable error is retried with
 *   exponential backoff (`retry`, jittered) until it succeeds or the connector stops; nothing
 *   after it is acknowledged meanwhile. A fatal error (another writer owns the stream, the
 *   archive closed) stops the connector (`failed`), acknowledging nothing more.
 * - **Mapping threw.** The event becomes an `unsupported` record (`problem.reason:
 *   mapping-failed`) holding its raw bytes, and is acknowledged. Exceptions: the connector is
 *   stopping (the event is abandoned), or the mapping threw a {@link ConnectorError} whose
 *   disposition is fatal (the connector stops, e.g. its state store failed).
 * - **Counting.** Per capture, exactly one of: captured, duplicates, excluded, unsupported;
 *   each failed attempt adds to `errors` (see {@link ConnectorStatus}).
 * - **Transitions.** Connection changes from the source and `stopped` from the runtime go to
 *   `onTransition` and to `ctx.transition` (the runner may record them as `system` records).
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { sha256Hex } from '../hash/sha256.ts';
import type { CaptureInput, CaptureResult } from '../record/capture-input.ts';
import type { SourceInfo } from '../record/record.ts';
import { CONNECTOR_SPEC_VERSION, type Connector, type ConnectorContext, type ConnectorState, type ConnectorStatus, type ConnectorTransition, type ConnectorTransitionEvent } from './connector.ts';
import { ConnectorError, isRetryable } from './connector-error.ts';
import type { ConnectorEvent, EventSource, EventSourceIo } from './event-source.ts';

/** Turns one event into what to capture (none: the event is out of scope, e.g. typing). */
export type EventMapper<E> = (event: E) => readonly CaptureInput[] | Promise<readonly CaptureInput[]>;

export interface ConnectorRuntimeOptions<E extends ConnectorEvent> {
  readonly channel: string;
  readonly account: string;
  readonly source: SourceInfo;
  readonly events: EventSource<E>;
  readonly map: EventMapper<E>;
  /** Most events mapped but not yet acknowledged; also the largest staged batch. Default 256. */
  readonly maxInFlight?: number;
  /** Backoff while the archive is unavailable, ms. Default 1 s doubling to 5 min. */
  readonly retry?: { readonly minMs?: number; readonly maxMs?: number };
  /** Jitter source in [0, 1). Default `Math.random`. */
  readonly random?: () => number;
  /** Clock for `status().since` and transitions. Default system time. */
  readonly clock?: () => Date;
  /** Called on every transition, after `status()` reflects it. */
  readonly onTransition?: (transition: ConnectorTransition) => void;
}

/** The status state each transition puts the connector in. */
const STATE_OF: { readonly [event in ConnectorTransitionEvent]: ConnectorState } = {
  connected: 'running',
  disconnected: 'reconnecting',
  reconnecting: 'reconnecting',
  'logged-out': 'logged-out',
  banned: 'logged-out',
  replaced: 'logged-out',
  stopped: 'stopped',
};

interface Slot<E> {
  readonly event: E;
  /** Resolves true when every capture of the event settled durably, false when abandoned. */
  readonly done: Promise<boolean>;
}

export function createConnectorRuntime<E extends ConnectorEvent>(options: ConnectorRuntimeOptions<E>): ConnectorRuntime<E> {
  return new ConnectorRuntime(options);
}

export class ConnectorRuntime<E extends ConnectorEvent> implements Connector {
  readonly specVersion = CONNECTOR_SPEC_VERSION;
  readonly channel: string;
  readonly account: string;
  readonly source: SourceInfo;
  readonly #o: ConnectorRuntimeOptions<E>;
  readonly #maxInFlight: number;
  #ctx: ConnectorContext | undefined;
  #status: { -readonly [K in Exclude<keyof ConnectorStatus, 'detail' | 'lastEventAt'>]-?: NonNullable<ConnectorStatus[K]> } & { detail: string | undefined; lastEventAt: string | undefined };
  /** Delivered, not yet mapped: `#queue` from `#head` on (taken by index, so a backlog of n costs O(n), not O(n²)). */
  #queue: E[] = [];
  #head = 0;
  /** Mapped, captures issued, not yet acknowledged or abandoned; in delivery order. */
  #window: Slot<E>[] = [];
  #wake: (() => void) | undefined;
  /** Wakes the pump when the window gets room (an acknowledgement or abandonment shrank it). */
  #room: (() => void) | undefined;
  #closing = false;
  #failed = false;
  #backoffMs = 0;
  #retryWait: Promise<void> | undefined;
  #sleepers = new Set<() => void>();
  #pump: Promise<void> = Promise.resolve();
  /** The one acknowledgement loop, while it runs (`#acking`); it takes every event pushed meanwhile. */
  #acks: Promise<void> = Promise.resolve();
  #acking = false;
  #transitions: Promise<void> = Promise.resolve();
  #stopping: Promise<void> | undefined;

  constructor(options: ConnectorRuntimeOptions<E>) {
    this.channel = options.channel;
    this.account = options.account;
    this.source = options.source;
    this.#o = options;
    this.#maxInFlight = options.maxInFlight ?? 256;
    if (!Number.isInteger(this.#maxInFlight) || this.#maxInFlight < 1) throw new ConnectorError('CONNECTOR_CONFIG_INVALID', 'maxInFlight must be a positive integer.');
    this.#status = { state: 'idle', since: this.#now(), detail: undefined, captured: 0, duplicates: 0, errors: 0, excluded: 0, unsupported: 0, lastEventAt: undefined };
  }

  async start(ctx: ConnectorContext): Promise<void> {
    if (this.#ctx !== undefined) throw new ConnectorError('CONNECTOR_ALREADY_STARTED', `the ${this.channel} connector for ${this.account} was already started; create a new one to start again.`);
    this.#ctx = ctx;
    this.#setState('starting');
    if (ctx.signal.aborted) {
      await this.stop();
      return;
    }
    ctx.signal.addEventListener('abort', () => void this.stop(), { once: true });
    this.#pump = this.#run();
    const io: EventSourceIo<E> = {
      ctx,
      deliver: (event) => {
        if (this.#closing) return; // not mapped, not acknowledged: the platform redelivers it
        this.#queue.push(event);
        this.#wake?.();
      },
      transition: (event, reason) => { this.#transition(event, reason); },
    };
    try {
      await this.#o.events.open(io);
    } catch (error) {
      this.#setState('failed', `could not start: ${codeOf(error)}`);
      this.#closing = true;
      this.#wake?.();
      await this.#pump;
      await this.#o.events.close().catch(() => undefined);
      throw error;
    }
    if (this.#status.state === 'starting') this.#setState('running');
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  status(): ConnectorStatus {
    const { detail, lastEventAt, ...rest } = this.#status;
    return { ...rest, ...(detail === undefined ? {} : { detail }), ...(lastEventAt === undefined ? {} : { lastEventAt }) };
  }

  /** Events delivered and not yet acknowledged or abandoned (queued and in flight). */
  get backlog(): number {
    return this.#queue.length - this.#head + this.#window.length;
  }

  async #stop(): Promise<void> {
    const failed = this.#status.state === 'failed';
    if (this.#ctx !== undefined) {
      if (!failed) this.#setState('stopping');
      this.#closing = true;
      this.#wake?.();
      this.#room?.();
      for (const wake of this.#sleepers) wake();
      await this.#pump;
      await this.#acks;
      const unmapped = this.#queue.splice(this.#head);
      this.#queue = [];
      this.#head = 0;
      if (unmapped.length > 0) await this.#abandon(unmapped);
      await this.#o.events.close().catch((error: unknown) => this.#ctx?.logger.warn({ code: codeOf(error) }, 'event source did not close cleanly'));
    }
    if (!failed) this.#setState('stopped');
    const reason = failed ? this.#status.detail : undefined;
    this.#transitions = this.#transitions.then(() => this.#report('stopped', reason));
    await this.#transitions;
  }

  /** Maps queued events in order and issues their captures, keeping at most maxInFlight unacknowledged. */
  async #run(): Promise<void> {
    const staged = this.#o.events.staged === true;
    for (;;) {
      while (this.#queue.length === this.#head && !this.#closing) await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
      if (this.#closing) return;
      const batch = this.#take(staged ? this.#maxInFlight : 1);
      for (const [index, event] of batch.entries()) {
        while (this.#window.length >= this.#maxInFlight && !this.#closing) await new Promise<void>((resolve) => (this.#room = resolve));
        this.#room = undefined;
        const inputs = this.#closing ? undefined : await this.#map(event);
        if (inputs === undefined) {
          this.#untake(batch, batch.length - index); // stopped or failed: abandoned with the queue
          break;
        }
        this.#window.push({ event, done: this.#captureAll(inputs) });
      }
      if (!this.#acking) {
        this.#acking = true;
        this.#acks = this.#acknowledge(staged);
      }
      if (staged) await this.#acks; // nothing newer is mapped before the batch is acknowledged
    }
  }

  /** Takes up to `count` queued events; drops the consumed prefix once it is most of the array. */
  #take(count: number): E[] {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    const batch = this.#queue.slice(this.#head, this.#head + count);
    this.#queue.fill(undefined as unknown as E, this.#head, this.#head + batch.length); // no longer held here
    this.#head += batch.length;
    return batch;
  }

  /** Puts back the last `count` events taken (not mapped after all: stopped or failed). */
  #untake(batch: readonly E[], count: number): void {
    this.#head -= count;
    this.#queue.splice(this.#head, count, ...batch.slice(batch.length - count));
  }

  /** The event's capture inputs, an `unsupported` record if mapping threw, or undefined to abandon it. */
  async #map(event: E): Promise<readonly CaptureInput[] | undefined> {
    const ctx = this.#ctx as ConnectorContext;
    try {
      return await this.#o.map(event);
    } catch (error) {
      if (this.#closing || ctx.signal.aborted) return undefined;
      if (error instanceof ConnectorError || (OffchannelError.isInstance(error) && error.code.startsWith('CONNECTOR_'))) {
        this.#fail(error);
        return undefined;
      }
      const code = codeOf(error);
      ctx.logger.warn({ code, format: event.format, size: event.raw.length }, 'event could not be mapped; recording it as unsupported with its raw bytes');
      return [
        {
          kind: 'unsupported',
          key: `unmappable:${sha256Hex(event.raw)}`,
          problem: { reason: 'mapping-failed', detail: code },
          raw: { bytes: event.raw, format: event.format },
        },
      ];
    }
  }

  /** Resolves true once every input is settled durably; false if abandoned (stop or fatal error). */
  #captureAll(inputs: readonly CaptureInput[]): Promise<boolean> {
    // Most events map to one input: its capture's own promise, without a Promise.all around it.
    if (inputs.length === 1) return this.#capture(inputs[0] as CaptureInput);
    return Promise.all(inputs.map((input) => this.#capture(input))).then((settled) => settled.every(Boolean));
  }

  async #capture(input: CaptureInput): Promise<boolean> {
    const ctx = this.#ctx as ConnectorContext;
    for (;;) {
      if (this.#failed) return false;
      try {
        this.#count(input, await ctx.capture(input));
        this.#backoffMs = 0;
        if (this.#status.detail === ARCHIVE_DOWN) this.#setState(this.#status.state);
        return true;
      } catch (error) {
        this.#status.errors++;
        if (!isRetryable(error)) {
          this.#fail(error);
          return false;
        }
        if (this.#closing) return false;
        // One shared wait: every capture that failed meanwhile retries when it ends, in the order
        // it failed (the recorder's order), so records keep event order across an outage.
        this.#retryWait ??= this.#backoff(ctx, error);
        await this.#retryWait;
        if (this.#closing) return false;
      }
    }
  }

  /**
   * Acknowledges settled events in order (whole window when staged); abandons from the first
   * failure on. One loop at a time: it runs until the window is empty, taking the events mapped
   * meanwhile, and clears `#acking` in the same tick it finds the window empty.
   */
  async #acknowledge(staged: boolean): Promise<void> {
    try {
      await this.#acknowledgeWindow(staged);
    } finally {
      this.#acking = false;
    }
  }

  async #acknowledgeWindow(staged: boolean): Promise<void> {
    while (this.#window.length > 0) {
      const window = this.#window;
      const ready = staged ? window.length : 1;
      const outcomes = await Promise.all(window.slice(0, ready).map((slot) => slot.done));
      let count = outcomes.includes(false) || this.#failed ? 0 : ready;
      // Pipelined: take every later event that is already durable into the same acknowledgement.
      while (!staged && count > 0 && count < window.length && (await settledNow(window[count] as Slot<E>)) === true) count++;
      if (count === 0) {
        // Abandoned (stopped mid-retry, or failed): nothing from here on is acknowledged.
        const rest = window.splice(0);
        this.#room?.();
        await Promise.all(rest.map((slot) => slot.done));
        await this.#abandon(rest.map((slot) => slot.event));
        return;
      }
      const done = window.splice(0, count).map((slot) => slot.event);
      this.#room?.();
      try {
        await this.#o.events.acknowledge(done);
      } catch (error) {
        this.#fail(error);
        await this.#abandon(done);
      }
    }
  }

  async #abandon(events: readonly E[]): Promise<void> {
    try {
      await this.#o.events.abandon?.(events);
    } catch (error) {
      this.#ctx?.logger.warn({ code: codeOf(error) }, 'event source could not abandon events');
    }
  }

  #count(input: CaptureInput, result: CaptureResult): void {
    if (result.status === 'duplicate') this.#status.duplicates++;
    else if (result.status === 'excluded') this.#status.excluded++;
    else if (input.kind === 'unsupported' || input.kind === 'undecryptable') this.#status.unsupported++;
    else {
      this.#status.captured++;
      const sentAt = input.sentAt instanceof Date ? input.sentAt.toISOString() : input.sentAt;
      if (sentAt !== undefined && (this.#status.lastEventAt === undefined || sentAt > this.#status.lastEventAt)) this.#status.lastEventAt = sentAt;
    }
  }

  /** Stops capturing for good: nothing more is acknowledged; `stop()` still needs calling. */
  #fail(error: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#closing = true;
    this.#setState('failed', `capture stopped: ${codeOf(error)}`);
    this.#ctx?.logger.error({ code: codeOf(error) }, 'capture stopped; nothing newer is acknowledged. Fix the cause and restart.');
    this.#wake?.();
    this.#room?.();
    for (const wake of this.#sleepers) wake();
  }

  #transition(event: Exclude<ConnectorTransitionEvent, 'stopped'>, reason?: string): void {
    const state = this.#status.state;
    if (state === 'stopping' || state === 'stopped' || state === 'failed') return;
    const detail = reason === undefined ? event : `${event}: ${reason}`;
    this.#setState(STATE_OF[event], STATE_OF[event] === 'logged-out' ? `${detail}; the platform ended the session, relink the account` : detail);
    this.#transitions = this.#transitions.then(() => this.#report(event, reason));
  }

  async #report(event: ConnectorTransitionEvent, reason?: string): Promise<void> {
    const transition: ConnectorTransition = { event, at: this.#now(), ...(reason === undefined ? {} : { reason }) };
    try {
      this.#o.onTransition?.(transition);
      await this.#ctx?.transition?.(transition);
    } catch (error) {
      this.#ctx?.logger.warn({ code: codeOf(error), event }, 'transition not recorded');
    }
  }

  async #backoff(ctx: ConnectorContext, error: unknown): Promise<void> {
    const min = this.#o.retry?.minMs ?? 1000;
    this.#backoffMs = Math.min(this.#o.retry?.maxMs ?? 300_000, this.#backoffMs === 0 ? min : this.#backoffMs * 2);
    const delayMs = Math.round(this.#backoffMs * (0.8 + (this.#o.random ?? Math.random)() * 0.4));
    ctx.logger.warn({ code: codeOf(error), delayMs }, 'archive unavailable; nothing acknowledged, retrying the capture');
    if (this.#status.detail !== ARCHIVE_DOWN) this.#setState(this.#status.state, ARCHIVE_DOWN);
    await this.#sleep(delayMs);
    this.#retryWait = undefined;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#sleepers.add(wake);
    });
  }

  #setState(state: ConnectorState, detail?: string): void {
    this.#status.state = state;
    this.#status.since = this.#now();
    this.#status.detail = detail;
  }

  #now(): string {
    return (this.#o.clock?.() ?? new Date()).toISOString();
  }
}

const ARCHIVE_DOWN = 'archive unavailable; retrying';

/** Whether a slot has already settled, without waiting for it. */
async function settledNow<E>(slot: Slot<E>): Promise<boolean | undefined> {
  const pending = Symbol('pending');
  const first = await Promise.race([slot.done, Promise.resolve(pending)]);
  return first === pending ? undefined : (first);
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(code)) return code;
  return error instanceof Error ? error.name : 'UNKNOWN';
}
