/**
 * Issue "One connector runtime", deliver 3: every record is a pure function of recorded evidence.
 * Over a whole archive (a scripted day, a receipt, an undecodable body, ROWIDs deleted before
 * capture, a row the sweep recovered), each record's raw blob run through the exported mapping
 * gives the same record. Every other test that runs the relay harness checks the same at dispose.
 */
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RelayHarness, type RunningRelay } from './__fixtures__/relay-harness.ts';
import { moveBelowCursor } from './testing/index.ts';
import { rederiveAll } from './__fixtures__/rederive.ts';
import { playDemoConversation, waitForKeys } from './testing/index.ts';

let harness: RelayHarness;
let relay: RunningRelay | undefined;

beforeEach(async () => {
  harness = await RelayHarness.create();
});

afterEach(() => harness.dispose({ rederive: false }));

describe('re-deriving every record from its raw evidence', () => {
  it('gives back every record of a whole archive, of every kind the relay writes', async () => {
    const db = await harness.chatDb();
    relay = await harness.start(db);
    const lookup = (key: string) => relay!.ctx.lookup(key);
    await playDemoConversation(db, { captured: (key) => waitForKeys(lookup, [key], { timeoutMs: 10_000 }) });
    const sent = await db.send({ to: '+15550100', text: 'receipt please' });
    const delivered = await db.delivered(sent.guid);
    const bomb = await db.receive({ from: '+15550100', text: 'ignored', body: Uint8Array.from([4, 11, 0xff]) });
    const placeholder = await db.receive({ from: '+15550100', text: 'recorded, later replaced' });
    await waitForKeys(lookup, [delivered.key, bomb.key, placeholder.key], { timeoutMs: 10_000 });
    await relay.stop();
    // While stopped: a row deleted before capture, and one written below the cursor.
    const doomed = await db.receive({ from: '+15550100', text: 'deleted before capture' });
    const last = await db.receive({ from: '+15550100', text: 'after the deleted one' });
    const sql = new DatabaseSync(db.path);
    sql.prepare('DELETE FROM message WHERE guid = ?').run(doomed.guid);
    sql.close();
    const below = await db.receive({ from: '+15550100', text: 'written below the cursor' });
    moveBelowCursor(db.path, below.guid, placeholder.guid);
    relay = await harness.start(db);
    await waitForKeys((key) => relay!.ctx.lookup(key), [last.key, below.key], { timeoutMs: 10_000 });
    await relay.stop();

    const records = await harness.records();
    const result = await harness.rederive();
    expect(result).toEqual({ checked: records.length, runtimeRecords: [] });
    const kinds = new Set(records.map((record) => record.kind));
    for (const kind of ['message', 'edit', 'delete', 'reaction', 'receipt', 'membership', 'unsupported', 'gap', 'system']) expect(kinds).toContain(kind);
  }, 60_000);

  it('fails on a record that is not what the mapping makes of its evidence', async () => {
    const db = await harness.chatDb();
    relay = await harness.start(db);
    const message = await db.receive({ from: '+15550100', text: 'the original words' });
    await waitForKeys((key) => relay!.ctx.lookup(key), [message.key], { timeoutMs: 10_000 });
    const records = await harness.records();
    const blob = (sha256: string) => harness.sink.getBlob(sha256);
    await expect(rederiveAll(records, blob, 'alice@firm.example')).resolves.toMatchObject({ checked: records.length });
    const altered = records.map((record) => (record.key === message.key ? { ...record, text: 'other words' } : record));
    await expect(rederiveAll(altered, blob, 'alice@firm.example')).rejects.toThrow(/differs from what the mapping makes/);
    const bare = records.map((record) => {
      if (record.key !== message.key) return record;
      const { raw: _raw, ...rest } = record;
      return rest;
    });
    await expect(rederiveAll(bare, blob, 'alice@firm.example')).rejects.toThrow(/has no raw evidence/);
  }, 60_000);
});
