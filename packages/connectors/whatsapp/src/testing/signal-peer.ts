/**
 * A simulated WhatsApp contact with its own Signal identity, using the same Signal-protocol
 * library Baileys uses (libsignal through Baileys' signal repository). It builds a session
 * from the custodian's pre-key bundle — what the server would hand out — and encrypts
 * messages into `<message><enc type="pkmsg|msg">` stanzas for the offline socket to decrypt.
 */
import {
  Curve,
  DEFAULT_CONNECTION_CONFIG,
  addTransactionCapability,
  encodeWAMessage,
  generateSignalPubKey,
  initAuthCreds,
  writeRandomPadMax16,
  type AuthenticationCreds,
  type BinaryNode,
  type SignalDataSet,
  type SignalDataTypeMap,
  type SignalKeyStore,
  type SignalKeyStoreWithTransaction,
  type proto,
} from '@whiskeysockets/baileys';
import type { ILogger } from '@whiskeysockets/baileys/lib/Utils/logger.js';

const silent: ILogger = { level: 'silent', child: () => silent, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

export interface SignalPeer {
  readonly jid: string;
  /** Encrypts `content` for the custodian and wraps it as the server would deliver it. */
  stanza(content: proto.IMessage, attrs: { readonly id: string; readonly t: number; readonly pushName?: string }): Promise<BinaryNode>;
  /** Like {@link SignalPeer.stanza} but encrypts arbitrary plaintext bytes (for malformed-payload tests). */
  rawStanza(plaintext: Uint8Array, attrs: { readonly id: string; readonly t: number }): Promise<BinaryNode>;
  /**
   * A group message: the content encrypted with the peer's sender key (`skmsg`), preceded by a
   * pairwise `pkmsg`/`msg` carrying the sender-key distribution message, as WhatsApp clients send it.
   */
  groupStanza(group: string, content: proto.IMessage, attrs: { readonly id: string; readonly t: number }): Promise<BinaryNode>;
}

/** Creates a peer and a Signal session with the custodian (`me`), consuming one of their pre-keys. */
export async function createSignalPeer(jid: string, me: { readonly creds: AuthenticationCreds; readonly keys: SignalKeyStore }, preKeyId: number): Promise<SignalPeer> {
  const meId = me.creds.me?.id;
  if (!meId) throw new Error('the custodian is not linked');
  // The custodian publishes a one-time pre-key (normally uploaded to the server).
  const preKey = Curve.generateKeyPair();
  await me.keys.set({ 'pre-key': { [String(preKeyId)]: preKey } });

  const creds = initAuthCreds();
  creds.me = { id: jid, name: jid.split('@')[0] ?? jid };
  const repo = DEFAULT_CONNECTION_CONFIG.makeSignalRepository({ creds, keys: memoryKeys() }, silent, async () => []);
  await repo.injectE2ESession({
    jid: meId,
    session: {
      registrationId: me.creds.registrationId,
      identityKey: generateSignalPubKey(me.creds.signedIdentityKey.public),
      signedPreKey: {
        keyId: me.creds.signedPreKey.keyId,
        publicKey: generateSignalPubKey(me.creds.signedPreKey.keyPair.public),
        signature: me.creds.signedPreKey.signature,
      },
      preKey: { keyId: preKeyId, publicKey: generateSignalPubKey(preKey.public) },
    },
  });

  return {
    jid,
    async stanza(content, attrs) {
      const { type, ciphertext } = await repo.encryptMessage({ jid: meId, data: encodeWAMessage(content) });
      return {
        tag: 'message',
        attrs: { from: jid, id: attrs.id, t: String(attrs.t), type: 'text', ...(attrs.pushName ? { notify: attrs.pushName } : {}) },
        content: [{ tag: 'enc', attrs: { v: '2', type }, content: ciphertext }],
      };
    },
    async rawStanza(plaintext, attrs) {
      const { type, ciphertext } = await repo.encryptMessage({ jid: meId, data: writeRandomPadMax16(plaintext) });
      return {
        tag: 'message',
        attrs: { from: jid, id: attrs.id, t: String(attrs.t), type: 'text' },
        content: [{ tag: 'enc', attrs: { v: '2', type }, content: ciphertext }],
      };
    },
    async groupStanza(group, content, attrs) {
      const { ciphertext, senderKeyDistributionMessage } = await repo.encryptGroupMessage({ group, data: encodeWAMessage(content), meId: jid });
      const distribution = await repo.encryptMessage({
        jid: meId,
        data: encodeWAMessage({ senderKeyDistributionMessage: { groupId: group, axolotlSenderKeyDistributionMessage: senderKeyDistributionMessage } }),
      });
      return {
        tag: 'message',
        attrs: { from: group, participant: jid, id: attrs.id, t: String(attrs.t), type: 'text' },
        content: [
          { tag: 'enc', attrs: { v: '2', type: distribution.type }, content: distribution.ciphertext },
          { tag: 'enc', attrs: { v: '2', type: 'skmsg' }, content: ciphertext },
        ],
      };
    },
  };
}

/** An in-memory Signal key store for the simulated peer (the custodian's keys stay in the state store). */
function memoryKeys(): SignalKeyStoreWithTransaction {
  const data = new Map<string, unknown>();
  const store: SignalKeyStore = {
    get: async (type, ids) => {
      const out: { [id: string]: SignalDataTypeMap[typeof type] } = {};
      for (const id of ids) {
        const value = data.get(`${type}/${id}`);
        if (value !== undefined) out[id] = value as SignalDataTypeMap[typeof type];
      }
      return out;
    },
    set: async (set: SignalDataSet) => {
      for (const [type, values] of Object.entries(set)) {
        for (const [id, value] of Object.entries(values ?? {})) {
          if (value === null || value === undefined) data.delete(`${type}/${id}`);
          else data.set(`${type}/${id}`, value);
        }
      }
    },
  };
  return addTransactionCapability(store, silent, { maxCommitRetries: 3, delayBetweenTriesMs: 10 });
}
