import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveRecord, type ConnectorTransition, Recorder, createConnectorContext, openStateStore, type Sink, type StateStore } from '@offchannel/core';
import { MemoryStorage, createMemorySink, createRecordingLogger, type RecordingLogger } from '@offchannel/core/testing';
import { BufferJSON, DisconnectReason, initAuthCreds, proto, type WAMessage } from '@whiskeysockets/baileys';
import { afterEach, describe, expect, it } from 'vitest';
import { mapEnvelope } from './map-whatsapp.ts';
import { decodeRawEvidence, freezeMessage } from './raw-envelope.ts';
import { JIDS, ciphertextStub, encryptMedia, envelope, groupStub, mediaContent, secretEditContent, textContent } from './testing/fixtures.ts';
import { createWhatsAppTestDriver, seedOfflineLink, type WhatsAppTestDriver, type WhatsAppTestDriverOptions } from './testing/offline-driver.ts';
import { createOfflineSocketFactory } from './testing/offline-socket.ts';
import { rederiveWhatsAppArchive } from './testing/rederive.ts';
import { createSignalPeer } from './testing/signal-peer.ts';
import { createWhatsAppConnector } from './whatsapp-connector.ts';

interface Harness {
  readonly driver: WhatsAppTestDriver;
  readonly storage: MemoryStorage;
  readonly sink: Sink;
  readonly recorder: Recorder;
  readonly logger: RecordingLogger;
  readonly state: StateStore;
  /** Transitions the connector reported (the capture runner records each as a `system` record). */
  readonly transitions: ConnectorTransition[];
  records(): ArchiveRecord[];
  text(key: string): string | undefined;
  blob(sha256: string): Uint8Array | undefined;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function harness(sink?: Sink, storage = new MemoryStorage(), options: WhatsAppTestDriverOptions = {}): Promise<Harness> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-'));
  const state = await openStateStore({ dir, key: randomBytes(32) });
  const actualSink = sink ?? createMemorySink(storage);
  const recorder = new Recorder({ sink: actualSink, allowVolatileSink: true });
  const logger = createRecordingLogger();
  const driver = await createWhatsAppTestDriver({ account: 'desk', ...options });
  const controller = new AbortController();
  const transitions: ConnectorTransition[] = [];
  await driver.connector.start(createConnectorContext({ recorder, connector: driver.connector, state, logger, signal: controller.signal, onTransition: (t) => transitions.push(t) }));
  cleanups.push(async () => {
    await driver.close();
    await recorder.close();
    await rm(dir, { recursive: true, force: true });
  });
  const records = () =>
    (storage.streams.get('whatsapp:desk')?.records ?? []).map((bytes) => JSON.parse(Buffer.from(bytes).toString('utf8')) as ArchiveRecord);
  // Every archive these tests make must re-derive, record for record, from its evidence (runs first: cleanups go in reverse).
  cleanups.push(async () => {
    await driver.whenCaptured();
    const result = rederiveWhatsAppArchive(records(), (sha256) => storage.blobs.get(sha256));
    expect(result.mismatches).toEqual([]);
    expect(result.checked + result.withheld).toBe(records().length);
  });
  return {
    driver,
    storage,
    sink: actualSink,
    recorder,
    logger,
    state,
    transitions,
    records,
    text: (key) => records().find((r) => r.key === key)?.text,
    blob: (sha256) => storage.blobs.get(sha256),
  };
}

const find = (records: ArchiveRecord[], kind: string, predicate: (r: ArchiveRecord) => boolean = () => true) => records.filter((r) => r.kind === kind && predicate(r));

/** Polls `condition` every 10 ms; fails after `ms` (ample: the machine may be busy). */
async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('WhatsApp connector, offline through Baileys’ own receive path', () => {
  it('captures text, edits (plain and encrypted), reactions, media, revokes and delete-for-me; originals untouched; no text in logs', async () => {
    const h = await harness();
    const { driver } = h;
    const original = await driver.incomingText('Buy 100 ACME at 12.50'); // real Signal: pkmsg
    await driver.edit(original, 'Buy 50 ACME at 12.50'); // plaintext MESSAGE_EDIT, Signal msg
    await driver.edit(original, 'Buy 5 ACME at 12.50', { encrypted: true }); // secretEncryptedMessage
    await driver.react(original, '👍', { from: JIDS.me });
    const mine = await driver.outgoingText('Confirmed: 5 ACME');
    await driver.react(mine, '🙏');
    await driver.react(mine, '');
    const pdf = Buffer.from('%PDF-1.7 term sheet '.repeat(200));
    await driver.attachment({ kind: 'document', bytes: pdf, mime: 'application/pdf', name: 'terms.pdf', caption: 'signed copy' });
    await driver.attachment({ kind: 'image', bytes: randomBytes(4000), tamper: true });
    await driver.revoke(original);
    const inGroup = await driver.incomingText('group note from bob', { from: JIDS.bob, group: JIDS.group });
    await driver.revoke(inGroup, { by: JIDS.alice });
    driver.socket().deleteForMe([{ remoteJid: JIDS.alice, fromMe: false, id: original.id ?? null }]);
    await driver.socket().deliver(groupStub(proto.WebMessageInfo.StubType.GROUP_PARTICIPANT_ADD, [JSON.stringify({ id: JIDS.bobLid, phoneNumber: JIDS.bob })], { from: JIDS.alice, group: JIDS.group, id: 'STUB1', t: 1_790_000_000 }), 'append');
    await driver.groupMembers('promote', { members: [JIDS.bob] });
    await driver.whenCaptured();

    const records = h.records();
    const msg = find(records, 'message', (r) => r.native?.id === original.id)[0];
    expect(msg).toMatchObject({ text: 'Buy 100 ACME at 12.50', direction: 'inbound', sender: { id: JIDS.alice }, conversation: { type: 'direct' } });
    const edits = find(records, 'edit', (r) => r.target?.id === original.id);
    expect(edits.map((r) => r.text)).toEqual(['Buy 50 ACME at 12.50', 'Buy 5 ACME at 12.50']);
    expect(edits[1]?.meta).toMatchObject({ secretEncrypted: true });
    expect(find(records, 'reaction').map((r) => [r.reaction?.action, r.reaction?.value, r.target?.sender])).toEqual([
      ['add', '👍', JIDS.alice],
      ['add', '🙏', JIDS.me],
      ['remove', '*', JIDS.me],
    ]);
    const [doc, bad] = find(records, 'message', (r) => r.attachments !== undefined);
    expect(doc?.text).toBe('signed copy');
    expect(doc?.attachments).toMatchObject([{ status: 'unavailable', reason: 'download-pending', mime: 'application/pdf', name: 'terms.pdf', size: pdf.length }]);
    // each file follows its message as an attachment-only edit naming it
    const docFile = find(records, 'edit', (r) => r.target?.id === doc?.native?.id)[0];
    expect(docFile).toMatchObject({ key: doc?.key?.replace(/^message:/, 'attachment:'), target: doc?.native, meta: { followUp: 'attachment' }, attachments: [{ status: 'stored', mime: 'application/pdf', name: 'terms.pdf', size: pdf.length }] });
    expect(docFile?.text).toBeUndefined();
    const stored = docFile?.attachments?.[0] as { sha256: string };
    expect(Buffer.from(h.blob(stored.sha256) ?? []).equals(pdf)).toBe(true);
    expect(find(records, 'edit', (r) => r.target?.id === bad?.native?.id)[0]?.attachments).toMatchObject([{ status: 'unavailable', reason: 'enc-hash-mismatch' }]);
    const deletes = find(records, 'delete');
    expect(deletes.map((r) => [r.deletion, r.target?.id])).toEqual([
      [{ scope: 'everyone' }, original.id],
      [{ scope: 'everyone', admin: true }, inGroup.id],
      [{ scope: 'me' }, original.id],
    ]);
    expect(find(records, 'membership').map((r) => r.membership)).toMatchObject([
      { action: 'add', members: [{ id: JIDS.bobLid, aliases: [JIDS.bob] }] },
      { action: 'promote', members: [{ id: JIDS.bob, aliases: [JIDS.bobLid] }] }, // learned from the add stub
    ]);
    // the original is still there, byte for byte, after its edits and revoke
    expect(h.records().find((r) => r.key === msg?.key)?.text).toBe('Buy 100 ACME at 12.50');
    // raw evidence decodes to the message's own protobuf
    const raw = h.blob(msg?.raw?.sha256 ?? '');
    expect(proto.WebMessageInfo.decode(decodeRawEvidence(raw ?? new Uint8Array()).webMessageInfo).key?.id).toBe(original.id);
    // the group message came through real sender-key crypto; its key material never reached the archive
    const groupMessage = find(records, 'message', (r) => r.native?.id === inGroup.id)[0];
    expect(groupMessage).toMatchObject({ text: 'group note from bob', conversation: { id: JIDS.group, type: 'group' }, sender: { id: JIDS.bob } });
    const groupRaw = decodeRawEvidence(h.blob(groupMessage?.raw?.sha256 ?? '') ?? new Uint8Array());
    expect(groupRaw.sidecar.redacted).toEqual(['message.senderKeyDistributionMessage']);
    expect(proto.WebMessageInfo.decode(groupRaw.webMessageInfo).message?.senderKeyDistributionMessage).toBeNull();
    expect(find(records, 'unsupported')).toEqual([]);
    expect(driver.connector.status()).toMatchObject({ state: 'running', errors: 0 });
    const logs = h.logger.text();
    for (const secret of ['Buy 100 ACME', 'Buy 5 ACME', 'Confirmed', 'signed copy', 'group note', 'term sheet']) expect(logs).not.toContain(secret);
  });

  it('configures the socket for capture: offline presence, full history, archive-backed getMessage', async () => {
    const h = await harness();
    const config = h.driver.socket().config;
    expect(config.markOnlineOnConnect).toBe(false);
    expect(config.syncFullHistory).toBe(true);
    expect(config.emitOwnEvents).toBe(true);
    expect(config.shouldSyncHistoryMessage?.({ syncType: proto.Message.HistorySyncType.FULL })).toBe(true);
    const mine = await h.driver.outgoingText('own message for retries');
    await h.driver.whenCaptured();
    const content = await config.getMessage?.({ remoteJid: mine.remoteJid ?? null, id: mine.id ?? null, fromMe: true });
    expect(content?.extendedTextMessage?.text ?? content?.conversation).toBe('own message for retries');
    expect(await config.getMessage?.({ remoteJid: JIDS.alice, id: 'NOT-ARCHIVED', fromMe: true })).toBeUndefined();
  });

  it('archives the original when a revoke lands in the same catch-up buffer window (Baileys merges it away)', async () => {
    const h = await harness();
    const socket = h.driver.socket();
    const seenByListeners: (string | null | undefined)[] = [];
    socket.ev.on('messages.upsert', ({ messages }) => {
      for (const m of messages) seenByListeners.push(m.message?.conversation ?? m.message?.extendedTextMessage?.text ?? (m.message ? 'other' : null));
    });
    const original = envelope(await textContent('Sell 200 XYZ', JIDS.alice), { from: JIDS.alice, id: 'ORIG-B', t: 1_790_000_000 });
    const revoke = envelope(
      proto.Message.create({ protocolMessage: { key: { remoteJid: JIDS.me, fromMe: true, id: 'ORIG-B' }, type: proto.Message.ProtocolMessage.Type.REVOKE } }),
      { from: JIDS.alice, id: 'REV-B', t: 1_790_000_005 },
    );
    await socket.catchUp(async () => {
      await socket.deliver(original, 'append');
      await socket.deliver(revoke, 'append');
    });
    await h.driver.whenCaptured();
    // What a normal `ev.on('messages.upsert')` listener got: the original's content is gone.
    expect(seenByListeners).not.toContain('Sell 200 XYZ');
    // What the connector archived, from the bytes it took at the tap:
    expect(h.text(`message:${JIDS.alice}:${JIDS.alice}:ORIG-B`)).toBe('Sell 200 XYZ');
    expect(find(h.records(), 'delete')[0]).toMatchObject({ target: { id: 'ORIG-B' } });
  });

  it('records a corrupted ciphertext as undecryptable and links the later real message to it', async () => {
    const h = await harness();
    const { driver } = h;
    await driver.incomingText('session warm-up'); // establishes the Signal session
    const stanza = await (await import('./testing/signal-peer.ts')).createSignalPeer(JIDS.bob, { creds: driver.socket().config.auth.creds, keys: driver.socket().keys }, 77);
    const node = await stanza.stanza(await textContent('Bad MAC me', JIDS.bob), { id: 'CT-1', t: 1_790_000_100 });
    const enc = (node.content as { content: Uint8Array }[])[0]!;
    enc.content = Uint8Array.from(enc.content);
    enc.content[enc.content.length - 1]! ^= 0xff;
    const stub = await driver.socket().deliverStanza(node);
    expect(stub.messageStubType).toBe(proto.WebMessageInfo.StubType.CIPHERTEXT);
    // the sender retries: the same id arrives again, decryptable this time
    await driver.socket().deliver(envelope(await textContent('resent after retry', JIDS.bob), { from: JIDS.bob, id: 'CT-1', t: 1_790_000_101 }), 'notify');
    await driver.whenCaptured();
    const [undecryptable] = find(h.records(), 'undecryptable');
    expect(undecryptable).toMatchObject({ key: `undecryptable:${JIDS.bob}:${JIDS.bob}:CT-1`, problem: { reason: 'decrypt-failed' }, native: { id: 'CT-1' } });
    expect(h.blob(undecryptable?.raw?.sha256 ?? '')?.length).toBeGreaterThan(0);
    const resolved = find(h.records(), 'message', (r) => r.native?.id === 'CT-1')[0];
    expect(resolved).toMatchObject({ text: 'resent after retry', meta: { resolvesUndecryptableSeq: undecryptable?.seq } });
  });

  it('bad plaintext inside real Signal envelopes: truncated → undecryptable, unknown fields only → unsupported', async () => {
    const h = await harness();
    const peer = await createSignalPeer(JIDS.bob, { creds: h.driver.socket().config.auth.creds, keys: h.driver.socket().keys }, 91);
    const valid = proto.Message.encode(await textContent('truncated before the end of this text', JIDS.bob)).finish();
    await h.driver.socket().deliverStanza(await peer.rawStanza(valid.subarray(0, valid.length - 9), { id: 'BAD-1', t: 1_790_000_200 }));
    // a well-formed protobuf with only a field number WAProto does not know (what a newer client might send)
    const unknownField = Uint8Array.from([0xf8, 0xe0, 0x04, 0x01]); // field 9999, varint 1
    await h.driver.socket().deliverStanza(await peer.rawStanza(unknownField, { id: 'BAD-2', t: 1_790_000_201 }));
    await h.driver.whenCaptured();
    expect(find(h.records(), 'undecryptable')[0]).toMatchObject({ native: { id: 'BAD-1' }, problem: { reason: 'decrypt-failed' } });
    expect(find(h.records(), 'unsupported')[0]).toMatchObject({ native: { id: 'BAD-2' }, problem: { reason: 'unknown-message-type', detail: 'no content field' } });
    expect(h.driver.connector.status().state).toBe('running');
  });

  it('records history sync once: messages already archived are skipped before any media download', async () => {
    const h = await harness();
    const { driver } = h;
    const live = await driver.incomingText('live first', { encrypted: false, id: 'H-LIVE' });
    const media = await encryptMedia(randomBytes(2000), 'image');
    const photo = envelope(mediaContent('image', media, driver.media.put('h-photo', media.file)), { from: JIDS.alice, id: 'H-PHOTO', t: 1_790_000_001 });
    await driver.socket().deliver(structuredClone(photo), 'notify');
    await driver.whenCaptured();
    const downloads = driver.media.requests;
    const old = envelope(await textContent('older, only in history', JIDS.alice), { from: JIDS.alice, id: 'H-OLD', t: 1_780_000_000 });
    const again = envelope(await textContent('live first', JIDS.alice), { from: JIDS.alice, id: live.id ?? '', t: 1_790_000_000 });
    const sync = { syncType: proto.HistorySync.HistorySyncType.RECENT, conversations: [{ id: JIDS.alice, messages: [{ message: old }, { message: again }, { message: photo }] }], phoneNumberToLidMappings: [{ pnJid: JIDS.alice, lidJid: JIDS.aliceLid }] };
    driver.socket().history(sync);
    driver.socket().history(sync); // a repeated chunk
    await driver.whenCaptured();
    const messages = find(h.records(), 'message');
    expect(messages.map((r) => [r.native?.id, r.meta?.['origin']])).toEqual([
      ['H-LIVE', 'notify'],
      ['H-PHOTO', 'notify'],
      ['H-OLD', 'history'],
    ]);
    expect(driver.media.requests).toBe(downloads); // the archived photo was not fetched again
    expect(messages[2]?.meta).toMatchObject({ historySyncType: 'RECENT' });
    // the LID mapping from history became an alias…
    await driver.incomingText('after mapping', { encrypted: false });
    await driver.whenCaptured();
    expect(find(h.records(), 'message').at(-1)?.sender?.aliases).toEqual([JIDS.aliceLid]);
    // …and survives a restart (kept in the state store), as do message secrets for encrypted edits
    const secret = randomBytes(32);
    await driver.socket().deliver(envelope(await textContent('before restart', JIDS.alice, secret), { from: JIDS.alice, id: 'PERSIST-1', t: 1_790_000_300 }));
    await driver.whenCaptured();
    await driver.close();
    const restarted = await createWhatsAppTestDriver({ account: 'desk' });
    cleanups.push(() => restarted.close());
    await restarted.connector.start(createConnectorContext({ recorder: h.recorder, connector: restarted.connector, state: h.state, signal: new AbortController().signal }));
    await restarted.incomingText('after restart', { encrypted: false });
    const edit = secretEditContent({ text: 'edited after restart', target: { remoteJid: JIDS.me, fromMe: true, id: 'PERSIST-1' }, secret, originalSender: JIDS.alice, editor: JIDS.alice });
    await restarted.socket().deliver(envelope(edit, { from: JIDS.alice, id: 'PERSIST-2', t: 1_790_000_400 }));
    await restarted.whenCaptured();
    expect(find(h.records(), 'edit').at(-1)).toMatchObject({ text: 'edited after restart', target: { id: 'PERSIST-1' } });
    expect(find(h.records(), 'message').at(-1)).toMatchObject({ text: 'after restart', sender: { aliases: [JIDS.aliceLid] } });
  });

  it('reconnects with backoff, handles 515 / 401 / 440, and loses nothing across reconnects', async () => {
    const h = await harness();
    const { driver } = h;
    await driver.incomingText('before drop', { encrypted: false });
    const next = driver.sockets.next();
    driver.socket().close(DisconnectReason.connectionLost);
    expect(driver.connector.status()).toMatchObject({ state: 'reconnecting' });
    expect(driver.connector.status().detail).toContain('408');
    const second = await next;
    if (driver.connector.status().state !== 'running') {
      await new Promise<void>((resolve) => {
        second.ev.on('connection.update', (u) => {
          if (u.connection === 'open') resolve();
        });
      });
    }
    expect(driver.connector.status().state).toBe('running');
    expect(driver.sockets.sockets[0]?.ended).toBe(true);
    await driver.incomingText('after reconnect', { encrypted: false });

    const third = driver.sockets.next();
    second.close(DisconnectReason.restartRequired);
    expect(driver.connector.status().detail).toContain('515');
    await third;
    await driver.whenCaptured();
    expect(find(h.records(), 'message').map((r) => r.text)).toEqual(['before drop', 'after reconnect']);

    driver.socket().close(DisconnectReason.connectionReplaced);
    // The runtime parks a replaced session as logged-out (relink or stop the other process).
    expect(driver.connector.status()).toMatchObject({ state: 'logged-out' });
    expect(driver.connector.status().detail).toContain('440');
    await driver.whenCaptured();
    await until(() => h.transitions.some((t) => t.event === 'replaced'), 30_000, 'the replaced transition');
    expect(h.transitions.filter((t) => t.event !== 'connected').map((t) => [t.event, t.reason])).toEqual([
      ['reconnecting', expect.stringContaining('408')],
      ['reconnecting', '515 restart required'],
      ['replaced', '440'],
    ]);
  });

  it('retries when the socket cannot even be created, instead of crashing the process', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const state = await openStateStore({ dir, unencrypted: true });
    const offline = createOfflineSocketFactory();
    let calls = 0;
    const connector = createWhatsAppConnector({
      account: 'flaky',
      reconnect: { initialDelayMs: 5, maxDelayMs: 10 },
      socketFactory: (config) => {
        if (++calls <= 2) throw new TypeError('simulated socket construction failure');
        return offline.factory(config);
      },
    });
    const recorder = new Recorder({ sink: createMemorySink(), allowVolatileSink: true });
    const ctx = createConnectorContext({ recorder, connector, state, signal: new AbortController().signal });
    await seedOfflineLink(ctx.state);
    const made = offline.next();
    await connector.start(ctx);
    cleanups.push(() => connector.stop());
    expect(connector.status()).toMatchObject({ state: 'reconnecting' });
    expect(connector.status().detail).toContain('socket-create-failed TypeError');
    await made;
    expect(calls).toBe(3);
  });

  it('stops on logout (401) with a logged-out transition and status', async () => {
    const h = await harness();
    const count = h.driver.sockets.sockets.length;
    h.driver.socket().close(DisconnectReason.loggedOut);
    await h.driver.whenCaptured();
    expect(h.driver.connector.status().state).toBe('logged-out');
    await until(() => h.transitions.some((t) => t.event === 'logged-out'), 30_000, 'the logged-out transition');
    expect(h.transitions.at(-1)).toMatchObject({ event: 'logged-out', reason: '401' });
    expect(h.driver.sockets.sockets.length).toBe(count); // no reconnect
    expect(await h.state.scope('whatsapp:desk').scope('auth').get('creds')).toBeUndefined(); // dead keys cleared for relinking
  });

  it('keeps events until the archive takes them (capture rejected → retried, never dropped)', async () => {
    const storage = new MemoryStorage();
    const real = createMemorySink(storage);
    let failures = 2;
    const flaky: Sink = new Proxy(real, {
      get(target, property, receiver) {
        if (property === 'appendBatch') {
          return async (...args: unknown[]) => {
            if (failures-- > 0) throw Object.assign(new Error('disk unavailable'), { code: 'SINK_UNAVAILABLE' });
            return (target.appendBatch as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          };
        }
        return Reflect.get(target, property, receiver) as unknown;
      },
    });
    const h = await harness(flaky, storage);
    await h.driver.incomingText('survives a sink outage', { encrypted: false });
    await h.driver.whenCaptured();
    expect(find(h.records(), 'message').map((r) => r.text)).toEqual(['survives a sink outage']);
    expect(h.driver.connector.status().errors).toBeGreaterThan(0);
  });

  it('survives hostile events: unencodable objects become unsupported with JSON evidence, huge text goes to a blob', async () => {
    const h = await harness();
    const socket = h.driver.socket();
    const hostile = { key: { remoteJid: JIDS.alice, fromMe: false, id: 5 }, message: { conversation: 'typed wrong' } } as unknown as WAMessage;
    socket.ev.emit('messages.upsert', { messages: [hostile], type: 'notify' });
    socket.ev.emit('messages.upsert', { messages: [{ key: {} }], type: 'append' }); // key-less
    const huge = 'ACME '.repeat(40_000); // 200 kB of text
    await h.driver.incomingText(huge, { encrypted: false });
    await h.driver.incomingText('still capturing', { encrypted: false });
    await h.driver.whenCaptured();
    const records = h.records();
    const [unencodable, keyless] = find(records, 'unsupported');
    expect(unencodable).toMatchObject({ problem: { reason: 'unencodable-message' }, raw: { format: 'whatsapp.WAMessage.json' } });
    expect(Buffer.from(h.blob(unencodable?.raw?.sha256 ?? '') ?? []).toString()).toContain('typed wrong');
    expect(keyless).toMatchObject({ problem: { reason: 'missing-key' } });
    const big = find(records, 'message')[0];
    expect(big?.text).toBeUndefined();
    expect(Buffer.from(h.blob(big?.textBlob?.sha256 ?? '') ?? []).toString()).toBe(huge);
    expect(find(records, 'message')[1]?.text).toBe('still capturing');
    expect(h.driver.connector.status().state).toBe('running');
  });

  it('maps a CIPHERTEXT stub delivered through the socket path and refuses to start when not linked', async () => {
    const h = await harness();
    await h.driver.socket().deliver(ciphertextStub('No matching sessions found for message', { from: JIDS.alice, id: 'NS-1', t: 1_790_000_000 }));
    await h.driver.whenCaptured();
    expect(find(h.records(), 'undecryptable')[0]?.problem?.reason).toBe('no-session');

    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const state = await openStateStore({ dir, unencrypted: true });
    const connector = createWhatsAppConnector({ account: 'nobody' });
    const recorder = new Recorder({ sink: createMemorySink(), allowVolatileSink: true });
    await expect(connector.start(createConnectorContext({ recorder, connector, state, signal: new AbortController().signal }))).rejects.toMatchObject({ code: 'WHATSAPP_NOT_LINKED' });
    // The runtime marks a source that cannot open as failed; the capture runner parks it as not linked by the code.
    expect(connector.status()).toMatchObject({ state: 'failed', detail: 'could not start: WHATSAPP_NOT_LINKED' });
  });
});

describe('WhatsApp media: never holds up capture', () => {
  const t = 1_790_000_100;
  const slowPhoto = async (driver: WhatsAppTestDriver, id: string) => {
    const media = await encryptMedia(randomBytes(3000), 'image');
    const held = driver.media.hold(`held-${id}`);
    driver.media.put(`held-${id}`, media.file);
    await driver.socket().deliver(envelope(mediaContent('image', media, held.url), { from: JIDS.alice, id, t }), 'notify');
    await held.requested; // the download has started and hangs
    return held;
  };

  it('records the messages behind a media download that hangs at once; the file follows when the server answers', async () => {
    const h = await harness(undefined, undefined, { media: { timeoutMs: 60_000 } });
    const { driver } = h;
    const held = await slowPhoto(driver, 'SLOW');
    const later = 25;
    for (let i = 0; i < later; i++) await driver.incomingText(`after the photo ${i}`, { encrypted: i % 2 === 0, id: `AFTER-${i}` });
    // All recorded while the media request is still open: it holds up nothing.
    await until(() => find(h.records(), 'message').length === later + 1, 30_000, 'the messages behind the hanging download');
    const records = h.records();
    const photo = find(records, 'message', (r) => r.native?.id === 'SLOW')[0];
    expect(photo?.attachments).toMatchObject([{ status: 'unavailable', reason: 'download-pending', mime: 'image/jpeg', size: 3000 }]);
    expect(find(records, 'message').slice(1).map((r) => r.native?.id)).toEqual(Array.from({ length: later }, (_, i) => `AFTER-${i}`));
    expect(find(records, 'edit')).toEqual([]);
    held.release();
    await driver.whenCaptured();
    const file = find(h.records(), 'edit', (r) => r.target?.id === 'SLOW');
    expect(file).toMatchObject([{ key: photo?.key?.replace(/^message:/, 'attachment:'), target: photo?.native, attachments: [{ status: 'stored', mime: 'image/jpeg', size: 3000 }], meta: { followUp: 'attachment' } }]);
    expect(file[0]?.seq).toBeGreaterThan(photo?.seq ?? Infinity);
  }, 60_000);

  it('runs at most media.concurrency downloads at once', async () => {
    const h = await harness(undefined, undefined, { media: { timeoutMs: 60_000, concurrency: 1 } });
    const { driver } = h;
    const first = await slowPhoto(driver, 'FIRST');
    const media = await encryptMedia(randomBytes(3000), 'image');
    const second = driver.media.hold('held-SECOND');
    driver.media.put('held-SECOND', media.file);
    await driver.socket().deliver(envelope(mediaContent('image', media, second.url), { from: JIDS.alice, id: 'SECOND', t }), 'notify');
    await driver.incomingText('after both', { encrypted: false, id: 'AFTER-BOTH' });
    await until(() => find(h.records(), 'message').length === 3, 30_000, 'the three messages');
    expect(driver.media.requests).toBe(1); // SECOND waits for FIRST's download, no message does
    first.release();
    await second.requested;
    second.release();
    await driver.whenCaptured();
    expect(find(h.records(), 'edit').map((r) => [r.target?.id, r.attachments?.[0]?.status])).toEqual([['FIRST', 'stored'], ['SECOND', 'stored']]);
  }, 60_000);

  it('records the attachment unavailable (`timeout`) when the server never answers', async () => {
    const h = await harness(undefined, undefined, { media: { timeoutMs: 300 } });
    await slowPhoto(h.driver, 'NEVER');
    await h.driver.incomingText('meanwhile', { encrypted: false, id: 'MEANWHILE' });
    await h.driver.whenCaptured();
    expect(find(h.records(), 'message').map((r) => r.native?.id)).toEqual(['NEVER', 'MEANWHILE']);
    expect(find(h.records(), 'edit', (r) => r.target?.id === 'NEVER')).toMatchObject([{ attachments: [{ status: 'unavailable', reason: 'timeout', mime: 'image/jpeg', size: 3000 }] }]);
  }, 60_000);

  it('downloads the media of a replayed message whose file record is missing (process ended first), once', async () => {
    const h = await harness();
    const { driver } = h;
    const media = await encryptMedia(randomBytes(2000), 'image');
    const photo = envelope(mediaContent('image', media, driver.media.put('crash-photo', media.file)), { from: JIDS.alice, id: 'CRASH', t });
    // The message alone, as a process that ended after capturing it (before the download) left it.
    const mapped = mapEnvelope(freezeMessage(structuredClone(photo), 'notify'), { me: driver.me, aliases: () => [] });
    await h.recorder.writer({ channel: 'whatsapp', account: 'desk', source: driver.connector.source }).capture(mapped.input);
    const before = driver.media.requests;
    const sync = { syncType: proto.HistorySync.HistorySyncType.RECENT, conversations: [{ id: JIDS.alice, messages: [{ message: photo }] }] };
    driver.socket().history(sync);
    await driver.whenCaptured();
    driver.socket().history(sync); // a repeated chunk: now everything is archived, nothing is fetched
    await driver.whenCaptured();
    expect(find(h.records(), 'message').map((r) => r.native?.id)).toEqual(['CRASH']);
    expect(find(h.records(), 'edit', (r) => r.target?.id === 'CRASH')).toMatchObject([{ attachments: [{ status: 'stored', size: 2000 }] }]);
    expect(driver.media.requests).toBe(before + 1);
  }, 60_000);

  it('stop() cancels a hanging download at once and records it unavailable (`stopped`); nothing is lost', async () => {
    const h = await harness(undefined, undefined, { media: { timeoutMs: 60_000 } });
    await slowPhoto(h.driver, 'STOPPED');
    const started = performance.now();
    await h.driver.connector.stop();
    expect(performance.now() - started).toBeLessThan(30_000); // not the 60 s media timeout
    expect(find(h.records(), 'edit', (r) => r.target?.id === 'STOPPED')).toMatchObject([{ attachments: [{ status: 'unavailable', reason: 'stopped' }] }]);
    expect(h.driver.connector.status()).toMatchObject({ state: 'stopped' });
    expect(h.driver.connector.status().detail).toBeUndefined();
  }, 60_000);
});

describe('WhatsApp completeness signals, each recorded', () => {
  const DAY = 86_400_000;
  const T0 = Date.UTC(2026, 10, 21, 9, 0, 0);
  const textAt = async (text: string, id: string, t: number) => envelope(await textContent(text, JIDS.alice), { from: JIDS.alice, id, t });

  it('offline delivery: fewer messages than the server announced → a gap naming the window and how many; all announced → a system record; append is live traffic', async () => {
    let now = T0;
    const h = await harness(undefined, undefined, { clock: () => now, offlineQuietMs: 200 });
    now += 3_600_000; // an hour offline
    const socket = h.driver.socket();
    await socket.offlineDelivery([await textAt('while offline 1', 'OFF-1', 1_790_000_001), await textAt('while offline 2', 'OFF-2', 1_790_000_002)], { announced: 5 });
    now += 1000; // the next offline delivery starts before the quiet period ends: the first window is compared then
    await socket.offlineDelivery([await textAt('while offline 3', 'OFF-3', 1_790_000_003)]);
    // the end marker overtook two messages still being decrypted: they count, no gap
    now += 1000;
    await socket.offlineDelivery([await textAt('while offline 4', 'OFF-4', 1_790_000_004)], { announced: 3, late: [await textAt('late 5', 'OFF-5', 1_790_000_005), await textAt('late 6', 'OFF-6', 1_790_000_006)] });
    await h.driver.whenCaptured();
    await until(() => find(h.records(), 'system', (r) => r.system?.event === 'whatsapp-offline-complete').length === 2, 30_000, 'the second offline window settles');
    const records = h.records();
    // the offline messages came as `append` upserts: captured like live ones, none dropped
    expect(find(records, 'message').map((r) => [r.native?.id, r.meta?.['origin']])).toEqual(['OFF-1', 'OFF-2', 'OFF-3', 'OFF-4', 'OFF-5', 'OFF-6'].map((id) => [id, 'append']));
    const [gap] = find(records, 'gap');
    expect(gap).toMatchObject({ gap: { reason: 'offline-count-mismatch', missing: 3, from: new Date(T0).toISOString(), to: new Date(T0 + 3_601_000).toISOString() }, meta: { announced: 5, arrived: 2, recovery: 'history-sync-or-reconcile' } });
    expect(find(records, 'gap')).toHaveLength(1);
    expect(find(records, 'system', (r) => r.system?.event === 'whatsapp-offline-complete')).toMatchObject([{ system: { fields: { announced: '1', arrived: '1', total: '4' } } }, { system: { fields: { announced: '3', arrived: '3', total: '6' } } }]);
  }, 60_000);

  it('phone last seen: warnings at 7 and 12 days without a sign of the phone, once each; a message from the phone resets the count', async () => {
    let now = T0;
    const h = await harness(undefined, undefined, { clock: () => now });
    const warnings = () => find(h.records(), 'system', (r) => r.system?.event === 'whatsapp-phone-offline').map((r) => r.system?.fields);
    now = T0 + 6 * DAY + 23 * 3_600_000;
    h.driver.connector.checkCompleteness();
    await h.driver.whenCaptured();
    expect(warnings()).toEqual([]);
    now = T0 + 7 * DAY + 1;
    h.driver.connector.checkCompleteness();
    h.driver.connector.checkCompleteness();
    await h.driver.whenCaptured();
    expect(warnings()).toEqual([{ lastSeen: new Date(T0).toISOString(), days: '7', logoutAfterDays: '14' }]);
    now = T0 + 12 * DAY + 1;
    h.driver.connector.checkCompleteness();
    await h.driver.whenCaptured();
    expect(warnings().map((w) => w?.['days'])).toEqual(['7', '12']);
    expect(h.logger.text()).toContain('no sign of the phone');
    // the custodian sends from the phone: it is alive; the next warning is 7 days after that
    await h.driver.outgoingText('from the phone');
    now += 6 * DAY;
    h.driver.connector.checkCompleteness();
    await h.driver.whenCaptured();
    expect(warnings()).toHaveLength(2);
    now += DAY;
    h.driver.connector.checkCompleteness();
    await h.driver.whenCaptured();
    expect(warnings().at(-1)).toEqual({ lastSeen: new Date(T0 + 12 * DAY + 1).toISOString(), days: '7', logoutAfterDays: '14' });
  }, 60_000);

  it('history sync that does not arrive within the bound after linking → a gap; one that arrives → none', async () => {
    let now = T0;
    const h = await harness(undefined, undefined, { clock: () => now, historyBoundMs: 60_000 });
    now += 59_000;
    h.driver.connector.checkCompleteness();
    now += 2000;
    h.driver.connector.checkCompleteness();
    h.driver.connector.checkCompleteness();
    await h.driver.whenCaptured();
    expect(find(h.records(), 'gap')).toMatchObject([{ key: `history-missing:${new Date(T0).toISOString()}`, gap: { reason: 'history-sync-missing', to: new Date(T0).toISOString() }, meta: { boundMs: 60_000 } }]);

    let later = T0;
    const on = await harness(undefined, new MemoryStorage(), { clock: () => later, historyBoundMs: 60_000 });
    on.driver.socket().history({ syncType: proto.HistorySync.HistorySyncType.INITIAL_BOOTSTRAP, conversations: [{ id: JIDS.alice, messages: [{ message: await textAt('from history', 'HIST-1', 1_780_000_000) }] }] });
    later += 10 * 60_000;
    on.driver.connector.checkCompleteness();
    await on.driver.whenCaptured();
    expect(find(on.records(), 'gap')).toEqual([]);
    expect(find(on.records(), 'message').map((r) => r.meta?.['historySyncType'])).toEqual(['INITIAL_BOOTSTRAP']);
  }, 60_000);

  it('a device linked before these checks existed (history already processed) is not reported as missing history', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const state = await openStateStore({ dir, unencrypted: true });
    const creds = initAuthCreds();
    creds.me = { id: JIDS.me, lid: JIDS.meLid, name: 'Custodian' };
    creds.registered = true;
    creds.processedHistoryMessages = [{ key: { remoteJid: JIDS.me, id: 'HISTORY-NOTIFICATION-1', fromMe: true }, messageTimestamp: 1_780_000_000 }];
    await state.scope('whatsapp:old').scope('auth').set('creds', Buffer.from(JSON.stringify(creds, BufferJSON.replacer), 'utf8'));
    let now = T0;
    const driver = await createWhatsAppTestDriver({ account: 'old', clock: () => now, historyBoundMs: 60_000 });
    const storage = new MemoryStorage();
    const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true });
    cleanups.push(async () => {
      await driver.close();
      await recorder.close();
    });
    await driver.connector.start(createConnectorContext({ recorder, connector: driver.connector, state, signal: new AbortController().signal }));
    now += 3_600_000;
    driver.connector.checkCompleteness();
    await driver.whenCaptured();
    const records = (storage.streams.get('whatsapp:old')?.records ?? []).map((bytes) => JSON.parse(Buffer.from(bytes).toString('utf8')) as ArchiveRecord);
    expect(records.map((r) => r.kind)).toEqual(['system']); // the identity, no gap
  }, 60_000);
});
