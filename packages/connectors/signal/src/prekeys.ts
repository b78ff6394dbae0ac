/**
 * Prekeys: the keys other Signal clients fetch to start a session with this linked device.
 * One-time EC and Kyber prekeys are generated here, saved to the state store first and only
 * then uploaded (`PUT /v2/keys?identity=aci|pni`), and topped up when the server's count
 * (`GET /v2/keys`) falls below {@link PREKEY_REFILL_BELOW}. An empty pool would make new
 * contacts' first messages fall back to the last-resort key, or fail.
 */
import type { Logger } from '@offchannel/core';
import { KEMKeyPair, KyberPreKeyRecord, PreKeyRecord, PrivateKey, SignedPreKeyRecord, type IdentityKeyPair } from '@signalapp/libsignal-client';
import { type SignalAccount, ACCOUNT_STATE, encodeAccount } from './account.ts';
import { type ChatFetch, chatJson } from './chat-request.ts';
import type { KeyKind, ProtocolStores } from './protocol-stores.ts';
import type { StagedState } from './staged-state.ts';

export const PREKEY_BATCH = 100;
export const PREKEY_REFILL_BELOW = 20;
/** Prekey ids are 24-bit; id 1 is the signed / last-resort key. */
const MAX_PREKEY_ID = 0xff_ffff;

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');

export interface PreKeyUpload {
  readonly preKeys: { keyId: number; publicKey: string }[];
  readonly pqPreKeys: { keyId: number; publicKey: string; signature: string }[];
}

/** Generates `count` EC + Kyber one-time prekeys, staging their private halves. */
export function generateOneTimePreKeys(identity: IdentityKeyPair, stores: ProtocolStores, state: StagedState, firstId: number, count: number): { upload: PreKeyUpload; nextId: number } {
  const upload: PreKeyUpload = { preKeys: [], pqPreKeys: [] };
  let id = firstId;
  for (let i = 0; i < count; i++) {
    if (id > MAX_PREKEY_ID || id < 2) id = 2;
    const ec = PrivateKey.generate();
    state.set(`${stores.kind}.prekey.${id}`, PreKeyRecord.new(id, ec.getPublicKey(), ec).serialize());
    upload.preKeys.push({ keyId: id, publicKey: b64(ec.getPublicKey().serialize()) });
    const kem = KEMKeyPair.generate();
    const signature = identity.privateKey.sign(kem.getPublicKey().serialize());
    state.set(`${stores.kind}.kyber-prekey.${id}`, KyberPreKeyRecord.new(id, Date.now(), kem, signature).serialize());
    upload.pqPreKeys.push({ keyId: id, publicKey: b64(kem.getPublicKey().serialize()), signature: b64(signature) });
    id++;
  }
  return { upload, nextId: id };
}

/** Signed and Kyber last-resort prekeys are replaced this often (Signal clients: about 2 days). */
export const SIGNED_PREKEY_ROTATION_MS = 2 * 86_400_000;
/** How many earlier signed / last-resort prekeys are kept for messages still in flight. */
const SIGNED_PREKEYS_KEPT = 5;

/**
 * A new signed EC prekey and Kyber last-resort prekey under `id`, signed by `identity`,
 * staged in `state`; returns their upload form.
 */
export function generateSignedPreKeys(identity: IdentityKeyPair, kind: KeyKind, state: StagedState, id: number) {
  const ec = PrivateKey.generate();
  const ecSignature = identity.privateKey.sign(ec.getPublicKey().serialize());
  state.set(`${kind}.signed-prekey.${id}`, SignedPreKeyRecord.new(id, Date.now(), ec.getPublicKey(), ec, ecSignature).serialize());
  const kem = KEMKeyPair.generate();
  const kemSignature = identity.privateKey.sign(kem.getPublicKey().serialize());
  state.set(`${kind}.kyber-prekey.${id}`, KyberPreKeyRecord.new(id, Date.now(), kem, kemSignature).serialize());
  state.set(`${kind}.kyber-last-resort.${id}`, Uint8Array.of(1));
  return {
    signedPreKey: { keyId: id, publicKey: b64(ec.getPublicKey().serialize()), signature: b64(ecSignature) },
    pqLastResortPreKey: { keyId: id, publicKey: b64(kem.getPublicKey().serialize()), signature: b64(kemSignature) },
  };
}

/**
 * Keeps the server's prekeys usable, for ACI and PNI: uploads a batch of one-time prekeys when
 * the server's count is low (or `force`), and every {@link SIGNED_PREKEY_ROTATION_MS} replaces
 * the signed and last-resort prekeys (earlier ones are kept a while for messages in flight).
 * New private keys are committed to the state store before the public keys are uploaded.
 * Returns the updated account. Must run serialized with envelope processing.
 */
export async function topUpPreKeys(options: {
  readonly chat: ChatFetch;
  readonly account: SignalAccount;
  readonly state: StagedState;
  readonly stores: { readonly aci: ProtocolStores; readonly pni: ProtocolStores };
  readonly logger: Logger;
  readonly force?: boolean;
  readonly now?: number;
}): Promise<SignalAccount> {
  let account = options.account;
  const now = options.now ?? Date.now();
  const rotate = now - Date.parse(account.signedPreKeyRotatedAt ?? account.linkedAt) >= SIGNED_PREKEY_ROTATION_MS;
  for (const kind of ['aci', 'pni'] as const satisfies readonly KeyKind[]) {
    if (options.force !== true && !rotate) {
      const counts = (await chatJson(options.chat, 'GET', `/v2/keys?identity=${kind}`)) as { count?: unknown; pqCount?: unknown } | undefined;
      const count = typeof counts?.count === 'number' ? counts.count : 0;
      const pqCount = typeof counts?.pqCount === 'number' ? counts.pqCount : 0;
      if (count >= PREKEY_REFILL_BELOW && pqCount >= PREKEY_REFILL_BELOW) continue;
      options.logger.info({ identity: kind, count, pqCount }, 'prekey pool low; uploading a new batch');
    }
    const identity = kind === 'aci' ? account.aciIdentity : account.pniIdentity;
    await options.state.ensureCommitted();
    options.state.discard();
    const { upload, nextId } = generateOneTimePreKeys(identity, options.stores[kind], options.state, account.nextPreKeyId[kind], PREKEY_BATCH);
    let body: object = upload;
    account = { ...account, nextPreKeyId: { ...account.nextPreKeyId, [kind]: nextId } };
    if (rotate) {
      const current = account.signedPreKeyId?.[kind] ?? 1;
      const id = current >= MAX_PREKEY_ID ? 1 : current + 1;
      body = { ...upload, ...generateSignedPreKeys(identity, kind, options.state, id) };
      const old = id - SIGNED_PREKEYS_KEPT;
      if (old >= 1) {
        options.state.delete(`${kind}.signed-prekey.${old}`);
        options.state.delete(`${kind}.kyber-prekey.${old}`);
        options.state.delete(`${kind}.kyber-last-resort.${old}`);
      }
      account = { ...account, signedPreKeyId: { aci: account.signedPreKeyId?.aci ?? 1, pni: account.signedPreKeyId?.pni ?? 1, [kind]: id } };
      if (kind === 'pni') account = { ...account, signedPreKeyRotatedAt: new Date(now).toISOString() };
      options.logger.info({ identity: kind, keyId: id }, 'rotating the signed and last-resort prekeys');
    }
    options.state.setJson(ACCOUNT_STATE, encodeAccount(account));
    await options.state.commit(); // private halves durable before the public halves are published
    await chatJson(options.chat, 'PUT', `/v2/keys?identity=${kind}`, body);
  }
  return account;
}
