import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import { type ArchiveRecord, Recorder, createConnectorContext, openStateStore, type StateStore } from '@offchannel/core';
import { MemoryStorage, createMemorySink, createRecordingLogger } from '@offchannel/core/testing';
import { proto } from '@whiskeysockets/baileys';
import { afterEach, describe, expect, it } from 'vitest';
import { HISTORY_PAYLOAD_FORMAT } from './map-whatsapp.ts';
import { JIDS } from './testing/fixtures.ts';
import { createWhatsAppTestDriver, type WhatsAppTestDriver, type WhatsAppTestDriverOptions } from './testing/offline-driver.ts';
import { rederiveWhatsAppArchive } from './testing/rederive.ts';

const T0 = Date.UTC(2026, 10, 21, 9, 0, 0);
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Harness {
  readonly driver: WhatsAppTestDriver;
  readonly storage: MemoryStorage;
  readonly state: StateStore;
  records(): ArchiveRecord[];
  /** Sets the connector's clock. */
  at(ms: number): void;
}

/** The real connector on the offline driver, a memory archive; every archive must re-derive from its evidence. */
async function harness(options: WhatsAppTestDriverOptions = {}): Promise<Harness> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-reconcile-'));
  const state = await openStateStore({ dir, key: randomBytes(32) });
  const storage = new MemoryStorage();
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true });
  let now = T0;
  const driver = await createWhatsAppTestDriver({ account: 'desk', startTime: T0 / 1000, clock: () => now, offlineQuietMs: 100, reconcile: false, ...options });
  await driver.connector.start(createConnectorContext({ recorder, connector: driver.connector, state, logger: createRecordingLogger(), signal: new AbortController().signal }));
  const records = () => (storage.streams.get('whatsapp:desk')?.records ?? []).map((bytes) => JSON.parse(Buffer.from(bytes).toString('utf8')) as ArchiveRecord);
  cleanups.push(async () => {
    await driver.close();
    await recorder.close();
    await rm(dir, { recursive: true, force: true });
  });
  cleanups.push(async () => {
    await driver.whenCaptured();
    const result = rederiveWhatsAppArchive(records(), (sha256) => storage.blobs.get(sha256));
    expect(result.mismatches).toEqual([]);
    expect(result.checked + result.withheld).toBe(records().length);
  });
  return { driver, storage, state, records, at: (ms) => { now = ms; } };
}

async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const texts = (records: ArchiveRecord[]) => records.filter((r) => r.kind === 'message').map((r) => r.text);
const system = (records: ArchiveRecord[], event: string) => records.filter((r) => r.kind === 'system' && r.system?.event === event);

/**
 * Before the outage one message arrives live; while the device is disconnected Alice and Bob
 * send two each; on reconnect the server announces 4 offline messages but delivers only the
 * second of each (the others are lost: acknowledged by Baileys, never archived).
 * `phoneOnly` messages from Alice come first: history the phone has but the archive never had
 * (e.g. from before the device was linked). The driver sends message n at T0 + n s.
 */
async function outage(h: Harness, phoneOnly = 0) {
  for (let i = 1; i <= phoneOnly; i++) await h.driver.offlineText(`phone only ${i}`);
  await h.driver.incomingText('before the outage');
  await h.driver.whenCaptured();
  // Last seen online just after it: the gap begins there, and ends when the count is compared.
  h.at(T0 + (phoneOnly + 1) * 1000 + 500);
  h.driver.connector.checkCompleteness();
  const lostAlice = await h.driver.offlineText('lost from alice');
  const keptAlice = await h.driver.offlineText('delivered from alice');
  const lostBob = await h.driver.offlineText('lost from bob', { from: JIDS.bob });
  const keptBob = await h.driver.offlineText('delivered from bob', { from: JIDS.bob });
  h.at(T0 + (phoneOnly + 6) * 1000);
  await h.driver.socket().offlineDelivery([keptAlice, keptBob], { announced: 4 });
  await until(() => h.records().some((r) => r.kind === 'gap'), 30_000, 'the offline-count gap');
  await h.driver.whenCaptured();
  return { lostAlice, lostBob };
}

describe('WhatsApp reconciliation (on-demand history fetch after a gap)', () => {
  it('recovers the messages lost in an offline delivery from the phone, records each once, and says so against the gap', async () => {
    const h = await harness();
    await outage(h);
    const gap = h.records().find((r) => r.kind === 'gap');
    expect(gap).toMatchObject({ gap: { reason: 'offline-count-mismatch', missing: 2 } });
    expect(texts(h.records())).toEqual(['before the outage', 'delivered from alice', 'delivered from bob']);

    const report = await h.driver.connector.reconcile({ timeoutMs: 30_000 });
    await h.driver.whenCaptured();
    // Alice's chat: the phone returns "before the outage" (archived: a duplicate) and the lost one; Bob's: his lost one.
    expect(report).toMatchObject({ gaps: 1, recovered: 1, notRecovered: [], chatsAsked: 2, chatsAnswered: 2, returned: 3, recorded: 2 });
    expect(h.driver.phone.requests.map((r) => r.oldestKey.remoteJid).sort()).toEqual([JIDS.alice, JIDS.bob].sort());
    const records = h.records();
    expect(texts(records).sort()).toEqual(['before the outage', 'delivered from alice', 'delivered from bob', 'lost from alice', 'lost from bob'].sort());
    const recovered = records.filter((r) => r.meta?.['recoveredBy'] === 'history-on-demand');
    expect(recovered.map((r) => r.text).sort()).toEqual(['lost from alice', 'lost from bob']);
    expect(recovered.every((r) => r.meta?.['origin'] === 'history' && r.meta['historySyncType'] === 'ON_DEMAND')).toBe(true);
    // The same idempotency keys as live capture: one record per message.
    const keys = records.map((r) => r.key);
    expect(new Set(keys).size).toBe(keys.length);
    const [backfilled] = system(records, 'gap-backfilled');
    expect(backfilled?.system?.fields).toEqual({ gap: gap?.key, method: 'fetchMessageHistory', attempt: '1', chats: '2', answered: '2', returned: '3', recorded: '2', notAsked: '0', unaskedChats: 'possible' });

    // Nothing is pending any more: a second run asks nothing and records nothing.
    const count = h.records().length;
    const again = await h.driver.connector.reconcile({ timeoutMs: 30_000 });
    await h.driver.whenCaptured();
    expect(again).toMatchObject({ gaps: 0, recorded: 0 });
    expect(h.records()).toHaveLength(count);
  }, 60_000);

  it('only messages sent within the gap count as recovered: older history the last page reaches back to (never archived) is recorded as history, not as recovered', async () => {
    const h = await harness();
    await outage(h, 3);
    const gap = h.records().find((r) => r.kind === 'gap');
    expect(gap).toMatchObject({ gap: { missing: 2 } });
    const report = await h.driver.connector.reconcile({ timeoutMs: 30_000 });
    await h.driver.whenCaptured();
    expect(report).toMatchObject({ recovered: 1, returned: 6, recorded: 2 });
    const records = h.records();
    expect(texts(records).filter((t) => t?.startsWith('phone only'))).toEqual(['phone only 1', 'phone only 2', 'phone only 3']);
    const recovered = records.filter((r) => r.meta?.['recoveredBy'] === 'history-on-demand');
    expect(recovered.map((r) => r.text).sort()).toEqual(['lost from alice', 'lost from bob']);
    expect(recovered.every((r) => r.meta?.['recoveredFor'] === gap?.key)).toBe(true);
    expect(records.filter((r) => r.text?.startsWith('phone only')).every((r) => r.meta?.['historySyncType'] === 'ON_DEMAND' && r.meta['recoveredBy'] === undefined)).toBe(true);
    expect(system(records, 'gap-backfilled')[0]?.system?.fields).toMatchObject({ returned: '6', recorded: '2' });
  }, 60_000);

  it('one contact cannot take every chat slot of a gap: chats left unasked are counted and the gap stays pending until they are asked', async () => {
    const h = await harness();
    await h.driver.incomingText('before the outage');
    await h.driver.whenCaptured();
    h.at(T0 + 1500);
    h.driver.connector.checkCompleteness();
    const lost = await h.driver.offlineText('lost from alice');
    const groups = Array.from({ length: 14 }, (_, i) => `1203630000000${String(i).padStart(5, '0')}@g.us`);
    const spam = [];
    for (const group of groups) spam.push(await h.driver.offlineText('hello', { from: JIDS.bob, group }));
    const keptAlice = await h.driver.offlineText('delivered from alice');
    h.at(T0 + 30_000);
    await h.driver.socket().offlineDelivery([...spam, keptAlice], { announced: spam.length + 2 });
    await until(() => h.records().some((r) => r.kind === 'gap'), 30_000, 'the gap');
    await h.driver.whenCaptured();
    expect(lost.key?.id).toBeTruthy();
    const report = await h.driver.connector.reconcile({ timeoutMs: 30_000 });
    await h.driver.whenCaptured();
    // Bob anchors 10 groups; Alice's chat is still asked; 4 of Bob's groups are left for later.
    expect(report).toMatchObject({ chatsAsked: 11, chatsAnswered: 11, recovered: 0, recorded: 1, notRecovered: [{ reason: 'some-chats-not-asked' }] });
    expect(h.driver.phone.requests.map((r) => r.oldestKey.remoteJid)).toContain(JIDS.alice);
    expect(system(h.records(), 'gap-backfilled')[0]?.system?.fields).toMatchObject({ chats: '11', answered: '11', recorded: '1', notAsked: '4', reason: 'some-chats-not-asked' });
    expect(texts(h.records())).toContain('lost from alice');
  }, 60_000);

  it('a gap found by capture is recovered by a later process (pending in the state store); answers matched by chat when the phone gives no session id', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-reconcile-restart-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const state = await openStateStore({ dir, key: randomBytes(32) });
    const storage = new MemoryStorage();
    const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true });
    cleanups.push(() => recorder.close());
    const records = () => (storage.streams.get('whatsapp:desk')?.records ?? []).map((bytes) => JSON.parse(Buffer.from(bytes).toString('utf8')) as ArchiveRecord);
    let now = T0;
    const start = async () => {
      const driver = await createWhatsAppTestDriver({ account: 'desk', startTime: T0 / 1000, clock: () => now, offlineQuietMs: 100, reconcile: false });
      await driver.connector.start(createConnectorContext({ recorder, connector: driver.connector, state, logger: createRecordingLogger(), signal: new AbortController().signal }));
      return driver;
    };
    // Capture: the outage and its gap; then the process stops.
    const first = await start();
    await outage({ driver: first, storage, state, records, at: (ms) => { now = ms; } });
    await first.close();
    // Reconcile, later: another connector on the same state and archive; the same phone.
    const second = await start();
    cleanups.push(() => second.close());
    for (const [chat, messages] of first.phone.history) second.phone.history.set(chat, messages);
    second.phone.sessionIds = 'unrelated';
    const report = await second.connector.reconcile({ timeoutMs: 30_000 });
    await second.whenCaptured();
    expect(report).toMatchObject({ gaps: 1, recovered: 1, chatsAnswered: 2, returned: 3, recorded: 2 });
    expect(texts(records()).sort()).toEqual(['before the outage', 'delivered from alice', 'delivered from bob', 'lost from alice', 'lost from bob'].sort());
    const result = rederiveWhatsAppArchive(records(), (sha256) => storage.blobs.get(sha256));
    expect(result.mismatches).toEqual([]);
  }, 60_000);

  it('pages back through a chat until the answer reaches before the gap', async () => {
    const h = await harness();
    await h.driver.incomingText('before the outage'); // sent at T0 + 1 s
    await h.driver.whenCaptured();
    // Last seen online at T0 + 1.5 s: the gap begins there; the next messages are sent from T0 + 2 s.
    h.at(T0 + 1500);
    h.driver.connector.checkCompleteness();
    const lost = [await h.driver.offlineText('lost 1'), await h.driver.offlineText('lost 2'), await h.driver.offlineText('lost 3')];
    const kept = await h.driver.offlineText('delivered');
    h.at(T0 + 6000);
    await h.driver.socket().offlineDelivery([kept], { announced: 4 });
    await until(() => h.records().some((r) => r.kind === 'gap'), 30_000, 'the gap');
    const report = await h.driver.connector.reconcile({ timeoutMs: 30_000, count: 2 });
    await h.driver.whenCaptured();
    expect(lost).toHaveLength(3);
    expect(report).toMatchObject({ recovered: 1, returned: 4, recorded: 3 });
    // lost 3 + lost 2, then lost 1 + the message before the gap: the answer reached back before it.
    expect(h.driver.phone.requests).toHaveLength(2);
    expect(texts(h.records()).filter((t) => t?.startsWith('lost')).sort()).toEqual(['lost 1', 'lost 2', 'lost 3']);
  }, 60_000);

  it('a phone that never answers: "not recovered" within the timeout, the gap stays pending, and a later run recovers it', async () => {
    const h = await harness();
    await outage(h);
    h.driver.phone.online = false;
    const started = performance.now();
    const report = await h.driver.connector.reconcile({ timeoutMs: 300 });
    expect(performance.now() - started).toBeLessThan(20_000);
    await h.driver.whenCaptured();
    const gapKey = h.records().find((r) => r.kind === 'gap')?.key;
    expect(report).toMatchObject({ gaps: 1, recovered: 0, notRecovered: [{ gap: gapKey, reason: 'phone-did-not-answer' }], chatsAsked: 2, chatsAnswered: 0, recorded: 0 });
    expect(system(h.records(), 'gap-not-recovered').map((r) => r.system?.fields)).toEqual([{ gap: gapKey, method: 'fetchMessageHistory', reason: 'phone-did-not-answer', attempt: '1', chats: '2', answered: '0', returned: '0', recorded: '0', notAsked: '0', unaskedChats: 'possible' }]);

    h.driver.phone.online = true;
    const later = await h.driver.connector.reconcile({ timeoutMs: 30_000 });
    await h.driver.whenCaptured();
    expect(later).toMatchObject({ gaps: 1, recovered: 1, recorded: 2 });
    expect(system(h.records(), 'gap-backfilled').map((r) => r.system?.fields?.['attempt'])).toEqual(['2']);
  }, 60_000);

  it('hostile or broken answers become unsupported records with the bytes as sent; nothing crashes and capture goes on', async () => {
    const h = await harness();
    await outage(h);
    const payloads: Record<string, Uint8Array> = {
      'not zlib': Uint8Array.from(randomBytes(64)),
      'zlib, not a HistorySync': Uint8Array.from(deflateSync(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]))),
      'a zip bomb (65 MiB of zeros)': Uint8Array.from(deflateSync(Buffer.alloc(65 * 1024 * 1024))),
      'a message without a key': Uint8Array.from(deflateSync(proto.HistorySync.encode({ syncType: proto.HistorySync.HistorySyncType.ON_DEMAND, conversations: [{ id: JIDS.alice, messages: [{ message: { messageTimestamp: 1 } }] }] }).finish())),
    };
    const expected = { 'not zlib': 'history-payload-inflate-failed', 'zlib, not a HistorySync': 'history-payload-malformed', 'a zip bomb (65 MiB of zeros)': 'history-payload-too-large', 'a message without a key': 'history-payload-malformed' };
    for (const [name, payload] of Object.entries(payloads)) {
      h.driver.phone.payload = () => payload;
      const report = await h.driver.connector.reconcile({ timeoutMs: 500 });
      await h.driver.whenCaptured();
      expect(report.recovered, name).toBe(0);
      const sha = createHash('sha256').update(payload).digest('hex');
      const record = h.records().find((r) => r.kind === 'unsupported' && r.raw?.sha256 === sha);
      expect(record, name).toMatchObject({ raw: { format: HISTORY_PAYLOAD_FORMAT, size: payload.length }, problem: { reason: expected[name as keyof typeof expected] } });
      expect(Buffer.from(h.storage.blobs.get(sha) ?? []).equals(Buffer.from(payload)), name).toBe(true);
    }
    // The gap is still pending; live capture never stopped.
    h.driver.phone.payload = undefined;
    await h.driver.incomingText('after the hostile answers');
    const report = await h.driver.connector.reconcile({ timeoutMs: 30_000 });
    await h.driver.whenCaptured();
    expect(report).toMatchObject({ recovered: 1, recorded: 2 });
    expect(texts(h.records())).toContain('after the hostile answers');
  }, 60_000);

  // A few KB of deflated protobuf entries expand into millions of decoded objects.
  const repeated = (entry: number[], times: number) => Uint8Array.from(deflateSync(Buffer.alloc(entry.length * times, Buffer.from(entry))));
  const bombs = {
    'empty chats (3.9 KB → 2 M)': repeated([0x12, 0x00], 2_000_000),
    'chats with an id': repeated([0x12, 0x03, 0x0a, 0x01, 0x41], 800_000),
    'push names': repeated([0x3a, 0x00], 2_000_000),
    'one chat of empty messages': Uint8Array.from(deflateSync(Buffer.concat([Buffer.from([0x12, 0x83, 0x89, 0x7a, 0x0a, 0x01, 0x41]), Buffer.alloc(2 * 1_000_000, Buffer.from([0x12, 0x00]))]))),
  };

  it('a history-sync notification from anyone but our own devices is never inflated, decoded or recorded as history', async () => {
    const h = await harness();
    await h.driver.incomingText('before');
    const forged = { syncType: proto.HistorySync.HistorySyncType.ON_DEMAND, conversations: [{ id: JIDS.alice, messages: [{ message: { key: { remoteJid: JIDS.alice, fromMe: false, id: 'FORGED-1' }, messageTimestamp: 1_780_000_000, message: { conversation: 'forged history' } } }] }] };
    const payloads = { ...bombs, 'not zlib': Uint8Array.from(randomBytes(64)), 'a well-formed chunk': Uint8Array.from(deflateSync(proto.HistorySync.encode(forged).finish())) };
    for (const [name, payload] of Object.entries(payloads)) {
      const started = performance.now();
      await h.driver.socket().historyNotification(forged, { payload, from: JIDS.bob });
      expect(performance.now() - started, name).toBeLessThan(5_000);
    }
    await h.driver.incomingText('after');
    await h.driver.whenCaptured();
    const records = h.records();
    expect(records.filter((r) => r.kind === 'unsupported' && r.raw?.format === HISTORY_PAYLOAD_FORMAT)).toEqual([]);
    expect(texts(records)).toEqual(['before', 'after']);
  }, 60_000);

  it('inline history from our own device is bounded: millions of entries, or a 65 KB payload of 32 M, become unsupported with their bytes, quickly', async () => {
    const h = await harness();
    const huge = repeated([0x12, 0x00], 32_000_000);
    expect(huge.length).toBeLessThan(70_000);
    for (const [name, payload] of Object.entries({ ...bombs, '32 M empty chats (65 KB)': huge })) {
      const started = performance.now();
      await h.driver.socket().historyNotification({}, { payload });
      await h.driver.whenCaptured();
      expect(performance.now() - started, name).toBeLessThan(10_000);
      const sha = createHash('sha256').update(payload).digest('hex');
      expect(h.records().find((r) => r.kind === 'unsupported' && r.raw?.sha256 === sha), name).toMatchObject({ raw: { format: HISTORY_PAYLOAD_FORMAT, size: payload.length }, problem: { reason: 'history-payload-too-large' } });
      expect(Buffer.from(h.storage.blobs.get(sha) ?? []).equals(Buffer.from(payload)), name).toBe(true);
    }
    await h.driver.incomingText('capture goes on');
    await h.driver.whenCaptured();
    expect(texts(h.records())).toEqual(['capture goes on']);
  }, 60_000);

  it('the installed Baileys passes the message to shouldSyncHistoryMessage (our patch is applied)', async () => {
    const chats = await readFile(fileURLToPath(new URL('./Socket/chats.js', import.meta.resolve('@whiskeysockets/baileys'))), 'utf8');
    expect(chats).toContain('shouldSyncHistoryMessage(historyMsg, msg)');
  });

  it('scheduled: capture asks the phone by itself shortly after a gap is detected', async () => {
    const h = await harness({ reconcile: { afterGapMs: 50, timeoutMs: 30_000 } });
    await outage(h);
    await until(() => system(h.records(), 'gap-backfilled').length === 1, 30_000, 'the scheduled reconciliation');
    await h.driver.whenCaptured();
    expect(texts(h.records()).filter((t) => t?.startsWith('lost'))).toHaveLength(2);
  }, 60_000);
});
