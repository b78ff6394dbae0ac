import { describe, it } from 'vitest';
import type { Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from './memory-sink.ts';
import { runSinkConformance } from './sink-conformance.ts';

runSinkConformance({
  test: it,
  checkpointRanges: true,
  createFixture: async () => {
    const storage = new MemoryStorage();
    return {
      open: async () => createMemorySink(storage),
      openReadOnly: async () => createMemorySink(storage, { readOnly: true }),
      destroy: async () => undefined,
    };
  },
});

/** `sink` as one written before checkpoint ranges existed: its listings ignore the range. */
function beforeRanges(sink: Sink): Sink {
  return new Proxy(sink, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (property !== 'checkpoints' && property !== 'checkpointFiles') return method.bind(target);
      return (name: string) => method.call(target, name);
    },
  });
}

// A third-party sink written before ranges, its test unchanged (no `checkpointRanges`): it still implements spec 1.
describe('a sink that ignores checkpoint ranges', () => {
  runSinkConformance({
    test: it,
    createFixture: async () => {
      const storage = new MemoryStorage();
      return {
        open: async () => beforeRanges(createMemorySink(storage)),
        openReadOnly: async () => beforeRanges(createMemorySink(storage, { readOnly: true })),
        destroy: async () => undefined,
      };
    },
  });
});
