/**
 * The connector conformance harness. Every connector runs it, as every sink runs the sink
 * suite: it drives the connector through its platform (a fixture the connector supplies) into
 * a real Recorder whose sink the harness can hold or fail, and checks what no connector may
 * get wrong. It registers tests through the `test` you pass and asserts with `node:assert`.
 *
 * ```ts
 * import { it } from 'vitest';
 * import { runConnectorConformance } from '@offchannel/core/testing';
 * runConnectorConformance({ test: it, createFixture: (env) => myPlatformFixture(env) });
 * ```
 *
 * Groups (test names start with them): `lifecycle`, `durable before acknowledge`,
 * `archive unavailable`, `stop` (in flight; during an outage), `malformed input`, `logs`,
 * `transitions`, `replays`, `policy`.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Connector, ConnectorContext, ConnectorTransition } from '../connector/connector.ts';
import { createConnectorContext } from '../connector/create-connector-context.ts';
import { SinkUnavailableError } from '../errors/sink-errors.ts';
import { decodeRecord } from '../record/encode-record.ts';
import type { ArchiveRecord } from '../record/record.ts';
import { Recorder } from '../recorder/recorder.ts';
import type { AppendBatch, Sink } from '../sink/sink.ts';
import { type StateStore, openStateStore } from '../state/secret-store.ts';
import { createMemorySink } from './memory-sink.ts';
import { type RecordingLogger, createRecordingLogger } from './recording-logger.ts';

/** A platform with one connector for it, fresh for each test. */
export interface ConnectorFixture {
  /** The connector under test, not started. */
  readonly connector: Connector;
  /** The platform delivers one ordinary message with this text; resolves with its platform id. */
  sendMessage(text: string): Promise<string>;
  /** The platform delivers malformed input; resolves with its id and the bytes its record must keep. */
  sendMalformed(): Promise<{ readonly id: string; readonly bytes: Uint8Array }>;
  /** The platform delivers the event with this id again (a lost acknowledgement, a history sync). */
  redeliver(id: string): Promise<void>;
  /** Ids the platform holds as acknowledged, once per acknowledgement (a cursor covers every id up to it). */
  acknowledged(): readonly string[];
  /** The platform drops the connection (capability `reconnects`). */
  dropConnection?(): Promise<void>;
  /** Releases what the fixture holds (servers, directories). The connector is already stopped. */
  destroy(): Promise<void>;
}

/** What the harness gives `createFixture`: the root state store the connector will get (link into `state.scope(stream)`). */
export interface ConnectorFixtureEnv {
  readonly state: StateStore;
}

export interface ConnectorConformanceOptions {
  /** Test registration function: `(name, fn, timeoutMs) => void`. */
  readonly test: (name: string, fn: () => Promise<void>, timeout?: number) => unknown;
  readonly createFixture: (env: ConnectorFixtureEnv) => Promise<ConnectorFixture>;
  /** Per-test timeout in ms. Default 60,000. */
  readonly timeout?: number;
  /** Longest wait for an expected effect, ms. Default 20,000. */
  readonly patienceMs?: number;
}

/** A sink whose appends the test can hold (block) or fail. */
interface GatedSink {
  readonly sink: Sink;
  mode: 'open' | 'hold' | 'fail';
  /** Appends currently blocked by `hold`. */
  readonly held: number;
  /** Appends refused by `fail` so far. */
  readonly refused: number;
  release(): void;
}

function gate(inner: Sink): GatedSink {
  let waiting: (() => void)[] = [];
  const state = {
    mode: 'open' as GatedSink['mode'],
    refused: 0,
    get held() {
      return waiting.length;
    },
    release() {
      state.mode = 'open';
      const run = waiting;
      waiting = [];
      for (const go of run) go();
    },
    sink: undefined as unknown as Sink,
  };
  const appendBatch = async (batch: AppendBatch) => {
    if (state.mode === 'fail') {
      state.refused++;
      throw new SinkUnavailableError('conformance harness: archive made unavailable');
    }
    if (state.mode === 'hold') await new Promise<void>((resolve) => waiting.push(resolve));
    return inner.appendBatch(batch);
  };
  state.sink = new Proxy(inner, {
    get(target, property) {
      if (property === 'appendBatch') return appendBatch;
      const value: unknown = Reflect.get(target, property);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return state;
}

interface Run {
  readonly fixture: ConnectorFixture;
  readonly gated: GatedSink;
  readonly logger: RecordingLogger;
  readonly transitions: ConnectorTransition[];
  records(): Promise<ArchiveRecord[]>;
  blob(sha256: string): Promise<Uint8Array | undefined>;
  start(wrap?: (ctx: ConnectorContext) => ConnectorContext): Promise<void>;
}

/** Registers the conformance tests. */
export function runConnectorConformance(options: ConnectorConformanceOptions): void {
  const timeout = options.timeout ?? 60_000;
  const patience = options.patienceMs ?? 20_000;
  const until = async (what: string, condition: () => boolean | Promise<boolean>): Promise<void> => {
    const deadline = performance.now() + patience;
    while (!(await condition())) {
      if (performance.now() > deadline) assert.fail(`timed out after ${patience} ms waiting until ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  /** Lets the connector run for a while (to show it does NOT do something). */
  const settle = () => new Promise((resolve) => setTimeout(resolve, 100));

  const withRun = (name: string, body: (run: Run) => Promise<void>): void => {
    options.test(
      name,
      async () => {
        const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-conformance-'));
        const state = await openStateStore({ dir, key: new Uint8Array(32).fill(7) });
        const memory = createMemorySink();
        const gated = gate(memory);
        const recorder = new Recorder({ sink: gated.sink, allowVolatileSink: true });
        const logger = createRecordingLogger();
        const controller = new AbortController();
        const transitions: ConnectorTransition[] = [];
        const fixture = await options.createFixture({ state });
        const { connector } = fixture;
        const stream = `${connector.channel}:${connector.account}`;
        const run: Run = {
          fixture,
          gated,
          logger,
          transitions,
          async records() {
            const out: ArchiveRecord[] = [];
            for await (const stored of memory.read(stream)) out.push(decodeRecord(stored.bytes).record);
            return out;
          },
          blob: (sha256) => memory.getBlob(sha256),
          async start(wrap = (ctx) => ctx) {
            const ctx = createConnectorContext({ recorder, connector, state, logger, signal: controller.signal, onTransition: (t) => transitions.push(t) });
            await connector.start(wrap(ctx));
          },
        };
        try {
          await body(run);
        } finally {
          gated.release();
          controller.abort();
          await connector.stop();
          await fixture.destroy();
          await recorder.close();
          await rm(dir, { recursive: true, force: true });
        }
      },
      timeout,
    );
  };

  const withText = (records: readonly ArchiveRecord[], text: string) => records.filter((record) => record.text === text);

  withRun('lifecycle: starts running, refuses a second start with CONNECTOR_ALREADY_STARTED, stop is idempotent', async (run) => {
    await run.start();
    assert.equal(run.fixture.connector.status().state, 'running');
    await assert.rejects(run.start(), (error: { code?: string }) => error.code === 'CONNECTOR_ALREADY_STARTED');
    await Promise.all([run.fixture.connector.stop(), run.fixture.connector.stop()]);
    assert.equal(run.fixture.connector.status().state, 'stopped');
  });

  withRun('durable before acknowledge: nothing is acknowledged while its append is held', async (run) => {
    await run.start();
    run.gated.mode = 'hold';
    const id = await run.fixture.sendMessage('conformance held message');
    await until('the append is held', () => run.gated.held > 0);
    await settle();
    assert.ok(!run.fixture.acknowledged().includes(id), 'acknowledged before the record was durable');
    run.gated.release();
    await until('the message is acknowledged', () => run.fixture.acknowledged().includes(id));
    assert.equal(withText(await run.records(), 'conformance held message').length, 1);
    assert.equal(run.fixture.connector.status().captured, 1);
  });

  withRun('archive unavailable: nothing acknowledged; once it recovers the event is recorded once and acknowledged', async (run) => {
    await run.start();
    run.gated.mode = 'fail';
    const id = await run.fixture.sendMessage('conformance archive down');
    await until('an append was refused', () => run.gated.refused > 0);
    await settle();
    assert.ok(!run.fixture.acknowledged().includes(id), 'acknowledged although the archive refused the record');
    run.gated.release();
    await until('the message is acknowledged', () => run.fixture.acknowledged().includes(id));
    assert.equal(withText(await run.records(), 'conformance archive down').length, 1);
    assert.ok(run.fixture.connector.status().errors >= 1, 'failed captures are counted in errors');
  });

  withRun('stop: stop() lets a capture in flight finish before it resolves', async (run) => {
    await run.start();
    run.gated.mode = 'hold';
    await run.fixture.sendMessage('conformance in flight');
    await until('the append is held', () => run.gated.held > 0);
    let stopped = false;
    const stopping = run.fixture.connector.stop().then(() => (stopped = true));
    await settle();
    assert.equal(stopped, false, 'stop() resolved while a capture was still in flight');
    run.gated.release();
    await stopping;
    assert.equal(withText(await run.records(), 'conformance in flight').length, 1);
    assert.equal(run.fixture.connector.status().state, 'stopped');
  });

  withRun('stop: during an archive outage stop() resolves without acknowledging what is not durable', async (run) => {
    await run.start();
    run.gated.mode = 'fail';
    const id = await run.fixture.sendMessage('conformance stopped in outage');
    await until('an append was refused', () => run.gated.refused > 0);
    let stopped = false;
    const stopping = run.fixture.connector.stop().then(() => (stopped = true));
    await until('stop() resolved', () => stopped);
    await stopping;
    assert.ok(!run.fixture.acknowledged().includes(id), 'acknowledged an event whose record never became durable');
    assert.deepEqual(withText(await run.records(), 'conformance stopped in outage'), []);
  });

  withRun('malformed input: becomes an unsupported or undecryptable record with its raw bytes, and is acknowledged', async (run) => {
    await run.start();
    const { id, bytes } = await run.fixture.sendMalformed();
    await until('the malformed event is acknowledged', () => run.fixture.acknowledged().includes(id));
    const problems = (await run.records()).filter((record) => record.kind === 'unsupported' || record.kind === 'undecryptable');
    assert.equal(problems.length, 1, 'exactly one problem record');
    const raw = problems[0]?.raw;
    assert.ok(raw !== undefined, 'the problem record keeps raw bytes');
    assert.deepEqual(Buffer.from((await run.blob(raw.sha256)) ?? []), Buffer.from(bytes));
    assert.equal(run.fixture.connector.status().state, 'running');
  });

  withRun('logs: no message text at any log level, on the normal and the malformed path', async (run) => {
    await run.start();
    const secret = 'CONFORMANCE-SECRET-ORDER 4.15 50m';
    const id = await run.fixture.sendMessage(secret);
    const bad = await run.fixture.sendMalformed();
    await until('both events are acknowledged', () => run.fixture.acknowledged().includes(id) && run.fixture.acknowledged().includes(bad.id));
    await run.fixture.connector.stop();
    assert.equal(withText(await run.records(), secret).length, 1);
    assert.ok(!run.logger.text().includes(secret), 'message text reached the logs');
  });

  withRun('transitions: connected on start, stopped last, each with an ISO time', async (run) => {
    await run.start();
    await until('connected is reported', () => run.transitions.some((t) => t.event === 'connected'));
    if (run.fixture.dropConnection !== undefined) {
      const before = run.transitions.length;
      await run.fixture.dropConnection();
      await until('a disconnect is reported', () => run.transitions.slice(before).some((t) => t.event === 'disconnected' || t.event === 'reconnecting'));
      await until('connected again', () => run.transitions.slice(before).some((t) => t.event === 'connected'));
      const id = await run.fixture.sendMessage('conformance after reconnect');
      await until('acknowledged after reconnecting', () => run.fixture.acknowledged().includes(id));
    }
    await run.fixture.connector.stop();
    assert.equal(run.transitions.at(-1)?.event, 'stopped');
    for (const t of run.transitions) assert.ok(!Number.isNaN(Date.parse(t.at)), `transition ${t.event} has no valid time`);
  });

  withRun('replays: a redelivered event is acknowledged again and not recorded twice', async (run) => {
    await run.start();
    const id = await run.fixture.sendMessage('conformance replay');
    await until('acknowledged', () => run.fixture.acknowledged().includes(id));
    await run.fixture.redeliver(id);
    await until('the replay is acknowledged', () => run.fixture.acknowledged().filter((acked) => acked === id).length >= 2);
    assert.equal(withText(await run.records(), 'conformance replay').length, 1);
  });

  withRun('policy: an excluded capture is acknowledged and counted as excluded, not captured', async (run) => {
    await run.start((ctx) => ({ ...ctx, capture: async () => ({ status: 'excluded', stream: ctx.stream, key: 'excluded', seq: 0 }) }));
    const id = await run.fixture.sendMessage('conformance personal');
    await until('acknowledged', () => run.fixture.acknowledged().includes(id));
    const status = run.fixture.connector.status();
    assert.equal(status.captured, 0);
    assert.ok((status.excluded ?? 0) >= 1, 'excluded is counted');
    assert.deepEqual(withText(await run.records(), 'conformance personal'), []);
  });
}
