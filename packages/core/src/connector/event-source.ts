/**
 * The event-source contract: the part of a connector that talks to the platform. The connector
 * runtime (`connector-runtime.ts`) owns everything else. Rules, stated once:
 *
 * 1. **Deliver in platform order, never block.** `io.deliver(event)` queues the event and
 *    returns; the runtime maps and captures events in delivery order.
 * 2. **Acknowledge only what `acknowledge` is given.** The runtime calls `acknowledge(events)`
 *    in delivery order, each time with the next run of events whose captures are all durable
 *    (or settled as duplicate / excluded). That is the only place to send the platform's ack,
 *    advance a cursor or mark a queue entry done. A source that acknowledges by cursor advances
 *    it to the last event given.
 * 3. **Acknowledgements are a prefix.** Once an event is abandoned (the connector stopped, or the
 *    archive refused for good), no later event is acknowledged either: `abandon(events)` gets
 *    them all. The platform redelivers them, or reconciliation on the next start finds them.
 * 4. **Staged state.** A source whose mapping changes state that acknowledging commits (Signal's
 *    ratchet: ciphertext decrypts once) sets `staged: true`. The runtime then maps a batch, waits
 *    until all of it is durable, calls `acknowledge(batch)` once — commit the state, then ack —
 *    and maps nothing newer before that returns. `abandon` means: forget the staged state.
 * 5. **Report connection changes** through `io.transition` with the platform's reason code.
 * 6. **Close** stops delivery and disconnects; the runtime calls it after settling in-flight
 *    events, so acknowledgements it sends before `close` reach a live connection.
 */
import type { ConnectorContext, ConnectorTransitionEvent } from './connector.ts';

/** One platform event as the source delivers it. */
export interface ConnectorEvent {
  /** The platform's own bytes for the event: the evidence if mapping it fails. */
  readonly raw: Uint8Array;
  /** How to read `raw` (a record's `raw.format`), e.g. `signal.envelope`. */
  readonly format: string;
}

/** What the runtime gives a source when it opens it. */
export interface EventSourceIo<E extends ConnectorEvent> {
  /** The connector's context: state, logger, stop signal (capture through the runtime instead). */
  readonly ctx: ConnectorContext;
  /** Queues one event, in platform order. Returns at once; never throws. */
  deliver(event: E): void;
  /** Reports a connection-state change with the platform's reason code (never message text). */
  transition(event: Exclude<ConnectorTransitionEvent, 'stopped'>, reason?: string): void;
}

/** The platform side of a connector. */
export interface EventSource<E extends ConnectorEvent> {
  /** See rule 4. Default false: events are pipelined and acknowledged as soon as they are durable. */
  readonly staged?: boolean;
  /**
   * Connects and starts delivering. Resolves once capture is running (or reconnecting on its
   * own); rejects when it cannot start at all (no session, bad configuration).
   */
  open(io: EventSourceIo<E>): Promise<void>;
  /** Acknowledges these events upstream (rule 2). Throwing stops the connector; nothing newer is acknowledged. */
  acknowledge(events: readonly E[]): Promise<void>;
  /** These events will not be acknowledged (rule 3). Optional. */
  abandon?(events: readonly E[]): Promise<void>;
  /** Stops delivering and disconnects (rule 6). Idempotent. */
  close(): Promise<void>;
}
