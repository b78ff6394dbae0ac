/**
 * The Connector contract: how a channel package (WhatsApp, Signal, Telegram, iMessage)
 * plugs into the recorder.
 *
 * A connector owns one account's session on one platform. It turns every platform event into
 * a {@link CaptureInput} and hands it to `ctx.capture`, which resolves only once the record is
 * durable. The rules below are what make "no silent loss" true; reviewers check each
 * connector against them:
 *
 * 1. **Durable before acknowledge.** A connector MUST NOT acknowledge an event upstream
 *    (Signal's 200, advancing a stored cursor, marking a queue entry done) until
 *    `ctx.capture` for it has resolved. Where the platform library acknowledges on its own
 *    before the handler runs, the handler's first act MUST be the capture, and the
 *    connector MUST reconcile (history sync, getDifference, chat.db sweeps) on start.
 * 2. **Nothing dropped.** An event the connector cannot decrypt or map MUST be captured as an
 *    `undecryptable` / `unsupported` record with its raw bytes; a detected gap it cannot fill
 *    MUST be captured as a `gap` record. A thrown error MUST NOT end the capture loop.
 *    `ctx.capture` does part of this for you: input that fails validation is recorded as
 *    `unsupported` with the input as evidence.
 * 3. **Nothing rewritten.** Edits, deletes and reactions are new records whose `target` names
 *    the original; the original's record is never touched.
 * 4. **Raw evidence.** Each record SHOULD carry the platform's own bytes as `raw`.
 * 5. **Replays are safe.** Every capture SHOULD carry a stable idempotency `key` derived from
 *    the platform's identity for the event, so redelivery and history sync record it once.
 * 6. **No plaintext outside the archive.** Log only through `ctx.logger`, never message text;
 *    keep session secrets and cursors only in `ctx.state`.
 * 7. **Pure mapping.** Each connector exports its `platform object → CaptureInput` mapping in
 *    one file an auditor can read top to bottom, tested on fixtures built with the platform
 *    library's own types and encoders.
 */
import type { Logger } from '../logger/logger.ts';
import type { CaptureInput, CaptureResult } from '../record/capture-input.ts';
import type { BlobRef, SourceInfo } from '../record/record.ts';
import type { StateStore } from '../state/secret-store.ts';

/** Version of this contract. A connector declares it; the runner refuses any other value. */
export const CONNECTOR_SPEC_VERSION = 1;

/** What the runner gives a connector when it starts. */
export interface ConnectorContext {
  /** `<channel>:<account>`. */
  readonly stream: string;
  readonly channel: string;
  readonly account: string;
  /**
   * Records one event. Resolves only when the record is durable in the archive (or the key was
   * already archived: `status: 'duplicate'`). Rejects when it could not be made durable — then
   * the event MUST NOT be acknowledged upstream. Input that fails validation does not reject:
   * it is recorded as an `unsupported` record holding the input as evidence.
   */
  capture(input: CaptureInput): Promise<CaptureResult>;
  /** Stores a blob durably before capturing the record that names it. */
  putBlob(bytes: Uint8Array): Promise<BlobRef>;
  /** The seq of the durable record with this idempotency key, or `undefined`. */
  lookup(key: string): Promise<number | undefined>;
  /**
   * Secret state for this account only (session keys, cursors): encrypted at rest, files
   * 0600. A cursor MUST advance only after the records it covers are durable.
   */
  readonly state: StateStore;
  /** Redacting logger bound to this connector. Never pass message text to it. */
  readonly logger: Logger;
  /** Aborted when the runner stops the connector. */
  readonly signal: AbortSignal;
  /**
   * Reports a connection-state change. The runner may record it as a `system` record
   * (`connector-<event>`, see docs/record-schema.md) or count it; resolves when that is done.
   * Optional: contexts built before this existed lack it.
   */
  transition?(transition: ConnectorTransition): Promise<void>;
}

/** A connection-state change a connector reports, with the platform's own reason. */
export type ConnectorTransitionEvent = 'connected' | 'disconnected' | 'reconnecting' | 'logged-out' | 'banned' | 'replaced' | 'stopped';

export interface ConnectorTransition {
  readonly event: ConnectorTransitionEvent;
  /** When it happened (recorder clock), ISO 8601 UTC. */
  readonly at: string;
  /** The platform's reason code, e.g. libsignal `DeviceDelinked`, Baileys `401`. Never message text. */
  readonly reason?: string;
}

/** Where a connector is in its life. */
export type ConnectorState =
  | 'idle'
  | 'starting'
  | 'linking'
  | 'running'
  | 'reconnecting'
  | 'stopping'
  | 'stopped'
  /** The platform ended the session (logged out, device removed, replaced): relink needed. */
  | 'logged-out'
  /** Stopped by an error it cannot recover from; `detail` says which. */
  | 'failed';

/** A point-in-time view of a connector, for status lines and health checks. */
export interface ConnectorStatus {
  readonly state: ConnectorState;
  /** When `state` last changed, ISO 8601 UTC. */
  readonly since: string;
  /** Human-readable reason or progress note. Never message text or secrets. */
  readonly detail?: string;
  /**
   * The counts below are disjoint, one per capture, with one meaning in every connector built on
   * the runtime (`connector-runtime.ts`).
   *
   * New records written, other than `unsupported` / `undecryptable` ones.
   */
  readonly captured: number;
  /** Captures whose key was already archived: nothing new written. */
  readonly duplicates: number;
  /** Capture attempts that failed (archive unavailable): not acknowledged, retried or redelivered. */
  readonly errors: number;
  /** Captures kept out by the runner's capture policy: nothing stored, the exclusion counted. */
  readonly excluded?: number;
  /** New `unsupported` / `undecryptable` records (the event's raw bytes kept as evidence). */
  readonly unsupported?: number;
  /** Platform time of the newest captured event, ISO 8601 UTC. */
  readonly lastEventAt?: string;
}

/** A channel connector for one account. */
export interface Connector {
  /** MUST be {@link CONNECTOR_SPEC_VERSION}. */
  readonly specVersion: typeof CONNECTOR_SPEC_VERSION;
  /** e.g. `whatsapp`. Becomes the stream's channel part. */
  readonly channel: string;
  /** The custodian's account name. Becomes the stream's account part. */
  readonly account: string;
  /** Stamped on every record this connector produces. */
  readonly source: SourceInfo;
  /**
   * Connects and begins capturing. Resolves once capture is running (or rejects if it cannot
   * start: missing session, bad configuration). Events arriving after this resolves are
   * captured through `ctx`.
   */
  start(ctx: ConnectorContext): Promise<void>;
  /**
   * Stops accepting events, lets captures in flight finish, persists cursors, disconnects.
   * Resolves when nothing more will be captured. Idempotent.
   */
  stop(): Promise<void>;
  /** Current status; cheap and synchronous. */
  status(): ConnectorStatus;
}
