/**
 * End to end against Signal's own server simulator: link, then receive real traffic encrypted
 * by the simulator's phones, and check what the archive holds and when the server was told.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveRecord, createConnectorContext, verifyArchive } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { type FaultPoint, type SignalConnector, createSignalConnector } from '@offchannel/signal';
import type { Device } from '@signalapp/mock-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockSignal, dataContent, editContent, linkToMock, reaction, sendSyncTranscript, startMockSignal, uploadAttachment } from './mock-signal.ts';
import { type TestArchive, openTestArchive, rederiveAll } from './test-archive.ts';

const STREAM = 'signal:alice';
let mock: MockSignal;
let workDir: string;
/** Records re-derived per test archive (see `rederiveAll`). */
const rederived: number[] = [];

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'offchannel-signal-mock-'));
  mock = await startMockSignal(workDir);
});

afterAll(async () => {
  // The re-derivation ran over real traffic, not over empty archives.
  expect(rederived.reduce((a, b) => a + b, 0)).toBeGreaterThan(10);
  await mock.close();
  await rm(workDir, { recursive: true, force: true });
});

interface Running {
  readonly archive: TestArchive;
  readonly device: Device;
  readonly logger: ReturnType<typeof createRecordingLogger>;
  start(options?: { trustRoots?: readonly string[]; fault?: (point: FaultPoint, id: string) => void; archiveFailures?: { remaining: number } }): Promise<SignalConnector>;
  stopAll(): Promise<void>;
}

/** A fresh archive and state, a newly linked device, and a way to start connectors on them. */
async function linkedSetup(): Promise<Running> {
  const logger = createRecordingLogger();
  const archive = await openTestArchive(logger);
  const device = await linkToMock(mock, archive.state.scope(STREAM));
  const started: { connector: SignalConnector; controller: AbortController }[] = [];
  return {
    archive,
    device,
    logger,
    async start(options = {}) {
      const connector = createSignalConnector({
        account: 'alice',
        server: mock.serverConfig,
        trustRoots: options.trustRoots ?? mock.trustRoots,
        reconnect: { minMs: 100, maxMs: 1000 },
        ...(options.fault === undefined ? {} : { fault: options.fault }),
      });
      const controller = new AbortController();
      const ctx = createConnectorContext({ recorder: archive.recorder, connector, state: archive.state, logger, signal: controller.signal });
      const failures = options.archiveFailures;
      await connector.start({
        ...ctx,
        capture: async (input) => {
          // Fails the captures of envelopes (not the device's own linked-device record at start).
          if (failures !== undefined && failures.remaining > 0 && input.kind !== 'system') {
            failures.remaining--;
            throw new Error('archive unavailable');
          }
          return ctx.capture(input);
        },
      });
      started.push({ connector, controller });
      return connector;
    },
    async stopAll() {
      for (const { connector, controller } of started) {
        controller.abort();
        await connector.stop();
      }
      // Every record this test archived must re-derive from its raw bytes (issue: pure mappings).
      if (started.length > 0) rederived.push(await rederiveAll(archive, STREAM));
      await archive.close();
    },
  };
}

const byKey = (records: readonly ArchiveRecord[], key: string) => records.filter((r) => r.key === key);

describe('Signal connector against @signalapp/mock-server', () => {
  it('links, records sealed, unsealed, sync, edit, delete, reaction and attachment traffic, acknowledging only recorded envelopes', async () => {
    const run = await linkedSetup();
    try {
      const connector = await run.start();
      expect(connector.status().state).toBe('running');
      const contact = mock.contact.device.aci;
      const self = mock.employee.device.aci;
      const t0 = Date.now();
      const texts = ['Can you buy 100 XYZ?', 'second, unsealed', 'Done, filled at 12.34', 'Can you buy 200 XYZ?', 'confirmation attached'] as const;

      // Each send resolves only when the connector answered 200: the record must exist by then.
      await mock.contact.sendRaw(run.device, dataContent({ body: texts[0], timestamp: BigInt(t0) }), { timestamp: t0, sealed: true });
      expect(byKey(await run.archive.records(STREAM), `message:${contact}:${t0}`)).toHaveLength(1);

      await mock.contact.sendRaw(run.device, dataContent({ body: texts[1], timestamp: BigInt(t0 + 1) }), { timestamp: t0 + 1 });
      expect(byKey(await run.archive.records(STREAM), `message:${contact}:${t0 + 1}`)).toHaveLength(1);

      await sendSyncTranscript(mock, run.device, texts[2], t0 + 2);
      expect(byKey(await run.archive.records(STREAM), `message:${self}:${t0 + 2}`)).toHaveLength(1);

      await mock.contact.sendRaw(run.device, editContent(t0, { body: texts[3], timestamp: BigInt(t0 + 3) }), { timestamp: t0 + 3, sealed: true });
      await mock.contact.sendRaw(run.device, dataContent({ reaction: reaction('👍', self, t0 + 2), timestamp: BigInt(t0 + 4) }), { timestamp: t0 + 4, sealed: true });
      await mock.contact.sendRaw(run.device, dataContent({ delete: { targetSentTimestamp: BigInt(t0 + 1) }, timestamp: BigInt(t0 + 5) }), { timestamp: t0 + 5 });

      const pdf = randomBytes(700);
      const good = await uploadAttachment(mock, pdf, { contentType: 'application/pdf', fileName: 'confirm.pdf' });
      const bad = await uploadAttachment(mock, randomBytes(300), { contentType: 'image/png', tamper: true });
      await mock.contact.sendRaw(run.device, dataContent({ body: texts[4], attachments: [good, bad], timestamp: BigInt(t0 + 6) }), { timestamp: t0 + 6, sealed: true });

      const records = await run.archive.records(STREAM);
      const incoming = byKey(records, `message:${contact}:${t0}`)[0];
      expect(incoming).toMatchObject({
        kind: 'message',
        direction: 'inbound',
        sender: { id: contact },
        conversation: { id: contact, type: 'direct' },
        native: { id: String(t0), author: contact },
        text: texts[0],
        meta: { 'signal.sealedSender': true },
      });
      expect(byKey(records, `message:${contact}:${t0 + 1}`)[0]).toMatchObject({ text: texts[1], meta: { 'signal.sealedSender': false } });
      expect(byKey(records, `message:${self}:${t0 + 2}`)[0]).toMatchObject({
        direction: 'outbound',
        sender: { id: self },
        conversation: { id: contact, type: 'direct' },
        text: texts[2],
        meta: { 'signal.syncTranscript': true },
      });
      expect(byKey(records, `edit:${contact}:${t0}:${t0 + 3}`)[0]).toMatchObject({ kind: 'edit', target: { id: String(t0), author: contact }, text: texts[3] });
      expect(byKey(records, `reaction:${contact}:${t0 + 4}`)[0]).toMatchObject({ kind: 'reaction', target: { id: String(t0 + 2), author: self }, reaction: { value: '👍', action: 'add' } });
      expect(byKey(records, `delete:${contact}:${contact}:${t0 + 1}`)[0]).toMatchObject({ kind: 'delete', target: { id: String(t0 + 1), author: contact }, deletion: { scope: 'everyone' } });
      // The original of the edit and of the delete are untouched.
      expect(byKey(records, `message:${contact}:${t0 + 1}`)[0]?.text).toBe(texts[1]);

      const withFiles = byKey(records, `message:${contact}:${t0 + 6}`)[0];
      const [stored, unavailable] = withFiles?.attachments ?? [];
      expect(stored).toMatchObject({ status: 'stored', mime: 'application/pdf', name: 'confirm.pdf', size: 700 });
      expect(Buffer.from((await run.archive.sink.getBlob((stored as { sha256: string }).sha256)) ?? [])).toEqual(Buffer.from(pdf));
      expect(unavailable).toMatchObject({ status: 'unavailable', reason: 'digest-mismatch', mime: 'image/png', size: 300 });

      const report = await verifyArchive(run.archive.sink);
      expect(report.failures).toEqual([]);
      expect(report.ok).toBe(true);
      // Nothing the people wrote reached the logs.
      for (const text of texts) expect(run.logger.text()).not.toContain(text);
      expect(connector.signalStatus()).toMatchObject({ state: 'running', envelopesAcknowledged: 7, errors: 0 });
    } finally {
      await run.stopAll();
    }
  });

  for (const point of ['after-decrypt', 'after-capture', 'before-ack'] as const) {
    it(`a crash ${point.replace('-', ' ')} leaves the envelope on the server; after restart it is recorded exactly once`, async () => {
      const run = await linkedSetup();
      try {
        let crashed!: () => void;
        const crash = new Promise<void>((resolve) => (crashed = resolve));
        let armed = true;
        const first = await run.start({
          fault: (at) => {
            if (at === point && armed) {
              armed = false;
              crashed();
              throw new Error('injected crash');
            }
          },
        });
        const t = Date.now();
        let delivered = false;
        const sending = mock.contact.sendRaw(run.device, dataContent({ body: 'crash test', timestamp: BigInt(t) }), { timestamp: t, sealed: true }).then(() => {
          delivered = true;
        });
        await crash;
        await first.stop();
        expect(delivered).toBe(false); // the server still holds it: never acknowledged
        const key = `message:${mock.contact.device.aci}:${t}`;
        expect(byKey(await run.archive.records(STREAM), key)).toHaveLength(point === 'after-decrypt' ? 0 : 1);

        await run.start(); // restart on the same state and archive
        await sending;
        const records = await run.archive.records(STREAM);
        expect(byKey(records, key)).toHaveLength(1);
        expect(records.filter((r) => r.kind === 'undecryptable')).toEqual([]);
        expect((await verifyArchive(run.archive.sink)).ok).toBe(true);
      } finally {
        await run.stopAll();
      }
    });
  }

  it('when the archive fails it does not acknowledge, retries with backoff, and records the envelope once', async () => {
    const run = await linkedSetup();
    try {
      const archiveFailures = { remaining: 1 };
      const connector = await run.start({ archiveFailures });
      const t = Date.now();
      await mock.contact.sendRaw(run.device, dataContent({ body: 'archive hiccup', timestamp: BigInt(t) }), { timestamp: t, sealed: true });
      // Resolved only once acknowledged, which happened after the runtime retried the capture.
      expect(archiveFailures.remaining).toBe(0);
      expect(byKey(await run.archive.records(STREAM), `message:${mock.contact.device.aci}:${t}`)).toHaveLength(1);
      expect(connector.signalStatus()).toMatchObject({ errors: 1, envelopesAcknowledged: 1, state: 'running' });
    } finally {
      await run.stopAll();
    }
  });

  it('records a v2 group message sent with sender keys (multi-recipient sealed sender) in the group conversation', async () => {
    const run = await linkedSetup();
    try {
      await run.start();
      const group = await mock.contact.createGroup({ title: 'Rates desk', members: [mock.contact, mock.employee] });
      // The simulator encrypts under one lock and hands the distribution message to the server
      // before it starts encrypting the group message, so the connector sees them in order.
      const distributionId = await mock.contact.sendSenderKey(run.device, { timestamp: Date.now() });
      const t = Date.now() + 1;
      await mock.contact.sendText(run.device, 'group hello', { timestamp: t, sealed: true, distributionId, group });
      const records = await run.archive.records(STREAM);
      const message = byKey(records, `message:${mock.contact.device.aci}:${t}`)[0];
      expect(message).toMatchObject({ kind: 'message', text: 'group hello', conversation: { type: 'group', id: `group:${group.id}` }, meta: { 'signal.sealedSender': true } });
    } finally {
      await run.stopAll();
    }
  });

  it('rotates its signed prekeys on the server; a new contact starts a session on the new keys', async () => {
    const run = await linkedSetup();
    try {
      const state = run.archive.state.scope(STREAM);
      const account = await state.getJson<Record<string, unknown>>('account');
      await state.setJson('account', { ...account, signedPreKeyRotatedAt: new Date(Date.now() - 3 * 86_400_000).toISOString() });
      await run.start(); // the backlog is empty at once: prekey maintenance runs and rotates
      let key = await run.device.popSingleUseKey();
      for (let i = 0; i < 250 && key.signedPreKey.keyId !== 2; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        key = await run.device.popSingleUseKey();
      }
      expect(key.signedPreKey.keyId).toBe(2);
      const newcomer = await mock.server.createPrimaryDevice({ profileName: 'Newcomer' });
      await newcomer.addSingleUseKey(run.device, key);
      const t = Date.now();
      await newcomer.sendRaw(run.device, dataContent({ body: 'hello after rotation', timestamp: BigInt(t) }), { timestamp: t, sealed: true });
      expect(byKey(await run.archive.records(STREAM), `message:${newcomer.device.aci}:${t}`)[0]?.text).toBe('hello after rotation');
    } finally {
      await run.stopAll();
    }
  });

  it('records a sealed message whose certificate does not chain to the configured trust root as undecryptable, and keeps going', async () => {
    const run = await linkedSetup();
    try {
      const wrongRoot = 'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF'; // production's, not the simulator's
      await run.start({ trustRoots: [wrongRoot] });
      const t = Date.now();
      await mock.contact.sendRaw(run.device, dataContent({ body: 'sealed, bad root', timestamp: BigInt(t) }), { timestamp: t, sealed: true });
      await mock.contact.sendRaw(run.device, dataContent({ body: 'unsealed after', timestamp: BigInt(t + 1) }), { timestamp: t + 1 });
      const records = await run.archive.records(STREAM);
      const bad = records.find((r) => r.kind === 'undecryptable');
      expect(bad).toMatchObject({ problem: { reason: 'sealed-sender-certificate-invalid' }, raw: { format: 'signal.Envelope.proto' } });
      expect(byKey(records, `message:${mock.contact.device.aci}:${t + 1}`)[0]?.text).toBe('unsealed after');
    } finally {
      await run.stopAll();
    }
  });
});
