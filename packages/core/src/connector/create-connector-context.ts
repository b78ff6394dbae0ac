import { InvalidRecordError, NonCanonicalJsonError, RecordTooLargeError } from '../errors/record-errors.ts';
import type { OffchannelError } from '../errors/offchannel-error.ts';
import { sha256Hex } from '../hash/sha256.ts';
import type { Logger } from '../logger/logger.ts';
import { noopLogger } from '../logger/logger.ts';
import { redactingLogger } from '../logger/redacting-logger.ts';
import type { CaptureInput, CaptureResult } from '../record/capture-input.ts';
import type { Recorder } from '../recorder/recorder.ts';
import type { StateStore } from '../state/secret-store.ts';
import type { Connector, ConnectorContext } from './connector.ts';

/** Format name of the evidence blob written when capture input is rejected. */
export const REJECTED_INPUT_FORMAT = 'offchannel.capture-input.json';

/**
 * Builds the context a connector's `start(ctx)` receives: captures go through `recorder` into
 * the connector's stream, state is scoped to the stream, logs are redacted and tagged.
 *
 * `ctx.capture` never loses an event to a mapping bug: if the input is rejected as invalid or
 * too large, the input itself (blobs stored separately, so nothing is lost) is stored as
 * evidence and an `unsupported` record naming the validation error is captured instead.
 */
export function createConnectorContext(options: {
  readonly recorder: Recorder;
  readonly connector: Pick<Connector, 'channel' | 'account' | 'source'>;
  readonly state: StateStore;
  readonly logger?: Logger;
  readonly signal: AbortSignal;
}): ConnectorContext {
  const { recorder, connector } = options;
  const writer = recorder.writer(connector);
  const logger = redactingLogger(options.logger ?? noopLogger).child({ component: 'connector', stream: writer.stream });

  const captureRejected = async (input: CaptureInput, error: OffchannelError): Promise<CaptureResult> => {
    const evidence = await evidenceOf(input, (bytes) => writer.putBlob(bytes));
    const field = error instanceof InvalidRecordError ? error.field : undefined;
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
        const rejected = error instanceof InvalidRecordError || error instanceof RecordTooLargeError || error instanceof NonCanonicalJsonError;
        if (!rejected || (typeof input === 'object' && input !== null && input.kind === 'unsupported' && input.problem?.reason === 'invalid-capture-input')) {
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
  };
}

/**
 * Serializes rejected input as JSON evidence. Byte arrays over 4 KiB are stored as blobs
 * and replaced by `{"$blob": {sha256, size}}`; smaller ones become `{"$base64": "…"}`.
 */
async function evidenceOf(input: unknown, putBlob: (bytes: Uint8Array) => Promise<{ sha256: string; size: number }>): Promise<Uint8Array> {
  const seen = new WeakSet<object>();
  const transform = async (value: unknown, depth: number): Promise<unknown> => {
    if (value instanceof Uint8Array) {
      return value.length > 4096 ? { $blob: await putBlob(value) } : { $base64: Buffer.from(value).toString('base64') };
    }
    if (typeof value === 'bigint') return { $bigint: value.toString() };
    if (typeof value === 'number') return Number.isFinite(value) ? value : { $number: String(value) };
    if (typeof value === 'function' || typeof value === 'symbol' || value === undefined) return null;
    if (typeof value !== 'object' || value === null) return value;
    if (value instanceof Date) return Number.isNaN(value.getTime()) ? { $date: 'invalid' } : value.toISOString();
    if (depth > 32) return { $nested: true };
    if (seen.has(value)) return { $cycle: true };
    seen.add(value);
    if (Array.isArray(value)) return Promise.all(value.map((item: unknown) => transform(item, depth + 1)));
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = await transform(item, depth + 1);
    return out;
  };
  return Buffer.from(JSON.stringify(await transform(input, 0)), 'utf8');
}
