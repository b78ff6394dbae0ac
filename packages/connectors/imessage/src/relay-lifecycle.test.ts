import { DatabaseSync } from 'node:sqlite';
import { OffchannelError } from '@offchannel/core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RelayHarness, type RunningRelay } from './__fixtures__/relay-harness.ts';
import { encodeAttributedBody, encodeBplist, waitForKeys } from './testing/index.ts';

let harness: RelayHarness;
let relay: RunningRelay | undefined;

beforeEach(async () => {
  harness = await RelayHarness.create();
});

afterEach(async () => {
  vi.restoreAllMocks();
  await harness.dispose();
});

describe('relay lifecycle', () => {
  it('fails to start with a clear error and a failed status when chat.db cannot be opened', async () => {
    const db = await harness.chatDb('mac');
    const missing = { ...db, path: `${harness.dir}/nowhere/chat.db` };
    const error = await harness.start(missing).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'CHAT_DB_UNAVAILABLE')).toBe(true);
  });

  it('starts once, stops idempotently, and reports liveness while running', async () => {
    const db = await harness.chatDb('mac');
    relay = await harness.start(db);
    await expect(relay.connector.start(relay.ctx)).rejects.toThrow(/already started/);
    const hello = await db.receive({ from: '+15550100', text: 'status check' });
    await waitForKeys((key) => relay!.ctx.lookup(key), [hello.key]);
    await vi.waitFor(() => { expect(relay!.connector.status().detail).toMatch(/last poll \d{4}-/); });
    expect(relay.connector.status()).toMatchObject({ state: 'running', captured: 1, errors: 0, lastEventAt: expect.any(String) as string });
    await relay.connector.stop();
    await relay.connector.stop();
    expect(relay.connector.status().state).toBe('stopped');
  });

  it('records a pause when the Mac slept between polls (the unsend window may have been missed)', async () => {
    const db = await harness.chatDb('mac');
    relay = await harness.start(db);
    const before = await db.receive({ from: '+15550100', text: 'before sleep' });
    await waitForKeys((key) => relay!.ctx.lookup(key), [before.key]);
    const realNow = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 90_000); // the clock jumps 90 s between two polls
    await vi.waitFor(async () => {
      const paused = (await harness.records()).filter((record) => record.system?.event === 'relay-paused');
      expect(paused).toHaveLength(1);
      expect(Number(paused[0]?.system?.fields?.['seconds'])).toBeGreaterThanOrEqual(90);
    });
  });

  it('treats a replaced chat.db (ROWIDs going backwards) as a new generation and records each GUID once', async () => {
    const first = await harness.chatDb('old');
    relay = await harness.start(first);
    const events = [];
    for (const text of ['one', 'two', 'three']) events.push(await first.receive({ from: '+15550100', text }));
    await waitForKeys((key) => relay!.ctx.lookup(key), events.map((e) => e.key));
    await relay.stop();

    const rebuilt = await harness.chatDb('rebuilt');
    const again = await rebuilt.receive({ from: '+15550100', text: 'after the rebuild' });
    relay = await harness.start(rebuilt);
    await waitForKeys((key) => relay!.ctx.lookup(key), [again.key]);
    const records = await harness.records();
    expect(records.filter((record) => record.system?.event === 'chat-db-generation-changed')).toHaveLength(1);
    expect(records.filter((record) => record.kind === 'message').map((record) => record.text)).toEqual(['one', 'two', 'three', 'after the rebuild']);
  });

  it('does not advance its cursor while the archive is down, and records everything once it is back', async () => {
    const db = await harness.chatDb('mac');
    relay = await harness.start(db);
    harness.failAppends = true;
    const during = await db.receive({ from: '+15550100', text: 'sent during the outage' });
    await vi.waitFor(() => { expect(relay!.connector.status().errors).toBeGreaterThan(0); });
    const saved = await (await harness.stateStore()).scope('imessage:alice@firm.example').getJson<{ rowid: string }>('imessage-cursor');
    expect(saved?.rowid ?? '0').toBe('0');
    expect(await relay.ctx.lookup(during.key)).toBeUndefined();
    harness.failAppends = false;
    await waitForKeys((key) => relay!.ctx.lookup(key), [during.key], { timeoutMs: 3000 });
    expect((await harness.records()).map((record) => record.key)).toEqual([during.key]);
    expect(harness.logger.text()).not.toContain('sent during');
  });

  for (const watch of [true, false]) {
    it(`keeps capturing across WAL checkpoints ${watch ? 'with the directory watch' : 'with the data_version poll alone'}`, async () => {
      const db = await harness.chatDb('mac');
      relay = await harness.start(db, { watch, pollMs: 300 });
      for (const text of ['before', 'after one checkpoint', 'after two']) {
        const event = await db.receive({ from: '+15550100', text });
        await waitForKeys((key) => relay!.ctx.lookup(key), [event.key], { timeoutMs: 2000 });
        await db.checkpoint();
      }
      expect(relay.connector.status().detail).toContain(watch ? 'directory watch on' : 'directory watch off');
    });
  }

  it('with startAt "now", skips the history already in chat.db on the first start', async () => {
    const db = await harness.chatDb('mac');
    const old = await db.receive({ from: '+15550100', text: 'history' });
    await db.createGroup({ name: 'Old group', members: ['+15550100'] });
    relay = await harness.start(db, { startAt: 'now' });
    const fresh = await db.receive({ from: '+15550100', text: 'new' });
    await waitForKeys((key) => relay!.ctx.lookup(key), [fresh.key]);
    expect(await relay.ctx.lookup(old.key)).toBeUndefined();
    expect((await harness.records()).map((record) => record.key)).toEqual([fresh.key]);
  });

  it('records good rows around a typedstream bomb, the bomb as unsupported with its bytes, and does not loop on it after a restart', async () => {
    // The review's 150-byte bomb: [100[100[100[100[0c]]]]] asks for 10^8 values; 100 bytes follow it.
    const ascii = (text: string): number[] => [...new TextEncoder().encode(text)];
    const encoding = ascii('[100[100[100[100[0c]]]]]');
    const bomb = Uint8Array.from([4, 11, ...ascii('streamtyped'), 0x81, 0xe8, 0x03, 0x84, encoding.length, ...encoding, 0x84, 0x06, ...ascii('[100c]'), ...new Array<number>(100).fill(0x20)]);
    const db = await harness.chatDb('mac');
    const before = await db.receive({ from: '+15550100', text: 'before the bomb' });
    const hostile = await db.receive({ from: '+15550100', text: 'ignored', body: bomb });
    const after = await db.receive({ from: '+15550100', text: 'after the bomb', bodyOnly: true });
    relay = await harness.start(db);
    await waitForKeys((key) => relay!.ctx.lookup(key), [before.key, hostile.key, after.key], { timeoutMs: 10_000 });
    const rejected = await harness.byKey(hostile.key);
    expect(rejected).toMatchObject({ kind: 'unsupported', problem: { reason: 'attributed-body-undecodable', detail: 'TYPEDSTREAM_INVALID' }, meta: { 'imessage.bodyError': 'TYPEDSTREAM_INVALID' } });
    expect(rejected.text).toBeUndefined();
    const raw = (await harness.raw(rejected))['message'] as Record<string, { base64?: string } | null>;
    expect(Buffer.from(raw['attributedBody']?.base64 ?? '', 'base64')).toEqual(Buffer.from(bomb));
    expect(relay.connector.status()).toMatchObject({ state: 'running', errors: 0 });
    await relay.stop();

    relay = await harness.start(db);
    const later = await db.receive({ from: '+15550100', text: 'after the restart' });
    await waitForKeys((key) => relay!.ctx.lookup(key), [later.key], { timeoutMs: 10_000 });
    const records = await harness.records();
    expect(records.map((record) => [record.kind, record.text])).toEqual([
      ['message', 'before the bomb'],
      ['unsupported', undefined],
      ['message', 'after the bomb'],
      ['message', 'after the restart'],
    ]);
    expect(relay.connector.status()).toMatchObject({ state: 'running', errors: 0, duplicates: 0 });
  }, 60_000);

  it('keeps capturing past a row whose message_summary_info holds an absurd edit date', async () => {
    const db = await harness.chatDb('mac');
    const before = await db.receive({ from: '+15550100', text: 'before' });
    const hostile = await db.receive({ from: '+15550100', text: 'original' });
    // Messages writes `d` as a real; 1e20 seconds is past any date JavaScript can print.
    const summary = Buffer.from(encodeBplist({ ec: { 0: [{ d: 785000000.5, t: encodeAttributedBody('original') }, { d: 1.25, t: encodeAttributedBody('edited') }] } }));
    const real = Buffer.alloc(8);
    real.writeDoubleBE(1.25);
    summary.writeDoubleBE(1e20, summary.indexOf(real));
    const sql = new DatabaseSync(db.path);
    sql.prepare('UPDATE message SET message_summary_info = ?, date_edited = date + 1 WHERE guid = ?').run(summary, hostile.guid);
    sql.close();
    const after = await db.receive({ from: '+15550100', text: 'after' });
    relay = await harness.start(db);
    const edit = `edit:${hostile.guid}:0:1`;
    await waitForKeys((key) => relay!.ctx.lookup(key), [before.key, hostile.key, edit, after.key], { timeoutMs: 10_000 });
    expect(await harness.byKey(edit)).toMatchObject({ kind: 'edit', text: 'edited', target: { id: hostile.guid } });
    expect(relay.connector.status()).toMatchObject({ state: 'running', errors: 0 });
  }, 60_000);

  it('refuses a damaged saved cursor instead of silently starting over', async () => {
    const db = await harness.chatDb('mac');
    relay = await harness.start(db);
    await relay.stop();
    await harness.stateStore().then((state) => state.scope('imessage:alice@firm.example').setJson('imessage-cursor', { v: 1, rowid: 'NaN' }));
    await expect(harness.start(db)).rejects.toThrow(/damaged/);
  });
});
