/**
 * `drain()` with two targets while one is far behind: the target that is up to date is not
 * handed the other's backlog of old timestamp tokens to check and store again. Before, each
 * token below its connect window went to it again (476 of 1,500 here), and once it had
 * forgotten thousands of them its drain goal could never be met.
 */
import { describe, expect, it } from 'vitest';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import { Recorder } from '../recorder/recorder.ts';
import type { AppendBatch, Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { Forwarder } from './forwarder.ts';

const source = { package: '@offchannel/test', version: '0' };
const key = generateEd25519NoteKey('archive.example/offchannel');

/** `sink` with one method replaced. */
function withMethod<K extends keyof Sink>(sink: Sink, name: K, replace: (inner: Sink) => Sink[K]): Sink {
  const replaced = replace(sink);
  return new Proxy(sink, {
    get(target, property) {
      if (property === name) return replaced;
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe('Forwarder.drain with a target far behind', () => {
  it('hands the target that is up to date no old tokens; the other gets every note and token', { timeout: 120_000 }, async () => {
    const spool = createMemorySink(new MemoryStorage());
    const recorder = new Recorder({ sink: spool, allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 1 } });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    for (let n = 1; n <= 1_500; n++) {
      await writer.capture({ kind: 'message', key: `m${n}`, sentAt: new Date(Date.UTC(2026, 10, 20, 9, 0, n)).toISOString(), conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${n}` }, text: `m${n}` });
      await recorder.checkpoint();
    }
    await recorder.close();
    const sizes = await spool.checkpoints(writer.stream);
    expect(sizes).toHaveLength(1_500);
    // A token beside every note (its bytes are opaque to the forwarder).
    for (const size of sizes) await spool.putCheckpoint(writer.stream, size, 'rfc3161', new TextEncoder().encode(`token ${size}`));

    const upToDate = createMemorySink(new MemoryStorage());
    const first = new Forwarder({ spool, targets: [{ name: 'a', sink: upToDate }], pollMs: 600_000 });
    first.start();
    await first.drain({ timeoutMs: 60_000 });
    await first.stop();

    let tokensToA = 0;
    const counting = withMethod(upToDate, 'putCheckpoint', (inner) => async (stream, size, file, bytes) => {
      if (file === 'rfc3161') tokensToA++;
      return inner.putCheckpoint(stream, size, file, bytes);
    });
    // The new target is slow to take its first batch: it is far behind when drain lists the spool.
    let slow = true;
    const behind = createMemorySink(new MemoryStorage());
    const slowStart = withMethod(behind, 'appendBatch', (inner) => async (batch: AppendBatch) => {
      if (slow) {
        slow = false;
        await new Promise((resolve) => setTimeout(resolve, 3_000));
      }
      return inner.appendBatch(batch);
    });
    const second = new Forwarder({ spool, targets: [{ name: 'a', sink: counting }, { name: 'b', sink: slowStart }], pollMs: 600_000 });
    second.start();
    await second.drain({ timeoutMs: 60_000 });
    await second.stop();
    expect(tokensToA).toBe(0);
    expect(await behind.checkpoints(writer.stream)).toEqual(sizes);
    for (const size of sizes) expect(await behind.getCheckpoint(writer.stream, size, 'rfc3161'), `token ${size}`).toBeDefined();
  });
});
