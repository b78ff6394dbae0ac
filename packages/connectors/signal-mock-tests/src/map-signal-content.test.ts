/**
 * The mapping, on Content built and encoded with the Signal protobufs compiled into Signal's
 * own server simulator (the platform's encoder, not ours), decoded by our minimal schema.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { AttachmentInput } from '@offchannel/core';
import { type AttachmentPointer, type EnvelopeFacts, attachmentPointersOf, decodeContent, mapSignalContent } from '@offchannel/signal';
import { Aci } from '@signalapp/libsignal-client';
import { GroupMasterKey, GroupSecretParams } from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import { Proto } from '@signalapp/mock-server';
import { describe, expect, it } from 'vitest';
import { dataMessage } from './mock-signal.ts';

const SELF = randomUUID();
const CONTACT = randomUUID();
const OTHER = randomUUID();
const T = 1_763_700_000_000;

const facts = (overrides: Partial<EnvelopeFacts> = {}): EnvelopeFacts => ({
  selfAci: SELF,
  senderAci: CONTACT,
  senderDevice: 1,
  sealedSender: true,
  envelopeType: 6,
  serverGuid: 'a1b2c3d4-0000-4000-8000-000000000001',
  serverTimestamp: T + 50,
  clientTimestamp: T,
  ...overrides,
});

const content = (c: Proto.Content.Params['content']): Uint8Array => Proto.Content.encode({ content: c, senderKeyDistributionMessage: null, pniSignatureMessage: null });
const sent = (fields: Partial<Proto.SyncMessage.Sent.Params>): Proto.SyncMessage.Sent.Params => ({
  destinationE164: null,
  destinationServiceId: null,
  timestamp: BigInt(T),
  message: null,
  expirationStartTimestamp: null,
  unidentifiedStatus: null,
  isRecipientUpdate: null,
  storyMessage: null,
  storyMessageRecipients: null,
  editMessage: null,
  destinationServiceIdBinary: null,
  ...fields,
});
const syncContent = (c: Proto.SyncMessage.Params['content'], extra: Partial<Proto.SyncMessage.Params> = {}): Uint8Array =>
  content({ syncMessage: { content: c, stickerPackOperation: null, read: null, viewed: null, padding: null, ...extra } });

function map(bytes: Uint8Array, f: EnvelopeFacts = facts(), attachments = new Map<AttachmentPointer, AttachmentInput>()) {
  return mapSignalContent(f, decodeContent(bytes), bytes, attachments);
}

describe('mapSignalContent (Content encoded by the Signal simulator)', () => {
  it('maps an incoming direct message with quote, mentions, timer and view-once flags', () => {
    const bytes = content({
      dataMessage: dataMessage({
        body: 'Buy 100 XYZ at market',
        timestamp: BigInt(T),
        expireTimer: 3600,
        isViewOnce: true,
        quote: { id: BigInt(T - 10), authorAci: SELF, authorAciBinary: null, text: 'price?', attachments: null, bodyRanges: null, type: null },
        bodyRanges: [{ start: 0, length: 1, associatedValue: { mentionAciBinary: Aci.parseFromServiceIdString(OTHER).getServiceIdBinary() } }],
        preview: [{ url: 'https://example.com', title: null, image: null, description: null, date: null }],
      }),
    });
    const [record, ...rest] = map(bytes);
    expect(rest).toEqual([]);
    expect(record).toEqual({
      kind: 'message',
      key: `message:${CONTACT}:${T}`,
      sentAt: new Date(T).toISOString(),
      conversation: { id: CONTACT, type: 'direct' },
      sender: { id: CONTACT },
      direction: 'inbound',
      native: { id: String(T), author: CONTACT },
      raw: { bytes, format: 'signal.Content.proto' },
      text: 'Buy 100 XYZ at market',
      replyTo: { id: String(T - 10), author: SELF },
      mentions: [OTHER],
      meta: {
        'signal.clientTimestamp': T,
        'signal.envelopeType': 6,
        'signal.sealedSender': true,
        'signal.senderDevice': 1,
        'signal.serverGuid': 'a1b2c3d4-0000-4000-8000-000000000001',
        'signal.serverTimestamp': T + 50,
        'signal.expireTimerSeconds': 3600,
        'signal.viewOnce': true,
        'signal.quoteHasText': true,
        'signal.unmappedFields': '10',
      },
    });
  });

  it('puts group messages in the group conversation, id derived from the master key', () => {
    const masterKey = randomBytes(32);
    const [record] = map(content({ dataMessage: dataMessage({ body: 'to the desk', timestamp: BigInt(T), groupV2: { masterKey, revision: 3, groupChange: null } }) }));
    const expected = GroupSecretParams.deriveFromMasterKey(new GroupMasterKey(Uint8Array.from(masterKey))).getPublicParams().getGroupIdentifier().toString();
    expect(record).toMatchObject({ conversation: { id: `group:${expected}`, type: 'group' }, meta: { 'signal.groupRevision': 3 } });
  });

  it('maps sync transcripts (string and binary destination) as outbound, and sync edits as edits', () => {
    const msg = dataMessage({ body: 'filled at 12.34', timestamp: BigInt(T) });
    const binary = Aci.parseFromServiceIdString(CONTACT).getServiceIdBinary();
    for (const s of [sent({ destinationServiceId: CONTACT, message: msg }), sent({ destinationServiceIdBinary: binary, message: msg })]) {
      const [record] = map(syncContent({ sent: s }), facts({ senderAci: SELF, sealedSender: false, envelopeType: 1 }));
      expect(record).toMatchObject({
        kind: 'message',
        key: `message:${SELF}:${T}`,
        direction: 'outbound',
        sender: { id: SELF },
        conversation: { id: CONTACT, type: 'direct' },
        text: 'filled at 12.34',
        meta: { 'signal.syncTranscript': true },
      });
    }
    const edit = sent({ destinationServiceIdBinary: binary, editMessage: { targetSentTimestamp: BigInt(T), dataMessage: dataMessage({ body: 'filled at 12.35', timestamp: BigInt(T + 9) }) } });
    expect(map(syncContent({ sent: edit }), facts({ senderAci: SELF }))[0]).toMatchObject({
      kind: 'edit',
      key: `edit:${SELF}:${T}:${T + 9}`,
      direction: 'outbound',
      target: { id: String(T), author: SELF },
      native: { id: String(T + 9), author: SELF },
      text: 'filled at 12.35',
    });
  });

  it('refuses a sync transcript that does not come from the account itself (forged outgoing message)', () => {
    const forged = syncContent({ sent: sent({ destinationServiceId: OTHER, message: dataMessage({ body: 'I never sent this', timestamp: BigInt(T) }) }) });
    const [record, ...rest] = map(forged, facts({ senderAci: CONTACT }));
    expect(rest).toEqual([]);
    expect(record).toMatchObject({ kind: 'unsupported', sender: { id: CONTACT }, problem: { reason: 'sync-message-from-another-account' }, raw: { format: 'signal.Content.proto' } });
    expect(record?.direction).toBeUndefined();
  });

  it('maps edits, remote deletes, admin deletes and reactions as new records pointing at the original', () => {
    const edit = map(content({ editMessage: { targetSentTimestamp: BigInt(T - 5), dataMessage: dataMessage({ body: 'corrected', timestamp: BigInt(T) }) } }))[0];
    expect(edit).toMatchObject({ kind: 'edit', target: { id: String(T - 5), author: CONTACT }, text: 'corrected', direction: 'inbound' });
    const del = map(content({ dataMessage: dataMessage({ delete: { targetSentTimestamp: BigInt(T - 5) }, timestamp: BigInt(T) }) }))[0];
    expect(del).toMatchObject({ kind: 'delete', key: `delete:${CONTACT}:${CONTACT}:${T - 5}`, target: { id: String(T - 5), author: CONTACT }, deletion: { scope: 'everyone' } });
    const admin = map(
      content({ dataMessage: dataMessage({ adminDelete: { targetAuthorAciBinary: Aci.parseFromServiceIdString(OTHER).getServiceIdBinary(), targetSentTimestamp: BigInt(T - 7) }, timestamp: BigInt(T) }) }),
    )[0];
    expect(admin).toMatchObject({ kind: 'delete', target: { id: String(T - 7), author: OTHER }, deletion: { scope: 'everyone', admin: true } });
    const react = map(content({ dataMessage: dataMessage({ reaction: { emoji: '❤️', remove: true, targetAuthorAci: null, targetAuthorAciBinary: Aci.parseFromServiceIdString(SELF).getServiceIdBinary(), targetSentTimestamp: BigInt(T - 1) }, timestamp: BigInt(T) }) }))[0];
    expect(react).toMatchObject({ kind: 'reaction', key: `reaction:${CONTACT}:${T}`, target: { id: String(T - 1), author: SELF }, reaction: { value: '❤️', action: 'remove' } });
  });

  it('records timer changes as settings (the archive never expires anything), receipts per message, and attachments by pointer', () => {
    const timer = map(content({ dataMessage: dataMessage({ flags: 2, expireTimer: 604_800, timestamp: BigInt(T) }) }))[0];
    expect(timer).toMatchObject({ kind: 'membership', membership: { action: 'settings', value: 'disappearing-messages:604800s' } });
    const receipts = map(content({ receiptMessage: { type: Proto.ReceiptMessage.Type.READ, timestamp: [BigInt(T - 1), BigInt(T - 2)] } }));
    expect(receipts.map((r) => [r.kind, r.key, r.target, r.receipt])).toEqual([
      ['receipt', `receipt:${CONTACT}:read:${T - 1}`, { id: String(T - 1), author: SELF }, { status: 'read' }],
      ['receipt', `receipt:${CONTACT}:read:${T - 2}`, { id: String(T - 2), author: SELF }, { status: 'read' }],
    ]);
    const pointer: Proto.AttachmentPointer.Params = {
      attachmentIdentifier: { cdnKey: 'k' },
      clientUuid: null,
      contentType: 'image/jpeg',
      key: randomBytes(64),
      size: 10,
      thumbnail: null,
      digest: randomBytes(32),
      incrementalMac: null,
      chunkSize: null,
      fileName: 'chart.jpg',
      flags: null,
      width: null,
      height: null,
      caption: null,
      blurHash: null,
      uploadTimestamp: null,
      cdnNumber: 3,
    };
    const bytes = content({ dataMessage: dataMessage({ attachments: [pointer, pointer], timestamp: BigInt(T) }) });
    const decoded = decodeContent(bytes);
    const [first, second] = attachmentPointersOf(decoded);
    const results = new Map<AttachmentPointer, AttachmentInput>([[first!, { mime: 'image/jpeg', name: 'chart.jpg', bytes: Uint8Array.of(1) }]]);
    const [record] = mapSignalContent(facts(), decoded, bytes, results);
    expect(second).toBeDefined();
    expect(record?.attachments).toEqual([
      { mime: 'image/jpeg', name: 'chart.jpg', bytes: Uint8Array.of(1) },
      { status: 'unavailable', reason: 'not-downloaded', mime: 'image/jpeg', name: 'chart.jpg', size: 10 },
    ]);
  });

  it('ignores typing indicators, records other sync messages without secrets, and stories as unsupported', () => {
    expect(map(content({ typingMessage: { timestamp: BigInt(T), action: Proto.TypingMessage.Action.STARTED, groupId: null } }))).toEqual([]);
    const read = map(syncContent(null, { read: [{ senderAci: null, senderAciBinary: Aci.parseFromServiceIdString(CONTACT).getRawUuidBytes(), timestamp: BigInt(T) }] }), facts({ senderAci: SELF }));
    expect(read[0]).toMatchObject({ kind: 'system', system: { event: 'sync-message', fields: { parts: '5' } }, raw: { format: 'signal.Content.proto' } });
    const keysSync = { keys: { master: randomBytes(32), accountEntropyPool: null, mediaRootBackupKey: null } } as unknown as Proto.SyncMessage.Params['content'];
    const keys = map(syncContent(keysSync), facts({ senderAci: SELF }));
    expect(keys[0]).toMatchObject({ kind: 'system', system: { fields: { parts: '13', rawOmitted: 'carries account keys' } } });
    expect(keys[0]?.raw).toBeUndefined();
    const story = map(content({ storyMessage: { profileKey: null, group: null, attachment: null, allowsReplies: true, bodyRanges: null } }));
    expect(story[0]).toMatchObject({ kind: 'unsupported', problem: { reason: 'story-not-captured' }, raw: { format: 'signal.Content.proto' } });
  });
});
