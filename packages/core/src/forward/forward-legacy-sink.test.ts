/**
 * Sinks written before checkpoint ranges existed ignore `{ after }` and list everything: the
 * forwarder still copies every note, token and cosigned copy, and a lane's start does not list
 * such a target again looking for a wider window.
 */
import { describe, expect, it } from 'vitest';
import { ZERO_HASH } from '../hash/sha256.ts';
import type { CheckpointFile, Sink, StreamHead } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { batchAfter } from '../testing/sink-conformance.ts';
import { Forwarder } from './forwarder.ts';

const stream = 'demo:alice';
const encoder = new TextEncoder();
const bytesOf = (size: number, file: CheckpointFile) => encoder.encode(`archive.example/offchannel\n${size}\n${file}\n`);

/** `sink` as one written before ranges: its listings drop the range; `listings` counts them. */
function legacy(sink: Sink, listings: { value: number }): Sink {
  return new Proxy(sink, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (property !== 'checkpoints' && property !== 'checkpointFiles') return method.bind(target);
      return (name: string) => {
        listings.value++;
        return method.call(target, name);
      };
    },
  });
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('Forwarder with sinks that ignore checkpoint ranges', () => {
  it('copies every note, token and cosigned copy; a lane lists the target once at start', { timeout: 60_000 }, async () => {
    const spoolStorage = new MemoryStorage();
    const targetStorage = new MemoryStorage();
    let head: StreamHead = { seq: 0, hash: ZERO_HASH };
    // 3,000 records in both, a note every 10 in the spool; the target holds the notes up to 1,000
    // only (no note near its head: a ranged sink would be asked again, wider); tokens on the spool only.
    for (const storage of [spoolStorage, targetStorage]) {
      const sink = createMemorySink(storage);
      head = { seq: 0, hash: ZERO_HASH };
      while (head.seq < 3000) head = await sink.appendBatch(batchAfter(stream, head, 1000, `h${head.seq}`));
      for (let size = 10; size <= (storage === spoolStorage ? 3000 : 1000); size += 10) {
        await sink.putCheckpoint(stream, size, 'note', bytesOf(size, 'note'));
        if (storage === spoolStorage && size > 2980) await sink.putCheckpoint(stream, size, 'rfc3161', bytesOf(size, 'rfc3161'));
      }
    }
    const spoolListings = { value: 0 };
    const targetListings = { value: 0 };
    const target = createMemorySink(targetStorage);
    const filesOf = async (sink: Sink) => (sink.checkpointFiles ? sink.checkpointFiles(stream) : []);
    const forwarder = new Forwarder({ spool: legacy(createMemorySink(spoolStorage), spoolListings), targets: [{ name: 't', sink: legacy(target, targetListings) }], pollMs: 10 });
    forwarder.start();
    try {
      await until(async () => forwarder.status().targets[0]?.streams[0]?.seq === 3000, 'the lane to connect');
      expect(targetListings.value).toBe(1);
      // The notes the target lacked, and their tokens, are copied after the start.
      await until(async () => (await filesOf(target)).filter((entry) => entry.file === 'rfc3161').length === 2, 'the missing tokens');
      expect(await target.checkpoints(stream)).toEqual(await createMemorySink(spoolStorage).checkpoints(stream));
      for (let round = 0; round < 5; round++) {
        head = await forwarder.sink.appendBatch(batchAfter(stream, head, 10, `s${round}`));
        await forwarder.sink.putCheckpoint(stream, head.seq, 'note', bytesOf(head.seq, 'note'));
        await forwarder.sink.putCheckpoint(stream, head.seq, 'rfc3161', bytesOf(head.seq, 'rfc3161'));
        await forwarder.sink.putCheckpoint(stream, head.seq, 'cosigned-0123abcd', bytesOf(head.seq, 'cosigned-0123abcd'));
      }
      await forwarder.drain({ timeoutMs: 20_000 });
      // Drain does not wait for cosigned copies (a witness may never answer): they follow their note.
      const last = head.seq;
      await until(async () => (await target.getCheckpoint(stream, last, 'cosigned-0123abcd')) !== undefined, 'the last cosigned copy');
      expect(await filesOf(target)).toEqual(await filesOf(createMemorySink(spoolStorage)));
      expect(targetListings.value).toBe(1);
    } finally {
      await forwarder.stop();
    }
  });
});
