/**
 * A recorder opening a stream finds its newest stored checkpoint without listing the stream's
 * whole history of checkpoints: hundreds of them, and it lists only those near the head.
 */
import { describe, expect, it } from 'vitest';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import type { Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { verifyArchive } from '../verify/verify-archive.ts';
import { Recorder } from './recorder.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const key = generateEd25519NoteKey('archive.example/offchannel');

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
}

/** `sink`, adding up the entries its checkpoint listings return. */
function counting(sink: Sink, listed: { value: number }): Sink {
  return new Proxy(sink, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (property !== 'checkpoints' && property !== 'checkpointFiles') return method.bind(target);
      return async (...args: unknown[]) => {
        const result = (await method.apply(target, args)) as readonly unknown[];
        listed.value += result.length;
        return result;
      };
    },
  });
}

describe('Recorder open with a long history of checkpoints', () => {
  it('lists only the checkpoints near the stored head, and continues the chain from the newest', { timeout: 120_000 }, async () => {
    const storage = new MemoryStorage();
    const first = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 10 }, logger: createRecordingLogger() });
    const writer = first.writer({ channel: 'demo', account: 'alice', source });
    for (let index = 0; index < 6000; index++) await writer.capture(message(index));
    await first.close();
    // Signing runs beside capture and never piles up, so not every tenth size has one.
    const all = await createMemorySink(storage).checkpoints('demo:alice');
    expect(all.length).toBeGreaterThan(300);
    const near = all.filter((size) => size > 6000 - 1024).length;
    expect(near).toBeLessThan(all.length / 2);

    const listed = { value: 0 };
    const second = new Recorder({ sink: counting(createMemorySink(storage), listed), allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 10 }, logger: createRecordingLogger() });
    const again = second.writer({ channel: 'demo', account: 'alice', source });
    for (let index = 6000; index < 6010; index++) await again.capture(message(index));
    await second.close();
    // One listing, of the checkpoints in the 1,024 sizes below the head.
    expect(listed.value).toBe(near);
    expect(await createMemorySink(storage).checkpoints('demo:alice', { after: 6000 })).toEqual([6010]);
    expect((await verifyArchive(createMemorySink(storage), { verifiers: [key.verifier] })).failures).toEqual([]);
  });
});
