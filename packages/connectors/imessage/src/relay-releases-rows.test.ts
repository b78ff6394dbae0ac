import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type * as Core from '@offchannel/core';
import { sha256Hex } from '@offchannel/core';
import { RelayHarness, type RunningRelay } from './__fixtures__/relay-harness.ts';
import type { ChatDbEvent } from './chat-db-source.ts';
import { waitForKeys } from './testing/index.ts';

// Every event the connector runtime maps, as it stands once its map function returned: a first
// import holds hundreds of events in flight, and their rows were most of its heap.
const mapped: { event: ChatDbEvent; type: string; filesBefore: number }[] = [];
vi.mock('@offchannel/core', async (importOriginal) => {
  const original = await importOriginal<typeof Core>();
  return {
    ...original,
    createConnectorRuntime: <E extends Core.ConnectorEvent>(options: Core.ConnectorRuntimeOptions<E>) =>
      original.createConnectorRuntime<E>({
        ...options,
        map: async (event) => {
          const before = event as unknown as ChatDbEvent;
          const type = before.evidence.type;
          const filesBefore = before.files.size;
          const inputs = await options.map(event);
          mapped.push({ event: before, type, filesBefore });
          return inputs;
        },
      }),
  };
});

let harness: RelayHarness;
let relay: RunningRelay | undefined;

beforeEach(async () => {
  harness = await RelayHarness.create();
  mapped.length = 0;
});

afterEach(() => harness.dispose());

describe('a row event once mapped', () => {
  it('lets go of its rows and files, keeps its raw bytes, and is still acknowledged', async () => {
    const db = await harness.chatDb();
    const received = [];
    for (let i = 0; i < 5; i++) received.push(await db.receive({ from: '+15550100', text: `message ${i}`, bodyOnly: i % 2 === 0 }));
    received.push(await db.receiveAttachment({ from: '+15550100', name: 'photo.jpg', mime: 'image/jpeg', text: 'a photo' }));
    relay = await harness.start(db);
    await waitForKeys((key) => relay!.ctx.lookup(key), received.map((event) => event.key), { timeoutMs: 30_000 });

    const rows = mapped.filter((entry) => entry.type === 'row');
    expect(rows.map((entry) => entry.event.guid)).toEqual(received.map((event) => event.guid));
    expect(rows.map((entry) => entry.filesBefore)).toEqual([0, 0, 0, 0, 0, 1]); // the last one was read with its file
    for (const { event } of rows) {
      expect(event.evidence).toEqual({ type: 'none' });
      expect(event.files.size).toBe(0);
      // The raw bytes an unmappable event would be recorded with: still the row's, as stored.
      const record = await harness.byKey(`row:${event.guid ?? ''}`);
      expect(sha256Hex(event.raw)).toBe(record.raw?.sha256);
    }
    // Acknowledged: a restart reads from the saved cursor and records nothing twice.
    await relay.stop();
    const count = (await harness.records()).length;
    relay = await harness.start(db);
    const later = await db.receive({ from: '+15550100', text: 'after the restart' });
    await waitForKeys((key) => relay!.ctx.lookup(key), [later.key], { timeoutMs: 30_000 });
    expect((await harness.records()).map((record) => record.key).slice(count)).toEqual([later.key]);
  }, 60_000);
});
