import { OffchannelError } from '../errors/offchannel-error.ts';
import { sha256Hex } from '../hash/sha256.ts';
import type { Logger } from '../logger/logger.ts';
import { noopLogger } from '../logger/logger.ts';
import { redactingLogger } from '../logger/redacting-logger.ts';
import type { CaptureInput, CaptureResult } from '../record/capture-input.ts';
import type { Recorder } from '../recorder/recorder.ts';
import type { StateStore } from '../state/secret-store.ts';
import type { Connector, ConnectorContext, ConnectorTransition } from './connector.ts';
import { isRejectedInput } from './connector-error.ts';

/** Format name of the evidence blob written when capture input is rejected. */
export const REJECTED_INPUT_FORMAT = 'offchannel.capture-input.json';

/**
 * Format name of one byte array (over 4 KiB) of a rejected input: recorded as the `raw` of its
 * own `unsupported` record, which the evidence names by `{"$blob": {sha256, size}}`.
 */
export const REJECTED_INPUT_BYTES_FORMAT = 'offchannel.capture-input.bytes';

/**
 * Builds the context a connector's `start(ctx)` receives: captures go through `recorder` into
 * the connector's stream, state is scoped to the stream, logs are redacted and tagged.
 *
 * `ctx.capture` never loses an event to a mapping bug: if the input is rejected as invalid or
 * too large, the input itself is stored as evidence and an `unsupported` record naming the
 * validation error is captured instead. Byte arrays over 4 KiB are each recorded first as the
 * `raw` of an `unsupported` record of their own, so that a record names every blob the evidence
 * names: the forwarder copies it to every target, verify checks it, spool pruning keeps it.
 */
export function createConnectorContext(options: {
  readonly recorder: Recorder;
  readonly connector: Pick<Connector, 'channel' | 'account' | 'source'>;
  readonly state: StateStore;
  readonly logger?: Logger;
  readonly signal: AbortSignal;
  /** Called with each connection-state change the connector reports. */
  readonly onTransition?: (transition: ConnectorTransition) => void;
  /**
   * Also record each transition as a `system` record `connector-<event>` (fields: `reason`).
   * Default false. Recording fails quietly when the archive is down (the connector logs it).
   */
  readonly recordTransitions?: boolean;
}): ConnectorContext {
  const { recorder, connector } = options;
  const writer = recorder.writer(connector);
  const logger = redactingLogger(options.logger ?? noopLogger).child({ component: 'connector', stream: writer.stream });

  const captureRejected = async (input: CaptureInput, error: OffchannelError): Promise<CaptureResult> => {
    const parts = new Map<string, Uint8Array>();
    const evidence = evidenceOf(input, parts);
    // Copies taken as they were hashed (a platform library may reuse its buffers); issued
    // together, so they share one group commit.
    await Promise.all(
      [...parts].map(([sha256, bytes]) =>
        writer.capture({
          kind: 'unsupported',
          key: `rejected-input-bytes:${sha256}`,
          problem: { reason: 'invalid-capture-input', detail: 'bytes of a rejected input, named by its evidence' },
          raw: { bytes, format: REJECTED_INPUT_BYTES_FORMAT },
        }),
      ),
    );
    const named = (error as { field?: unknown }).field;
    const field = typeof named === 'string' ? named : undefined;
    logger.warn({ code: error.code, field }, 'capture input rejected; recording it as unsupported with the input as evidence');
    return writer.capture({
      kind: 'unsupported',
      key: `rejected-input:${sha256Hex(evidence)}`,
      problem: { reason: 'invalid-capture-input', detail: field ? `${error.code} at ${field}` : error.code },
      raw: { bytes: evidence, format: REJECTED_INPUT_FORMAT },
    });
  };

  return {
    stream: writer.stream,
    channel: writer.channel,
    account: writer.account,
    async capture(input: CaptureInput): Promise<CaptureResult> {
      try {
        return await writer.capture(input);
      } catch (error) {
        // The error says whether the input is at fault; a second copy of core says so too.
        if (!OffchannelError.isInstance(error) || !isRejectedInput(error) || (typeof input === 'object' && input !== null && input.kind === 'unsupported' && input.problem?.reason === 'invalid-capture-input')) {
          throw error;
        }
        return captureRejected(input, error);
      }
    },
    putBlob: (bytes) => writer.putBlob(bytes),
    lookup: (key) => writer.lookup(key),
    state: options.state.scope(writer.stream),
    logger,
    signal: options.signal,
    async transition(transition: ConnectorTransition): Promise<void> {
      options.onTransition?.(transition);
      if (options.recordTransitions !== true) return;
      await writer.capture({
        kind: 'system',
        sentAt: transition.at,
        system: { event: `connector-${transition.event}`, ...(transition.reason === undefined ? {} : { fields: { reason: transition.reason } }) },
      });
    },
  };
}

/**
 * Serializes rejected input as JSON evidence. Byte arrays over 4 KiB are replaced by
 * `{"$blob": {sha256, size}}` and added to `parts` (recorded by the caller before the evidence);
 * smaller ones become `{"$base64": "…"}`.
 */
function evidenceOf(input: unknown, parts: Map<string, Uint8Array>): Uint8Array {
  /** Objects on the current path only: a shared (non-cyclic) reference is serialized each time. */
  const ancestors = new Set<object>();
  const transform = (value: unknown, depth: number): unknown => {
    if (value instanceof Uint8Array) {
      if (value.length <= 4096) return { $base64: Buffer.from(value).toString('base64') };
      const copy = value.slice();
      const sha256 = sha256Hex(copy);
      parts.set(sha256, copy);
      return { $blob: { sha256, size: value.length } };
    }
    if (typeof value === 'bigint') return { $bigint: value.toString() };
    if (typeof value === 'number') return Number.isFinite(value) ? value : { $number: String(value) };
    if (typeof value === 'function' || typeof value === 'symbol' || value === undefined) return null;
    if (typeof value !== 'object' || value === null) return value;
    if (value instanceof Date) return Number.isNaN(value.getTime()) ? { $date: 'invalid' } : value.toISOString();
    if (depth > 32) return { $nested: true };
    if (ancestors.has(value)) return { $cycle: true };
    ancestors.add(value);
    try {
      if (Array.isArray(value)) return value.map((item: unknown) => transform(item, depth + 1));
      if (value instanceof Map) return { $map: [...value.entries()].map(([key, item]) => [transform(key, depth + 1), transform(item, depth + 1)]) };
      if (value instanceof Set) return { $set: [...value].map((item: unknown) => transform(item, depth + 1)) };
      // Null prototype: an own `__proto__` member (JSON.parse makes one) is kept as data.
      const out = Object.create(null) as Record<string, unknown>;
      for (const [key, item] of Object.entries(value)) out[key] = transform(item, depth + 1);
      return out;
    } finally {
      ancestors.delete(value);
    }
  };
  return Buffer.from(JSON.stringify(transform(input, 0)), 'utf8');
}
