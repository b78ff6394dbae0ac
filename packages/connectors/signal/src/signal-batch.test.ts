/**
 * Backlogs: envelopes are decrypted in staged batches, recorded in one group commit, the
 * protocol state committed once, then acknowledged. A crash at any point of a batch leaves
 * every envelope of it unacknowledged, and after a restart each is recorded exactly once.
 */
import { type ArchiveRecord, Recorder, type Sink, createConnectorContext, decodeRecord } from '@offchannel/core';
import { createMemorySink, createRecordingLogger } from '@offchannel/core/testing';
import { describe, expect, it } from 'vitest';
import { TEST_TRUST_ROOT, linkedDevice } from './__fixtures__/linked-device.ts';
import { tempStateStore } from './__fixtures__/signal-parties.ts';
import { type FaultPoint, createSignalConnector } from './signal-connector.ts';

const until = async (condition: () => boolean): Promise<void> => {
  for (let i = 0; i < 4000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(condition()).toBe(true);
};

async function world(count: number, maxBatch?: number, appendMs = 2) {
  const root = await tempStateStore();
  const device = await linkedDevice(root);
  const memory = createMemorySink();
  const appends = { count: 0 };
  const sink = new Proxy(memory, {
    get(target, property) {
      if (property === 'appendBatch') {
        return async (...args: Parameters<Sink['appendBatch']>) => {
          appends.count++;
          await new Promise((resolve) => setTimeout(resolve, appendMs)); // a write takes time, as fsync does
          return target.appendBatch(...args);
        };
      }
      const value: unknown = Reflect.get(target, property);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  const recorder = new Recorder({ sink, allowVolatileSink: true });
  const logger = createRecordingLogger();
  const texts = Array.from({ length: count }, (_, i) => `backlog message ${i}`);
  const ids: string[] = [];
  for (const text of texts) ids.push(await device.message(text)); // encrypted in order, before any is delivered
  const start = async (fault?: (point: FaultPoint, id: string) => void) => {
    const connector = createSignalConnector({
      account: 'alice',
      trustRoots: [TEST_TRUST_ROOT],
      net: device.net,
      reconnect: { minMs: 5, maxMs: 20 },
      ...(maxBatch === undefined ? {} : { maxBatch }),
      ...(fault === undefined ? {} : { fault }),
    });
    await connector.start(createConnectorContext({ recorder, connector, state: root, logger, signal: new AbortController().signal }));
    return connector;
  };
  const records = async () => {
    const out: ArchiveRecord[] = [];
    for await (const stored of memory.read('signal:alice')) out.push(decodeRecord(stored.bytes).record);
    return out;
  };
  const exactlyOnce = async () => {
    const all = await records();
    expect(all.filter((r) => r.kind === 'undecryptable' || r.kind === 'unsupported')).toEqual([]);
    for (const text of texts) expect(all.filter((r) => r.text === text)).toHaveLength(1);
  };
  return { device, texts, ids, start, records, exactlyOnce, appends, logger };
}

describe('Signal backlog batches', () => {
  it('records a backlog in a few group commits and acknowledges every envelope once it is durable', { timeout: 60_000 }, async () => {
    const w = await world(60);
    const connector = await w.start();
    for (const id of w.ids) w.device.deliver(id);
    await until(() => w.device.acknowledged.length === 60);
    expect(w.device.acknowledged).toEqual(w.ids);
    await w.exactlyOnce();
    expect(w.appends.count).toBeLessThan(10);
    expect(connector.signalStatus()).toMatchObject({ captured: 60, envelopesAcknowledged: 60, errors: 0 });
    await connector.stop();
    for (const text of w.texts) expect(w.logger.text()).not.toContain(text);
  });

  for (const point of ['after-decrypt', 'after-capture', 'before-ack'] as const) {
    it(`a crash ${point} in the middle of a batch acknowledges none of it; after restart each envelope is recorded once`, { timeout: 60_000 }, async () => {
      const w = await world(30);
      let armed = true;
      const first = await w.start((at, id) => {
        // after-decrypt: the 20th envelope of the batch; the others: the batch's commit.
        if (armed && at === point && (point !== 'after-decrypt' || id === w.ids[19])) {
          armed = false;
          throw new Error('injected crash');
        }
      });
      for (const id of w.ids) w.device.deliver(id);
      await until(() => first.status().state === 'failed');
      await first.stop();
      expect(w.device.acknowledged).toEqual([]);

      const second = await w.start(); // restart on the same state and archive; the server redelivers
      for (const id of w.ids) w.device.deliver(id);
      await until(() => w.device.acknowledged.length === 30);
      await w.exactlyOnce();
      await second.stop();
    });
  }
  for (const point of ['after-decrypt', 'after-capture', 'before-ack'] as const) {
    it(`with small batches, a crash ${point} leaves only a prefix acknowledged; after restart each envelope is recorded once`, { timeout: 60_000 }, async () => {
      const w = await world(40, 4, 15); // slow appends: envelopes queue up while a batch is made durable
      let armed = true;
      let commits = 0;
      const first = await w.start((at, id) => {
        // after-decrypt: the 20th envelope; the others: the third batch's commit.
        const hit = at === point && (point === 'after-decrypt' ? id === w.ids[19] : ++commits === 3);
        if (armed && hit) {
          armed = false;
          throw new Error('injected crash');
        }
      });
      for (const id of w.ids) w.device.deliver(id);
      await until(() => first.status().state === 'failed');
      await first.stop();
      const acked = [...w.device.acknowledged];
      expect(acked).toEqual(w.ids.slice(0, acked.length)); // a prefix
      expect(acked.length).toBeLessThan(20);

      const second = await w.start();
      for (const id of w.ids) w.device.deliver(id);
      await until(() => new Set(w.device.acknowledged).size === 40);
      await w.exactlyOnce();
      await second.stop();
    });
  }
});
