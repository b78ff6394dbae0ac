import { randomBytes, randomUUID } from 'node:crypto';
import { type ArchiveRecord, type CaptureInput, Recorder, createConnectorContext, decodeRecord } from '@offchannel/core';
import { createMemorySink, createRecordingLogger } from '@offchannel/core/testing';
import {
  ContentHint,
  IdentityKeyPair,
  KEMKeyPair,
  KyberPreKeyRecord,
  PreKeyBundle,
  PrivateKey,
  ProtocolAddress,
  type PublicKey,
  SenderKeyDistributionMessage,
  SignedPreKeyRecord,
  UnidentifiedSenderMessageContent,
  groupEncrypt,
  processPreKeyBundle,
  sealedSenderEncrypt,
  signalEncrypt,
} from '@signalapp/libsignal-client';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  type Party,
  type Receiver,
  type TrustRoot,
  encryptTo,
  envelopeBytes,
  makeParty,
  makeReceiver,
  makeTrustRoot,
  sealedTo,
  startSession,
  tempStateStore,
  textContent,
} from './__fixtures__/signal-parties.ts';
import type { AttachmentFetcher } from './attachments.ts';
import { EnvelopeProcessor, MAX_ENVELOPE_BYTES } from './envelope-processor.ts';
import { groupIdFromMasterKey } from './group-id.ts';
import { addPadding } from './proto/padding.ts';
import { ProtoWriter } from './proto/wire.ts';
import { StateSenderKeyStore } from './protocol-stores.ts';
import { EnvelopeType } from './proto/signal-content.ts';

const noDownloads: AttachmentFetcher = async () => {
  throw new Error('no attachments expected');
};

interface Harness {
  receiver: Receiver;
  contact: Party;
  trust: TrustRoot;
  processor: EnvelopeProcessor;
  records(): Promise<ArchiveRecord[]>;
  logger: ReturnType<typeof createRecordingLogger>;
  /** Makes the next captures fail as if the archive were down. */
  archiveDown: { value: boolean };
}

async function harness(options: { trustRoots?: PublicKey[] } = {}): Promise<Harness> {
  const receiver = await makeReceiver();
  const contact = await makeParty(1);
  const trust = makeTrustRoot();
  const sink = createMemorySink();
  const recorder = new Recorder({ sink, allowVolatileSink: true });
  const logger = createRecordingLogger();
  const ctx = createConnectorContext({
    recorder,
    connector: { channel: 'signal', account: 'alice', source: { package: '@offchannel/signal', version: '0.0.0-test' } },
    state: await tempStateStore(),
    logger,
    signal: new AbortController().signal,
  });
  const archiveDown = { value: false };
  const processor = new EnvelopeProcessor({
    state: receiver.state,
    decrypt: {
      selfAci: receiver.aci,
      selfPni: receiver.pni,
      deviceId: receiver.deviceId,
      aci: receiver.stores,
      pni: receiver.pniStores,
      senderKeys: receiver.senderKeys,
      trustRoots: options.trustRoots ?? [trust.root.getPublicKey()],
    },
    capture: async (input: CaptureInput) => {
      if (archiveDown.value) throw new Error('archive unavailable');
      return ctx.capture(input);
    },
    logger,
    fetcher: noDownloads,
    cdnUrls: {},
    maxAttachmentBytes: 1024,
    identityChanges: receiver.identityChanges,
  });
  return {
    receiver,
    contact,
    trust,
    processor,
    logger,
    archiveDown,
    async records() {
      const out: ArchiveRecord[] = [];
      for await (const stored of sink.read('signal:alice')) out.push(decodeRecord(stored.bytes).record);
      return out;
    },
  };
}

async function prekeyEnvelope(h: Harness, text: string, ts: number, guid = randomUUID()): Promise<Uint8Array> {
  const { type, body } = await encryptTo(h.contact, h.receiver, textContent(text, ts));
  return envelopeBytes({ type, content: body, source: h.contact, serverGuid: guid, clientTimestamp: ts });
}

describe('EnvelopeProcessor with real libsignal', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
    await startSession(h.contact, h.receiver, 10);
  });

  it('decrypts PreKey, Whisper (after a reply) and sealed-sender envelopes into message records', async () => {
    const t = 1_700_000_000_000;
    expect(await h.processor.process(await prekeyEnvelope(h, 'first', t))).toMatchObject({ status: 'recorded', records: 1 });
    const sealed = await sealedTo(h.contact, h.receiver, textContent('sealed one', t + 1), h.trust);
    await h.processor.process(envelopeBytes({ type: EnvelopeType.SealedSender, content: sealed, serverTimestamp: t + 5 }));
    const binary = await encryptTo(h.contact, h.receiver, textContent('binary ids', t + 2));
    await h.processor.process(envelopeBytes({ type: binary.type, content: binary.body, source: h.contact, binaryIds: true }));
    const records = await h.records();
    expect(records.map((r) => [r.kind, r.text, r.sender?.id, r.meta?.['signal.sealedSender']])).toEqual([
      ['message', 'first', h.contact.aci, false],
      ['message', 'sealed one', h.contact.aci, true],
      ['message', 'binary ids', h.contact.aci, false],
    ]);
    expect(h.logger.text()).not.toContain('sealed one');
  });

  it('records corrupted ciphertext as undecryptable with the envelope bytes, and the next envelope still decrypts', async () => {
    const good = await encryptTo(h.contact, h.receiver, textContent('will be corrupted', 1));
    const corrupted = Uint8Array.from(good.body);
    corrupted[corrupted.length - 5] = (corrupted[corrupted.length - 5] ?? 0) ^ 0xff;
    const bytes = envelopeBytes({ type: good.type, content: corrupted, source: h.contact });
    await h.processor.process(bytes);
    await h.processor.process(await prekeyEnvelope(h, 'after the bad one', 2));
    const [bad, next] = await h.records();
    expect(bad).toMatchObject({ kind: 'undecryptable', problem: { reason: 'decrypt-failed' }, raw: { format: 'signal.Envelope.proto', size: bytes.length } });
    expect(next).toMatchObject({ kind: 'message', text: 'after the bad one' });
  });

  it('a replay under a new server guid is undecryptable (duplicate); a redelivery under the same guid is acknowledged without a new record', async () => {
    const guid = randomUUID();
    const { type, body } = await encryptTo(h.contact, h.receiver, textContent('once', 3));
    const first = envelopeBytes({ type, content: body, source: h.contact, serverGuid: guid });
    await h.processor.process(first);
    expect(await h.processor.process(first)).toEqual({ status: 'already-processed' });
    await h.processor.process(envelopeBytes({ type, content: body, source: h.contact, serverGuid: randomUUID() }));
    const records = await h.records();
    expect(records.map((r) => [r.kind, r.problem?.reason])).toEqual([
      ['message', undefined],
      ['undecryptable', 'duplicate'],
    ]);
  });

  it('records malformed Content as unsupported with the decrypted bytes, and bad padding likewise', async () => {
    const garbage = Uint8Array.from([0x0a, 0xff, 0x01]); // field 1 claims 255 bytes, 1 remains
    const enc = await encryptTo(h.contact, h.receiver, garbage);
    await h.processor.process(envelopeBytes({ type: enc.type, content: enc.body, source: h.contact }));
    const records = await h.records();
    expect(records[0]).toMatchObject({ kind: 'unsupported', problem: { reason: 'malformed-content' }, raw: { format: 'signal.Content.padded' } });
  });

  it('records truncated, hostile and oversized envelopes as undecryptable with their bytes', async () => {
    const valid = await prekeyEnvelope(h, 'x', 4);
    await h.processor.process(valid.subarray(0, Math.floor(valid.length / 2)));
    await h.processor.process(Uint8Array.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
    await h.processor.process(new Uint8Array(MAX_ENVELOPE_BYTES + 1));
    await h.processor.process(envelopeBytes({ type: 42, content: Uint8Array.of(1, 2, 3), source: h.contact }));
    const reasons = (await h.records()).map((r) => [r.kind, r.problem?.reason]);
    expect(reasons).toEqual([
      ['undecryptable', 'malformed-envelope'],
      ['undecryptable', 'malformed-envelope'],
      ['undecryptable', 'envelope-too-large'],
      ['undecryptable', 'unknown-envelope-type'],
    ]);
  });

  it('rejects a sealed sender certificate from another trust root or expired at the server timestamp', async () => {
    const other = makeTrustRoot();
    const sealed = await sealedTo(h.contact, h.receiver, textContent('forged root', 5), other);
    await h.processor.process(envelopeBytes({ type: EnvelopeType.SealedSender, content: sealed }));
    const expired = await sealedTo(h.contact, h.receiver, textContent('late', 6), h.trust);
    await h.processor.process(envelopeBytes({ type: EnvelopeType.SealedSender, content: expired, serverTimestamp: Date.now() + 2 * 86_400_000 }));
    // No server timestamp: validated at the delivery time (or now), never at zero.
    const stale = await sealedTo(h.contact, h.receiver, textContent('expired yesterday', 6), h.trust, Date.now() - 86_400_000);
    await h.processor.process(envelopeBytes({ type: EnvelopeType.SealedSender, content: stale, serverTimestamp: 0 }));
    const records = await h.records();
    expect(records.map((r) => r.problem?.reason)).toEqual(['sealed-sender-certificate-invalid', 'sealed-sender-certificate-invalid', 'sealed-sender-certificate-invalid']);
    // Rejection consumed no state: the same sender's next message still decrypts.
    await h.processor.process(await prekeyEnvelope(h, 'still fine', 7));
    expect((await h.records()).at(-1)).toMatchObject({ kind: 'message', text: 'still fine' });
  });

  it('records a changed identity key as a system record and still records the message', async () => {
    await h.processor.process(await prekeyEnvelope(h, 'before reinstall', 8));
    const reinstalled = await makeParty(1, IdentityKeyPair.generate(), h.contact.aci);
    await startSession(reinstalled, h.receiver, 11);
    const { type, body } = await encryptTo(reinstalled, h.receiver, textContent('after reinstall', 9));
    await h.processor.process(envelopeBytes({ type, content: body, source: reinstalled }));
    const records = await h.records();
    expect(records.map((r) => r.kind)).toEqual(['message', 'system', 'message']);
    expect(records[1]).toMatchObject({ system: { event: 'identity-key-changed', fields: { serviceId: h.contact.aci } } });
    expect(records[2]?.text).toBe('after reinstall');
  });

  it('commits nothing when the archive fails, so the redelivered envelope decrypts and is recorded once', async () => {
    const bytes = await prekeyEnvelope(h, 'archive was down', 10);
    h.archiveDown.value = true;
    await expect(h.processor.process(bytes)).rejects.toThrow('archive unavailable');
    h.archiveDown.value = false;
    expect(await h.processor.process(bytes)).toMatchObject({ status: 'recorded', records: 1 });
    expect((await h.records()).map((r) => r.text)).toEqual(['archive was down']);
  });

  it('decrypts sender-key group messages after the sender key was distributed, into the group conversation', async () => {
    const distributionId = randomUUID();
    const senderKeys = new StateSenderKeyStore(h.contact.state);
    const skdm = await SenderKeyDistributionMessage.create(h.contact.address, distributionId, senderKeys);
    await h.contact.state.commit();
    const distribution = new ProtoWriter().bytes(7, skdm.serialize()).finish();
    const first = await encryptTo(h.contact, h.receiver, distribution);
    expect(await h.processor.process(envelopeBytes({ type: first.type, content: first.body, source: h.contact }))).toEqual({ status: 'recorded', records: 0, duplicates: 0 });

    const masterKey = randomBytes(32);
    const groupMessage = new ProtoWriter().message(1, new ProtoWriter().string(1, 'to the whole desk').uint(7, 12).message(15, new ProtoWriter().bytes(1, masterKey).uint(2, 1))).finish();
    const ciphertext = await groupEncrypt(h.contact.address, distributionId, senderKeys, addPadding(groupMessage));
    const usmc = UnidentifiedSenderMessageContent.new(ciphertext, h.trust.certificateFor(h.contact), ContentHint.Resendable, randomBytes(32));
    const sealed = await sealedSenderEncrypt(usmc, h.receiver.address, h.contact.stores.identities);
    await h.processor.process(envelopeBytes({ type: EnvelopeType.SealedSender, content: sealed }));
    const [record] = await h.records();
    expect(record).toMatchObject({ kind: 'message', text: 'to the whole desk', sender: { id: h.contact.aci }, conversation: { type: 'group', id: `group:${groupIdFromMasterKey(masterKey)}` } });
  });

  it('decrypts first contact addressed to the PNI with the PNI identity and prekeys', async () => {
    const pni = h.receiver.pniStores;
    const identity = h.receiver.pniIdentity;
    const spk = PrivateKey.generate();
    const spkSig = identity.privateKey.sign(spk.getPublicKey().serialize());
    await pni.signedPreKeys.saveSignedPreKey(1, SignedPreKeyRecord.new(1, Date.now(), spk.getPublicKey(), spk, spkSig));
    const kem = KEMKeyPair.generate();
    const kemSig = identity.privateKey.sign(kem.getPublicKey().serialize());
    pni.kyberPreKeys.saveLastResortKyberPreKey(1, KyberPreKeyRecord.new(1, Date.now(), kem, kemSig));
    await h.receiver.state.commit();
    const stranger = await makeParty(1);
    const pniAddress = ProtocolAddress.new(h.receiver.pni, h.receiver.deviceId);
    const bundle = PreKeyBundle.new(h.receiver.registrationId, h.receiver.deviceId, null, null, 1, spk.getPublicKey(), spkSig, identity.publicKey, 1, kem.getPublicKey(), kemSig);
    await processPreKeyBundle(bundle, pniAddress, stranger.address, stranger.stores.sessions, stranger.stores.identities);
    const message = await signalEncrypt(addPadding(textContent('found you by number', 13)), pniAddress, stranger.address, stranger.stores.sessions, stranger.stores.identities);
    await stranger.state.commit();
    const bytes = new ProtoWriter()
      .uint(1, EnvelopeType.PreKey)
      .string(11, stranger.aci)
      .uint(7, 1)
      .string(13, h.receiver.pni)
      .bytes(8, message.serialize())
      .string(9, randomUUID())
      .finish();
    await h.processor.process(bytes);
    expect((await h.records())[0]).toMatchObject({ kind: 'message', text: 'found you by number', meta: { 'signal.toPni': true } });
  });

  it('a server delivery receipt (no content) becomes a system record', async () => {
    await h.processor.process(envelopeBytes({ type: EnvelopeType.ServerDeliveryReceipt, content: new Uint8Array(0), source: h.contact, clientTimestamp: 77 }));
    expect((await h.records())[0]).toMatchObject({ kind: 'system', system: { event: 'server-delivery-receipt', fields: { targetTimestamp: '77' } } });
  });
});
