/**
 * Test fixtures built with real libsignal: a "connector" device (the employee's ACI, device 2,
 * with signed, Kyber last-resort and one-time prekeys) and contacts that encrypt to it —
 * PreKey, Whisper and sealed sender with a test trust root — wrapped in real Envelope bytes.
 * State lives in real state stores on disk.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type StateStore, openStateStore } from '@offchannel/core';
import {
  IdentityKeyPair,
  KEMKeyPair,
  KyberPreKeyRecord,
  PreKeyBundle,
  PreKeyRecord,
  PrivateKey,
  ProtocolAddress,
  type PublicKey,
  SenderCertificate,
  ServerCertificate,
  SignedPreKeyRecord,
  processPreKeyBundle,
  sealedSenderEncryptMessage,
  signalEncrypt,
} from '@signalapp/libsignal-client';
import { addPadding } from '../proto/padding.ts';
import { serviceIdToBinary } from '../proto/service-id.ts';
import { ProtoWriter } from '../proto/wire.ts';
import { type ProtocolStores, StateSenderKeyStore, protocolStores } from '../protocol-stores.ts';
import { StagedState } from '../staged-state.ts';

export async function tempStateStore(): Promise<StateStore> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-signal-unit-'));
  return openStateStore({ dir, key: randomBytes(32) });
}

export interface Party {
  readonly aci: string;
  readonly deviceId: number;
  readonly address: ProtocolAddress;
  readonly identity: IdentityKeyPair;
  readonly registrationId: number;
  readonly state: StagedState;
  readonly stores: ProtocolStores;
}

export async function makeParty(deviceId = 1, identity = IdentityKeyPair.generate(), aci: string = randomUUID(), base?: StateStore): Promise<Party> {
  const state = new StagedState(base ?? (await tempStateStore()));
  const registrationId = 1 + Math.floor(Math.random() * 16000);
  return {
    aci,
    deviceId,
    address: ProtocolAddress.new(aci, deviceId),
    identity,
    registrationId,
    state,
    stores: protocolStores(state, 'aci', identity, registrationId, () => undefined),
  };
}

/** The connector side: keys generated and committed, ready to receive. */
export interface Receiver extends Party {
  readonly pni: string;
  readonly pniIdentity: IdentityKeyPair;
  readonly pniStores: ProtocolStores;
  readonly senderKeys: StateSenderKeyStore;
  readonly identityChanges: { serviceId: string; key: PublicKey }[];
  /** A bundle for a sender, using one-time prekey `preKeyId`. */
  bundle(preKeyId: number): PreKeyBundle;
}

/** `base`: the state store to keep its keys in (a connector's scoped store). Default a fresh one. */
export async function makeReceiver(base?: StateStore): Promise<Receiver> {
  const identity = IdentityKeyPair.generate();
  const party = await makeParty(2, identity, randomUUID(), base);
  const identityChanges: Receiver['identityChanges'] = [];
  const stores = protocolStores(party.state, 'aci', identity, party.registrationId, (serviceId, key) => identityChanges.push({ serviceId, key }));
  const spk = PrivateKey.generate();
  const spkSig = identity.privateKey.sign(spk.getPublicKey().serialize());
  await stores.signedPreKeys.saveSignedPreKey(1, SignedPreKeyRecord.new(1, Date.now(), spk.getPublicKey(), spk, spkSig));
  const kem = KEMKeyPair.generate();
  const kemSig = identity.privateKey.sign(kem.getPublicKey().serialize());
  stores.kyberPreKeys.saveLastResortKyberPreKey(1, KyberPreKeyRecord.new(1, Date.now(), kem, kemSig));
  const oneTime = new Map<number, PrivateKey>();
  for (let id = 10; id < 20; id++) {
    const k = PrivateKey.generate();
    oneTime.set(id, k);
    await stores.preKeys.savePreKey(id, PreKeyRecord.new(id, k.getPublicKey(), k));
  }
  await party.state.commit();
  const pniIdentity = IdentityKeyPair.generate();
  return {
    ...party,
    stores,
    pni: `PNI:${randomUUID()}`,
    pniIdentity,
    pniStores: protocolStores(party.state, 'pni', pniIdentity, party.registrationId, () => undefined),
    senderKeys: new StateSenderKeyStore(party.state),
    identityChanges,
    bundle(preKeyId) {
      const pre = oneTime.get(preKeyId);
      if (pre === undefined) throw new Error(`no prekey ${preKeyId}`);
      return PreKeyBundle.new(party.registrationId, 2, preKeyId, pre.getPublicKey(), 1, spk.getPublicKey(), spkSig, identity.publicKey, 1, kem.getPublicKey(), kemSig);
    },
  };
}

/** A contact that has started a session with `receiver` (first messages are PreKey type). */
export async function startSession(sender: Party, receiver: Receiver, preKeyId: number): Promise<void> {
  await processPreKeyBundle(receiver.bundle(preKeyId), receiver.address, sender.address, sender.stores.sessions, sender.stores.identities);
  await sender.state.commit();
}

/** Encrypts padded `content` from `sender` to `receiver`; returns [envelope type, ciphertext]. */
export async function encryptTo(sender: Party, receiver: Receiver, content: Uint8Array): Promise<{ type: number; body: Uint8Array }> {
  const message = await signalEncrypt(addPadding(content), receiver.address, sender.address, sender.stores.sessions, sender.stores.identities);
  await sender.state.commit();
  return { type: message.type() === 3 ? 3 : 1, body: message.serialize() };
}

export interface TrustRoot {
  readonly root: PrivateKey;
  certificateFor(sender: Party, expiresAt?: number): SenderCertificate;
}

export function makeTrustRoot(): TrustRoot {
  const root = PrivateKey.generate();
  const serverKey = PrivateKey.generate();
  const serverCert = ServerCertificate.new(1, serverKey.getPublicKey(), root);
  return {
    root,
    certificateFor: (sender, expiresAt = Date.now() + 86_400_000) => SenderCertificate.new(sender.aci, null, sender.deviceId, sender.identity.publicKey, expiresAt, serverCert, serverKey),
  };
}

export async function sealedTo(sender: Party, receiver: Receiver, content: Uint8Array, trust: TrustRoot, expiresAt?: number): Promise<Uint8Array> {
  const sealed = await sealedSenderEncryptMessage(addPadding(content), receiver.address, trust.certificateFor(sender, expiresAt), sender.stores.sessions, sender.stores.identities);
  await sender.state.commit();
  return sealed;
}

/** Envelope bytes as the server would send them. */
export function envelopeBytes(fields: {
  type: number;
  content: Uint8Array;
  source?: Party;
  serverGuid?: string;
  clientTimestamp?: number;
  serverTimestamp?: number;
  binaryIds?: boolean;
}): Uint8Array<ArrayBuffer> {
  const w = new ProtoWriter().uint(1, fields.type);
  if (fields.source !== undefined) {
    if (fields.binaryIds === true) w.bytes(19, serviceIdToBinary(fields.source.aci));
    else w.string(11, fields.source.aci);
    w.uint(7, fields.source.deviceId);
  }
  return w
    .uint(5, fields.clientTimestamp)
    .bytes(8, fields.content)
    .string(9, fields.serverGuid ?? randomUUID())
    .uint(10, fields.serverTimestamp ?? Date.now())
    .finish();
}

/** Content { dataMessage { body, timestamp } }. */
export function textContent(body: string, timestamp: number): Uint8Array<ArrayBuffer> {
  return new ProtoWriter().message(1, new ProtoWriter().string(1, body).uint(7, timestamp)).finish();
}
