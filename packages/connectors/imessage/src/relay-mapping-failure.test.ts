import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RelayHarness, type RunningRelay } from './__fixtures__/relay-harness.ts';
import type * as Mapping from './map-chat-db-row.ts';
import { waitForKeys } from './testing/index.ts';

// A mapping bug, injected: the mapping throws for one row. Nothing in today's mapping is known
// to throw (hostile rows are fuzzed in map-chat-db-row.test.ts); this checks the net the
// connector runtime spreads for the next bug: the row must not stop capture.
const POISON = 'a row the mapping cannot handle';
vi.mock('./map-chat-db-row.ts', async (importOriginal) => {
  const original = await importOriginal<typeof Mapping>();
  return {
    ...original,
    mapChatDbEvent: (...args: Parameters<typeof original.mapChatDbEvent>) => {
      const [evidence] = args;
      if (evidence.type === 'row' && evidence.bundle.message['text'] === POISON) throw new TypeError('mapping bug');
      return original.mapChatDbEvent(...args);
    },
  };
});

let harness: RelayHarness;
let relay: RunningRelay | undefined;

beforeEach(async () => {
  harness = await RelayHarness.create();
});

afterEach(() => harness.dispose());

describe('a row the mapping cannot handle', () => {
  it('is recorded once as unsupported with the raw row, and capture goes on past it and across a restart', async () => {
    const db = await harness.chatDb();
    const before = await db.receive({ from: '+15550100', text: 'before' });
    const poison = await db.receive({ from: '+15550100', text: POISON });
    const after = await db.receive({ from: '+15550100', text: 'after' });
    relay = await harness.start(db);
    await waitForKeys((key) => relay!.ctx.lookup(key), [before.key, after.key], { timeoutMs: 10_000 });
    const failed = (await harness.records()).filter((record) => record.key.startsWith('unmappable:'));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ kind: 'unsupported', problem: { reason: 'mapping-failed', detail: 'TypeError' }, raw: { format: 'imessage.chat-db-row.json' } });
    const raw = (await harness.raw(failed[0]!))['message'] as Record<string, unknown>;
    expect(raw['text']).toBe(POISON);
    expect(raw['guid']).toBe(poison.guid);
    expect(harness.logger.text()).not.toContain(POISON);
    await relay.stop();

    relay = await harness.start(db);
    const later = await db.receive({ from: '+15550100', text: 'after the restart' });
    await waitForKeys((key) => relay!.ctx.lookup(key), [later.key], { timeoutMs: 10_000 });
    const keys = (await harness.records()).map((record) => record.key);
    expect(keys).toEqual([before.key, failed[0]!.key, after.key, later.key]);
    expect(relay.connector.status()).toMatchObject({ state: 'running', errors: 0, unsupported: 0 });
  }, 60_000);
});
