/**
 * Completeness: the sweep compares chat.db with the archive. Rows inserted while the relay was
 * stopped — after the cursor and below it — are captured and reported; rows already archived are
 * looked up in the key index, never re-read from the archive; a row unsent before any capture
 * saw it is reported as lost.
 */
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RelayHarness, type RunningRelay } from './__fixtures__/relay-harness.ts';
import { moveBelowCursor, plantUnsentRow } from './testing/index.ts';
import { waitForKeys } from './testing/index.ts';

let harness: RelayHarness;
let relay: RunningRelay | undefined;

beforeEach(async () => {
  harness = await RelayHarness.create();
});

afterEach(() => harness.dispose());

describe('the chat.db sweep', () => {
  it('recovers rows inserted while the relay was stopped, including below the cursor, and reports them', async () => {
    const db = await harness.chatDb();
    relay = await harness.start(db);
    const first = await db.receive({ from: '+15550100', text: 'captured live' });
    const replaced = await db.receive({ from: '+15550100', text: 'captured, then replaced by a restore' });
    await waitForKeys((key) => relay!.ctx.lookup(key), [first.key, replaced.key], { timeoutMs: 10_000 });
    await relay.stop();

    // While stopped: a row after the cursor, a row that lands below it, one unsent before capture.
    const after = await db.receive({ from: '+15550100', text: 'written while stopped' });
    const below = await db.receive({ from: '+15550100', text: 'restored below the cursor' });
    moveBelowCursor(db.path, below.guid, replaced.guid);
    relay = await harness.start(db, { reconcileMs: 3_600_000 });
    await waitForKeys((key) => relay!.ctx.lookup(key), [after.key, below.key], { timeoutMs: 10_000 });
    // The start-up sweep found the row below the cursor and said so.
    const sweepRecords = async () => (await harness.records()).filter((record) => record.system?.event === 'chat-db-sweep');
    for (const deadline = Date.now() + 10_000; (await sweepRecords()).length === 0 && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 20));
    const sweeps = await sweepRecords();
    expect(sweeps).toHaveLength(1);
    expect(sweeps[0]).toMatchObject({ kind: 'system', system: { fields: { trigger: 'scheduled', recovered: '1', unsentBeforeCapture: '0' } } });
    expect(Number(sweeps[0]!.system!.fields!['checked'])).toBeGreaterThanOrEqual(2);
    expect((await harness.byKey(below.key)).text).toBe('restored below the cursor');

    // On demand, while running: a row unsent before any capture saw it, written below the cursor.
    const ghost = plantUnsentRow(db.path, after.guid, first.guid);
    const report = await relay.connector.reconcile();
    expect(report).toMatchObject({ trigger: 'on-demand', recovered: 1, unsentBeforeCapture: 1 });
    expect(await harness.byKey(`row:${ghost}`)).toMatchObject({ kind: 'gap', gap: { reason: 'unsent-before-capture' } });

    // Nothing left to find: a second sweep recovers nothing and records nothing twice.
    const again = await relay.connector.reconcile();
    expect(again).toMatchObject({ recovered: 0 });
    const keys = (await harness.records()).map((record) => record.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(harness.logger.text()).not.toContain('restored below the cursor');
  }, 60_000);

  it('does not sweep the history a "now" start skipped', async () => {
    const db = await harness.chatDb();
    const old = await db.receive({ from: '+15550100', text: 'history before the first start' });
    relay = await harness.start(db, { startAt: 'now' });
    const report = await relay.connector.reconcile();
    expect(report).toMatchObject({ recovered: 0, checked: 0 });
    expect(await relay.ctx.lookup(old.key)).toBeUndefined();
  }, 60_000);

  it('checks rows through the key index, without reading the archive back', async () => {
    const db = await harness.chatDb();
    relay = await harness.start(db);
    const rows = [];
    for (let index = 0; index < 20; index++) rows.push(await db.receive({ from: '+15550100', text: `row ${index}` }));
    await waitForKeys((key) => relay!.ctx.lookup(key), rows.map((row) => row.key), { timeoutMs: 10_000 });
    let reads = 0;
    const read = harness.sink.read.bind(harness.sink);
    harness.sink.read = (...args: Parameters<typeof read>) => {
      reads++;
      return read(...args);
    };
    const report = await relay.connector.reconcile();
    harness.sink.read = read;
    expect(report).toMatchObject({ checked: 20, recovered: 0 });
    expect(reads).toBe(0);
  }, 60_000);
});

describe('a row deleted before the relay read it', () => {
  it('is a gap record with the ROWID window', async () => {
    const db = await harness.chatDb();
    relay = await harness.start(db);
    const first = await db.receive({ from: '+15550100', text: 'one' });
    await waitForKeys((key) => relay!.ctx.lookup(key), [first.key], { timeoutMs: 10_000 });
    await relay.stop();
    const doomed = await db.receive({ from: '+15550100', text: 'deleted unseen' });
    const next = await db.receive({ from: '+15550100', text: 'three' });
    const sql = new DatabaseSync(db.path);
    const rowid = (guid: string) => String(sql.prepare('SELECT ROWID AS r FROM message WHERE guid = ?').get(guid)?.['r']);
    const window = { from: rowid(first.guid), to: rowid(next.guid) };
    sql.prepare('DELETE FROM message WHERE guid = ?').run(doomed.guid);
    sql.close();
    relay = await harness.start(db);
    await waitForKeys((key) => relay!.ctx.lookup(key), [next.key], { timeoutMs: 10_000 });
    const gaps = (await harness.records()).filter((record) => record.kind === 'gap');
    expect(gaps).toHaveLength(1);
    expect(gaps[0]).toMatchObject({ gap: { reason: 'rows-deleted-before-capture', ...window, missing: 1 } });
  }, 60_000);
});
