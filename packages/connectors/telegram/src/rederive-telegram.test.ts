/**
 * Re-derivation: every record is its raw bytes plus recorded context run through the exported
 * mapping. (Every test that uses the shared rig checks this over its whole archive when the rig
 * closes; this one drives every decision that depends on earlier records.)
 */
import { describe, expect, it } from 'vitest';
import { rederiveTelegramRecord } from './rederive-telegram.ts';
import { createLocalTelegramPeer, LOCAL_IDS } from './testing/index.ts';
import { testRigs } from './test-support.ts';

const rigs = testRigs();

describe('re-deriving Telegram records from the archive alone', () => {
  it('re-derives edits, reactions and deletes from the records they name, and notices a wrong one', async () => {
    const r = await rigs.create();
    const peer = createLocalTelegramPeer();
    await peer.start({ recorder: r.recorder, state: r.state });
    const order = await peer.incomingText('Buy 100 ACME');
    await peer.react(order, '👍');
    await peer.edit(order, 'Buy 200 ACME'); // carries the reaction: compared with the 👍 record
    await peer.edit(order, 'Buy 300 ACME'); // compared with the first edit
    const desk = await peer.incomingText('Desk note', { chat: 'group' });
    await peer.react(desk, '🔥', { by: 'self' });
    await peer.delete(desk); // id only: chat and direction resolved from the message record
    const floor = await peer.incomingText('Floor note', { chat: 'supergroup' });
    await peer.delete(floor);
    const old = peer.historyOnlyText('before capture began');
    await peer.connector.reconcile({ chats: [String(LOCAL_IDS.client)] });
    peer.silentEdit(old, 'before capture began (edited)');
    peer.silentDelete(order);
    await peer.connector.reconcile({ chats: [String(LOCAL_IDS.client)] });
    await peer.stop();

    const records = await r.records(undefined, { all: true });
    const named = (field: string) => records.filter((record) => typeof record.meta?.[field] === 'string');
    expect(named('comparedWith').map((record) => record.kind).sort()).toEqual(['edit', 'edit', 'edit', 'reaction', 'reaction']);
    expect(named('resolvedFrom').map((record) => record.kind)).toEqual(['delete', 'delete', 'delete']);
    expect(records.filter((record) => record.meta?.['source'] === 'reconcile').map((record) => record.kind)).toEqual(['delete']);
    // Every record the mapping makes comes out the same (gaps and session records are their own content).
    expect(await r.rederive()).toBe(records.filter((record) => record.raw !== undefined).length);

    // An edit that names a record already holding its content is not an edit: re-derivation says so.
    const byKey = new Map(records.map((record) => [record.key, record]));
    const secondEdit = records.filter((record) => record.kind === 'edit')[1];
    expect(secondEdit?.text).toBe('Buy 300 ACME');
    const claimed = { ...secondEdit!, meta: { ...secondEdit!.meta, comparedWith: secondEdit!.key } };
    const result = await rederiveTelegramRecord(claimed, LOCAL_IDS.self, { byKey: (key) => byKey.get(key), blob: (sha256) => r.blob(sha256) });
    expect(result).toEqual({ status: 'derived', record: undefined });
  }, 60_000);
});
