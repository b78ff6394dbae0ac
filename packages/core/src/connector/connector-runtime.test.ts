import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidRecordError } from '../errors/record-errors.ts';
import { SinkConflictError, SinkUnavailableError } from '../errors/sink-errors.ts';
import { decodeRecord } from '../record/encode-record.ts';
import { Recorder } from '../recorder/recorder.ts';
import type { AppendBatch } from '../sink/sink.ts';
import { openStateStore } from '../state/secret-store.ts';
import { createMemorySink } from '../testing/memory-sink.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { ConnectorError, dispositionOf, isRejectedInput, isRetryable } from './connector-error.ts';
import { createConnectorRuntime } from './connector-runtime.ts';
import { createConnectorContext } from './create-connector-context.ts';
import type { ConnectorEvent, EventSourceIo } from './event-source.ts';

interface TestEvent extends ConnectorEvent {
  readonly n: number;
}

const SOURCE = { package: '@offchannel/test', version: '1.0.0' };
const event = (n: number): TestEvent => ({ n, raw: Uint8Array.of(n), format: 'test.byte' });
const message = (n: number) => ({
  kind: 'message' as const,
  key: `message:${n}`,
  native: { id: String(n) },
  sentAt: '2026-01-02T03:04:05.000Z',
  conversation: { id: 'c', type: 'direct' as const },
  sender: { id: 's' },
  direction: 'inbound' as const,
  text: `m${n}`,
});

/** A memory sink whose appends take a little time, counted; it can refuse them with a given error. */
function countingSink(refuse?: () => Error | undefined) {
  const memory = createMemorySink();
  const counts = { appends: 0 };
  const sink = new Proxy(memory, {
    get(target, property) {
      if (property === 'appendBatch') {
        return async (batch: AppendBatch) => {
          const error = refuse?.();
          if (error !== undefined) throw error;
          counts.appends++;
          await new Promise((resolve) => setTimeout(resolve, 2)); // a write that takes time, as fsync does
          return target.appendBatch(batch);
        };
      }
      const value: unknown = Reflect.get(target, property);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { memory, sink, counts };
}

async function harness(options: { staged?: boolean; refuse?: () => Error | undefined; recordTransitions?: boolean; maxInFlight?: number } = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-runtime-'));
  const { memory, sink, counts } = countingSink(options.refuse);
  const recorder = new Recorder({ sink, allowVolatileSink: true });
  const logger = createRecordingLogger();
  const acks: number[][] = [];
  const abandoned: number[] = [];
  const mapped: number[] = [];
  let io: EventSourceIo<TestEvent> | undefined;
  const runtime = createConnectorRuntime<TestEvent>({
    channel: 'test',
    account: 'alice',
    source: SOURCE,
    retry: { minMs: 1, maxMs: 5 },
    random: () => 0.5,
    clock: () => new Date('2026-01-02T00:00:00.000Z'),
    ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
    events: {
      ...(options.staged === undefined ? {} : { staged: options.staged }),
      async open(opened) {
        io = opened;
        opened.transition('connected', 'test-open');
      },
      async acknowledge(events) {
        // Staged: nothing newer than this batch has been mapped yet.
        if (options.staged === true) expect(mapped.at(-1)).toBe(events.at(-1)?.n);
        acks.push(events.map((e) => e.n));
      },
      async abandon(events) {
        abandoned.push(...events.map((e) => e.n));
      },
      close: async () => undefined,
    },
    map: (e) => {
      mapped.push(e.n);
      return [message(e.n)];
    },
  });
  const state = await openStateStore({ dir, key: new Uint8Array(32).fill(3) });
  const ctx = createConnectorContext({ recorder, connector: runtime, state, logger, signal: new AbortController().signal, ...(options.recordTransitions === undefined ? {} : { recordTransitions: options.recordTransitions }) });
  await runtime.start(ctx);
  const records = async () => {
    const out = [];
    for await (const stored of memory.read('test:alice')) out.push(decodeRecord(stored.bytes).record);
    return out;
  };
  const until = async (condition: () => boolean) => {
    for (let i = 0; i < 4000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(condition()).toBe(true);
  };
  const cleanup = async () => {
    await runtime.stop();
    await recorder.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { runtime, deliver: (n: number) => io?.deliver(event(n)), acks, abandoned, mapped, counts, records, until, logger, cleanup };
}

describe('connector runtime', () => {
  it('pipelines: 200 events delivered at once are group-committed in far fewer appends and acknowledged in order', async () => {
    const h = await harness();
    for (let n = 1; n <= 200; n++) h.deliver(n);
    await h.until(() => h.acks.flat().length === 200);
    expect(h.acks.flat()).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(h.counts.appends).toBeLessThan(50);
    expect(h.acks.length).toBeLessThan(200);
    expect(h.runtime.status()).toMatchObject({ captured: 200, duplicates: 0, errors: 0, lastEventAt: '2026-01-02T03:04:05.000Z' });
    await h.cleanup();
  });

  it('refills a full window as its oldest events become durable, without waiting for the whole window to drain', async () => {
    // Captures settle only when the test says so; the window holds 2 events.
    const gates = new Map<string, () => void>();
    const mapped: number[] = [];
    const acks: number[] = [];
    let io: EventSourceIo<TestEvent> | undefined;
    const runtime = createConnectorRuntime<TestEvent>({
      channel: 'test',
      account: 'alice',
      source: SOURCE,
      maxInFlight: 2,
      events: {
        async open(opened) {
          io = opened;
        },
        async acknowledge(events) {
          acks.push(...events.map((e) => e.n));
        },
        close: async () => undefined,
      },
      map: (e) => {
        mapped.push(e.n);
        return [message(e.n)];
      },
    });
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-runtime-'));
    const state = await openStateStore({ dir, key: new Uint8Array(32).fill(3) });
    const recorder = new Recorder({ sink: createMemorySink(), allowVolatileSink: true });
    const real = createConnectorContext({ recorder, connector: runtime, state, logger: createRecordingLogger(), signal: new AbortController().signal });
    const ctx = {
      stream: real.stream,
      channel: real.channel,
      account: real.account,
      state: real.state,
      logger: real.logger,
      signal: real.signal,
      putBlob: (bytes: Uint8Array) => real.putBlob(bytes),
      lookup: (key: string) => real.lookup(key),
      capture: async (input: Parameters<typeof real.capture>[0]) => {
        await new Promise<void>((resolve) => gates.set(input.key ?? '', resolve));
        return real.capture(input);
      },
    };
    await runtime.start(ctx);
    const until = async (condition: () => boolean) => {
      for (let i = 0; i < 4000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
      expect(condition()).toBe(true);
    };
    for (let n = 1; n <= 4; n++) io?.deliver(event(n));
    await until(() => gates.size === 2);
    expect(mapped).toEqual([1, 2]); // the window is full
    gates.get('message:1')?.();
    // Event 1 is durable and acknowledged: event 3 is mapped while event 2 is still in flight.
    await until(() => mapped.includes(3));
    expect(acks).toEqual([1]);
    expect(mapped).toEqual([1, 2, 3]);
    gates.get('message:2')?.();
    await until(() => mapped.includes(4));
    gates.get('message:3')?.();
    gates.get('message:4')?.();
    await until(() => acks.length === 4);
    expect(acks).toEqual([1, 2, 3, 4]);
    await runtime.stop();
    await recorder.close();
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('staged: maps a batch, acknowledges it whole after it is durable, maps nothing newer before', async () => {
    const h = await harness({ staged: true, maxInFlight: 64 });
    for (let n = 1; n <= 150; n++) h.deliver(n);
    await h.until(() => h.acks.flat().length === 150);
    expect(h.acks.flat()).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
    expect(Math.max(...h.acks.map((batch) => batch.length))).toBeLessThanOrEqual(64);
    expect(h.acks.length).toBeLessThan(150);
    await h.cleanup();
  });

  it('retries while the archive is unavailable, acknowledging nothing, then records each event once', async () => {
    let failures = 5;
    const h = await harness({ refuse: () => (failures-- > 0 ? new SinkUnavailableError('down') : undefined) });
    h.deliver(1);
    h.deliver(2);
    await h.until(() => h.acks.flat().length === 2);
    expect(h.acks.flat()).toEqual([1, 2]);
    expect((await h.records()).map((r) => r.native?.id)).toEqual(['1', '2']);
    expect(h.runtime.status().errors).toBeGreaterThan(0);
    expect(h.runtime.status().detail).toBeUndefined();
    await h.cleanup();
  });

  it('stops on a fatal archive error (another writer): failed, nothing acknowledged, events abandoned', async () => {
    const h = await harness({ refuse: () => new SinkConflictError('test:alice', 'head moved') });
    h.deliver(1);
    h.deliver(2);
    await h.until(() => h.runtime.status().state === 'failed');
    await h.runtime.stop();
    expect(h.acks).toEqual([]);
    expect(h.abandoned).toEqual([1, 2]);
    expect(h.runtime.status()).toMatchObject({ state: 'failed', detail: 'capture stopped: SINK_CONFLICT' });
    await h.cleanup();
  });

  it('records transitions as system records when the runner asks for it', async () => {
    const h = await harness({ recordTransitions: true });
    await h.runtime.stop();
    const records = await h.records();
    expect(records.map((r) => [r.kind, r.system?.event, r.system?.fields?.reason])).toEqual([
      ['system', 'connector-connected', 'test-open'],
      ['system', 'connector-stopped', undefined],
    ]);
    await h.cleanup();
  });
});

describe('error dispositions', () => {
  it('are a property of the error, across the error classes', () => {
    expect(isRejectedInput(new InvalidRecordError('record.text', 'is not a string'))).toBe(true);
    expect(isRetryable(new SinkUnavailableError('down'))).toBe(true);
    expect(isRetryable(Object.assign(new Error('disk'), { code: 'EIO' }))).toBe(true);
    expect(dispositionOf(new SinkConflictError('a:b', 'moved'))).toBe('fatal');
    expect(dispositionOf(new ConnectorError('CONNECTOR_ALREADY_STARTED', 'x'))).toBe('fatal');
    expect(isRetryable(new ConnectorError('CONNECTOR_SOURCE_FAILED', 'x'))).toBe(true);
  });
});
