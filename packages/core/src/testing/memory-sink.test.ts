import { it } from 'vitest';
import { MemoryStorage, createMemorySink } from './memory-sink.ts';
import { runSinkConformance } from './sink-conformance.ts';

runSinkConformance({
  test: it,
  createFixture: async () => {
    const storage = new MemoryStorage();
    return {
      open: async () => createMemorySink(storage),
      openReadOnly: async () => createMemorySink(storage, { readOnly: true }),
      destroy: async () => undefined,
    };
  },
});
