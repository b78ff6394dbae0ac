/**
 * libsignal's protocol stores (sessions, identities, prekeys, sender keys) kept in the secret
 * state store through a {@link StagedState}, so that an envelope's state changes become
 * durable only when the receiver commits them (after the envelope's records are archived).
 *
 * Names: `<kind>.session.<serviceId>.<device>`, `identity.<serviceId>`,
 * `<kind>.prekey.<id>`, `<kind>.signed-prekey.<id>`, `<kind>.kyber-prekey.<id>`,
 * `<kind>.kyber-last-resort.<id>`, `<kind>.kyber-used.<id>.<signedId>.<baseKeyHash>`,
 * `sender-key.<serviceId>.<device>.<distributionId>`; `kind` is `aci` or `pni`.
 */
import { createHash } from 'node:crypto';
import {
  type Direction,
  IdentityChange,
  IdentityKeyStore,
  type IdentityKeyPair,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyRecord,
  PreKeyStore,
  type PrivateKey,
  type ProtocolAddress,
  PublicKey,
  SenderKeyRecord,
  SenderKeyStore,
  SessionRecord,
  SessionStore,
  SignedPreKeyRecord,
  SignedPreKeyStore,
  type Uuid,
} from '@signalapp/libsignal-client';
import { SignalError } from './signal-error.ts';
import type { StagedState } from './staged-state.ts';

export type KeyKind = 'aci' | 'pni';

function missing(what: string): SignalError {
  return new SignalError('SIGNAL_KEY_MISSING', `${what} is not in the state store (used up or never uploaded).`);
}

/** The record stored under `name`, decoded; `null` when there is none. */
async function readRecord<T>(state: StagedState, name: string, decode: (bytes: Uint8Array<ArrayBuffer>) => T): Promise<T | null> {
  const bytes = await state.get(name);
  return bytes === undefined ? null : decode(Uint8Array.from(bytes));
}

/** The record stored under `name`, decoded; a missing one is `SIGNAL_KEY_MISSING` naming `what`. */
async function requireRecord<T>(state: StagedState, name: string, what: string, decode: (bytes: Uint8Array<ArrayBuffer>) => T): Promise<T> {
  const record = await readRecord(state, name, decode);
  if (record === null) throw missing(what);
  return record;
}

function addressName(address: ProtocolAddress): string {
  return `${address.name()}.${address.deviceId()}`;
}

export class StateSessionStore extends SessionStore {
  readonly #state: StagedState;
  readonly #kind: KeyKind;

  constructor(state: StagedState, kind: KeyKind) {
    super();
    this.#state = state;
    this.#kind = kind;
  }

  async saveSession(address: ProtocolAddress, record: SessionRecord): Promise<void> {
    this.#state.set(`${this.#kind}.session.${addressName(address)}`, record.serialize());
  }

  async getSession(address: ProtocolAddress): Promise<SessionRecord | null> {
    return readRecord(this.#state, `${this.#kind}.session.${addressName(address)}`, (bytes) => SessionRecord.deserialize(bytes));
  }

  async getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
    const out: SessionRecord[] = [];
    for (const address of addresses) {
      const record = await this.getSession(address);
      if (record === null) throw missing(`session ${addressName(address)}`);
      out.push(record);
    }
    return out;
  }
}

/** Called when a contact's identity key is replaced (the receiver records it as `system`). */
export type IdentityChangeListener = (serviceId: string, key: PublicKey) => void;

/**
 * Our identity and the identities of others. Receiving never refuses a changed identity key
 * (an archive must not lose a message because a contact reinstalled Signal); the change is
 * reported to `onChange` and recorded.
 */
export class StateIdentityStore extends IdentityKeyStore {
  readonly #state: StagedState;
  readonly #identity: IdentityKeyPair;
  readonly #registrationId: number;
  readonly #onChange: IdentityChangeListener;

  constructor(state: StagedState, identity: IdentityKeyPair, registrationId: number, onChange: IdentityChangeListener) {
    super();
    this.#state = state;
    this.#identity = identity;
    this.#registrationId = registrationId;
    this.#onChange = onChange;
  }

  async getIdentityKey(): Promise<PrivateKey> {
    return this.#identity.privateKey;
  }

  async getLocalRegistrationId(): Promise<number> {
    return this.#registrationId;
  }

  async saveIdentity(address: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const existing = await this.getIdentity(address);
    if (existing?.equals(key) === true) return IdentityChange.NewOrUnchanged;
    this.#state.set(`identity.${address.name()}`, key.serialize());
    if (existing === null) return IdentityChange.NewOrUnchanged;
    this.#onChange(address.name(), key);
    return IdentityChange.ReplacedExisting;
  }

  async isTrustedIdentity(_address: ProtocolAddress, _key: PublicKey, _direction: Direction): Promise<boolean> {
    return true;
  }

  async getIdentity(address: ProtocolAddress): Promise<PublicKey | null> {
    return readRecord(this.#state, `identity.${address.name()}`, (bytes) => PublicKey.deserialize(bytes));
  }
}

export class StatePreKeyStore extends PreKeyStore {
  readonly #state: StagedState;
  readonly #kind: KeyKind;

  constructor(state: StagedState, kind: KeyKind) {
    super();
    this.#state = state;
    this.#kind = kind;
  }

  async savePreKey(id: number, record: PreKeyRecord): Promise<void> {
    this.#state.set(`${this.#kind}.prekey.${id}`, record.serialize());
  }

  async getPreKey(id: number): Promise<PreKeyRecord> {
    return requireRecord(this.#state, `${this.#kind}.prekey.${id}`, `${this.#kind} one-time prekey ${id}`, (bytes) => PreKeyRecord.deserialize(bytes));
  }

  async removePreKey(id: number): Promise<void> {
    this.#state.delete(`${this.#kind}.prekey.${id}`);
  }
}

export class StateSignedPreKeyStore extends SignedPreKeyStore {
  readonly #state: StagedState;
  readonly #kind: KeyKind;

  constructor(state: StagedState, kind: KeyKind) {
    super();
    this.#state = state;
    this.#kind = kind;
  }

  async saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void> {
    this.#state.set(`${this.#kind}.signed-prekey.${id}`, record.serialize());
  }

  async getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
    return requireRecord(this.#state, `${this.#kind}.signed-prekey.${id}`, `${this.#kind} signed prekey ${id}`, (bytes) => SignedPreKeyRecord.deserialize(bytes));
  }
}

/**
 * Kyber prekeys. One-time keys are deleted when used; a last-resort key stays, and each
 * (signed prekey, base key) pair it was used with is remembered so a replayed first message
 * is refused.
 */
export class StateKyberPreKeyStore extends KyberPreKeyStore {
  readonly #state: StagedState;
  readonly #kind: KeyKind;

  constructor(state: StagedState, kind: KeyKind) {
    super();
    this.#state = state;
    this.#kind = kind;
  }

  async saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void> {
    this.#state.set(`${this.#kind}.kyber-prekey.${id}`, record.serialize());
  }

  /** Saves a last-resort key (kept after use). */
  saveLastResortKyberPreKey(id: number, record: KyberPreKeyRecord): void {
    this.#state.set(`${this.#kind}.kyber-prekey.${id}`, record.serialize());
    this.#state.set(`${this.#kind}.kyber-last-resort.${id}`, Uint8Array.of(1));
  }

  async getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
    return requireRecord(this.#state, `${this.#kind}.kyber-prekey.${id}`, `${this.#kind} kyber prekey ${id}`, (bytes) => KyberPreKeyRecord.deserialize(bytes));
  }

  async markKyberPreKeyUsed(id: number, signedPreKeyId: number, baseKey: PublicKey): Promise<void> {
    if ((await this.#state.get(`${this.#kind}.kyber-last-resort.${id}`)) === undefined) {
      this.#state.delete(`${this.#kind}.kyber-prekey.${id}`);
      return;
    }
    const hash = createHash('sha256').update(baseKey.serialize()).digest('hex').slice(0, 32);
    const name = `${this.#kind}.kyber-used.${id}.${signedPreKeyId}.${hash}`;
    if ((await this.#state.get(name)) !== undefined) {
      throw new SignalError('SIGNAL_PREKEY_REUSED', `last-resort kyber prekey ${id} was already used with this base key (replayed first message).`);
    }
    this.#state.set(name, Uint8Array.of(1));
  }
}

export class StateSenderKeyStore extends SenderKeyStore {
  readonly #state: StagedState;

  constructor(state: StagedState) {
    super();
    this.#state = state;
  }

  async saveSenderKey(sender: ProtocolAddress, distributionId: Uuid, record: SenderKeyRecord): Promise<void> {
    this.#state.set(`sender-key.${addressName(sender)}.${distributionId}`, record.serialize());
  }

  async getSenderKey(sender: ProtocolAddress, distributionId: Uuid): Promise<SenderKeyRecord | null> {
    return readRecord(this.#state, `sender-key.${addressName(sender)}.${distributionId}`, (bytes) => SenderKeyRecord.deserialize(bytes));
  }
}

/** The full set of stores for one of our identities (ACI or PNI). */
export interface ProtocolStores {
  readonly kind: KeyKind;
  readonly sessions: StateSessionStore;
  readonly identities: StateIdentityStore;
  readonly preKeys: StatePreKeyStore;
  readonly signedPreKeys: StateSignedPreKeyStore;
  readonly kyberPreKeys: StateKyberPreKeyStore;
}

export function protocolStores(state: StagedState, kind: KeyKind, identity: IdentityKeyPair, registrationId: number, onChange: IdentityChangeListener): ProtocolStores {
  return {
    kind,
    sessions: new StateSessionStore(state, kind),
    identities: new StateIdentityStore(state, identity, registrationId, onChange),
    preKeys: new StatePreKeyStore(state, kind),
    signedPreKeys: new StateSignedPreKeyStore(state, kind),
    kyberPreKeys: new StateKyberPreKeyStore(state, kind),
  };
}
