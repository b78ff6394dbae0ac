import { Recorder, decodeRecord, type ArchiveRecord, type CaptureInput } from '@offchannel/core';
import { createMemorySink } from '@offchannel/core/testing';
import { Long, PeersIndex, type tl } from '@mtcute/core';
import { describe, expect, it } from 'vitest';
import { __tlWriterMap } from '@mtcute/core/utils.js';
import { IGNORED_UPDATES, TL_MEDIA_MIME, contentFingerprint, mapTelegramRaw, mediaOf, reactionSet, type MessageMemory, type TelegramMapEnv } from './map-telegram.ts';
import { TL_RAW_FORMAT, decodeTl, encodeTl } from './tl-evidence.ts';

const SELF = 5_000_001;
const DANA = 5_000_002;
const SAM = 5_000_003;
const GROUP = 4_001;
const SUPER = 1_500_000_001;
const CHANNEL = 1_500_000_002;
const DATE = 1_700_000_000;
const RECEIVED = new Date('2026-11-21T09:00:00.000Z');

const users: tl.TypeUser[] = [
  { _: 'user', id: SELF, self: true, accessHash: Long.fromNumber(11), firstName: 'Alice', lastName: 'Trader' },
  { _: 'user', id: DANA, accessHash: Long.fromNumber(12), firstName: 'Dana', lastName: 'Client', username: 'dana_client' },
  { _: 'user', id: SAM, accessHash: Long.fromNumber(13), firstName: 'Sam' },
];
const chats: tl.TypeChat[] = [
  { _: 'chat', id: GROUP, title: 'Deal desk', photo: { _: 'chatPhotoEmpty' }, participantsCount: 3, date: DATE, version: 1 },
  { _: 'channel', id: SUPER, megagroup: true, accessHash: Long.fromNumber(14), title: 'Trading floor', photo: { _: 'chatPhotoEmpty' }, date: DATE },
  { _: 'channel', id: CHANNEL, broadcast: true, accessHash: Long.fromNumber(15), title: 'Research notes', photo: { _: 'chatPhotoEmpty' }, date: DATE },
];
const peers = PeersIndex.from({ users, chats });

function message(fields: Partial<tl.RawMessage> & { id: number }, options: { noFrom?: boolean } = {}): tl.RawMessage {
  const built: tl.RawMessage = { _: 'message', peerId: { _: 'peerUser', userId: DANA }, fromId: { _: 'peerUser', userId: DANA }, date: DATE, message: '', ...fields };
  if (options.noFrom) delete built.fromId;
  return built;
}

/**
 * Serializes the update with mtcute's TL serializer, checks the bytes round-trip exactly, maps
 * the *decoded* object (as a replay would), and records every input through a real Recorder so
 * that schema violations fail the test.
 */
async function map(update: tl.TypeUpdate, env: Partial<Omit<TelegramMapEnv, 'raw'>> = {}): Promise<{ inputs: CaptureInput[]; records: ArchiveRecord[]; bytes: Uint8Array }> {
  const bytes = encodeTl(update);
  expect(encodeTl(decodeTl(bytes))).toEqual(bytes);
  const inputs = mapTelegramRaw(bytes, { selfId: SELF, peers, receivedAt: RECEIVED, ...env });
  const sink = createMemorySink();
  const recorder = new Recorder({ sink, allowVolatileSink: true });
  const writer = recorder.writer({ channel: 'telegram', account: 'alice', source: { package: '@offchannel/telegram', version: '0.0.0-test' } });
  for (const input of inputs) await writer.capture(input);
  await recorder.close();
  const records: ArchiveRecord[] = [];
  for await (const stored of sink.read('telegram:alice')) records.push(decodeRecord(stored.bytes).record);
  return { inputs, records, bytes };
}

const memory = (id: number, entry: Partial<MessageMemory> = {}): ReadonlyMap<number, MessageMemory> =>
  new Map([[id, { peer: String(DANA), fingerprint: '', reactions: [], direction: 'inbound', type: 'direct', ...entry }]]);

describe('mapTelegramUpdate: messages', () => {
  it('maps an incoming private message with entities, mentions and TL evidence', async () => {
    const update: tl.TypeUpdate = {
      _: 'updateNewMessage',
      message: message({ id: 1001, message: 'Buy 100 ACME @ 12.34 — confirm? @Sam', entities: [{ _: 'messageEntityBold', offset: 0, length: 3 }, { _: 'messageEntityMentionName', offset: 33, length: 4, userId: SAM }] }),
      pts: 101,
      ptsCount: 1,
    };
    const { records, bytes } = await map(update);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      kind: 'message',
      key: `message:${DANA}:1001`,
      sentAt: '2023-11-14T22:13:20.000Z',
      conversation: { id: String(DANA), type: 'direct', title: 'Dana Client' },
      sender: { id: String(DANA), name: 'Dana Client', aliases: ['@dana_client'] },
      direction: 'inbound',
      native: { id: '1001', peer: String(DANA) },
      text: 'Buy 100 ACME @ 12.34 — confirm? @Sam',
      mentions: [String(SAM)],
      raw: { format: TL_RAW_FORMAT, size: bytes.length },
    });
  });

  it('maps outgoing messages without fromId to the custodian, and replies and forwards', async () => {
    const { records } = await map({
      _: 'updateNewMessage',
      message: message({
        id: 1002,
        out: true,
        message: 'Confirmed.',
        replyTo: { _: 'messageReplyHeader', replyToMsgId: 1001 },
        fwdFrom: { _: 'messageFwdHeader', fromId: { _: 'peerUser', userId: SAM }, fromName: 'Sam', date: DATE - 60 },
      }, { noFrom: true }),
      pts: 102,
      ptsCount: 1,
    });
    expect(records[0]).toMatchObject({
      direction: 'outbound',
      sender: { id: String(SELF), name: 'Alice Trader' },
      replyTo: { id: '1001', peer: String(DANA) },
      forwarded: true,
      meta: { forwardedFrom: String(SAM), forwardedFromName: 'Sam', forwardedDate: '2023-11-14T22:12:20.000Z' },
    });
  });

  it('maps basic groups, supergroups and broadcast channels to marked peer ids and conversation types', async () => {
    const inGroup = await map({ _: 'updateNewMessage', message: message({ id: 1003, peerId: { _: 'peerChat', chatId: GROUP }, fromId: { _: 'peerUser', userId: SAM }, message: 'desk' }), pts: 103, ptsCount: 1 });
    const inSuper = await map({ _: 'updateNewChannelMessage', message: message({ id: 7, peerId: { _: 'peerChannel', channelId: SUPER }, fromId: { _: 'peerUser', userId: SAM }, message: 'floor' }), pts: 8, ptsCount: 1 });
    const post = await map({ _: 'updateNewChannelMessage', message: message({ id: 9, peerId: { _: 'peerChannel', channelId: CHANNEL }, post: true, postAuthor: 'Research', message: 'note' }, { noFrom: true }), pts: 10, ptsCount: 1 });
    expect(inGroup.records[0]?.conversation).toEqual({ id: `-${GROUP}`, type: 'group', title: 'Deal desk' });
    expect(inSuper.records[0]?.conversation).toEqual({ id: `-100${SUPER}`, type: 'group', title: 'Trading floor' });
    expect(inSuper.records[0]?.native).toEqual({ id: '7', peer: `-100${SUPER}` });
    expect(post.records[0]).toMatchObject({ conversation: { id: `-100${CHANNEL}`, type: 'channel', title: 'Research notes' }, sender: { id: `-100${CHANNEL}`, name: 'Research notes' }, meta: { postAuthor: 'Research' } });
  });

  it('keeps downloaded media as stored attachments and failed downloads as unavailable with the reason', async () => {
    const document: tl.RawDocument = { _: 'document', id: Long.fromNumber(4242), accessHash: Long.fromNumber(1), fileReference: new Uint8Array([9]), date: DATE, mimeType: 'application/pdf', size: 5, dcId: 2, attributes: [{ _: 'documentAttributeFilename', fileName: 'term-sheet.pdf' }] };
    const withDoc = message({ id: 1004, message: 'see attached', media: { _: 'messageMediaDocument', document } });
    expect(mediaOf(withDoc)).toMatchObject({ kind: 'document', mime: 'application/pdf', name: 'term-sheet.pdf', size: 5, dcId: 2, location: { _: 'inputDocumentFileLocation' } });
    const stored = await map({ _: 'updateNewMessage', message: withDoc, pts: 104, ptsCount: 1 }, { attachments: [{ bytes: new Uint8Array([1, 2, 3, 4, 5]), mime: 'application/pdf', name: 'term-sheet.pdf' }] });
    expect(stored.records[0]?.attachments).toEqual([{ status: 'stored', sha256: '74f81fe167d99b4cb41d6d0ccda82278caee9f3e2f25d5e5a3936ff3dcec60d0', size: 5, mime: 'application/pdf', name: 'term-sheet.pdf' }]);
    const failed = await map({ _: 'updateNewMessage', message: withDoc, pts: 104, ptsCount: 1 }, { attachments: [{ status: 'unavailable', reason: 'download-failed: FILE_REFERENCE_EXPIRED', mime: 'application/pdf', size: 5 }] });
    expect(failed.records[0]?.attachments).toEqual([{ status: 'unavailable', reason: 'download-failed: FILE_REFERENCE_EXPIRED', mime: 'application/pdf', size: 5 }]);
  });

  it('keeps a huge text whole (the recorder moves it to a blob)', async () => {
    const huge = 'x'.repeat(100_000);
    const { records } = await map({ _: 'updateNewMessage', message: message({ id: 1006, message: huge }), pts: 106, ptsCount: 1 });
    expect(records[0]?.text).toBeUndefined();
    expect(records[0]?.textBlob?.size).toBe(100_000);
  });

  it('picks the largest photo size and describes non-file media in meta', async () => {
    const photo: tl.RawPhoto = {
      _: 'photo',
      id: Long.fromNumber(77),
      accessHash: Long.fromNumber(2),
      fileReference: new Uint8Array([1]),
      date: DATE,
      dcId: 4,
      sizes: [{ _: 'photoSize', type: 's', w: 90, h: 90, size: 1000 }, { _: 'photoSizeProgressive', type: 'y', w: 1280, h: 960, sizes: [5000, 20000, 80000] }, { _: 'photoStrippedSize', type: 'i', bytes: new Uint8Array([1, 2]) }],
    };
    expect(mediaOf(message({ id: 1, media: { _: 'messageMediaPhoto', photo } }))).toMatchObject({ kind: 'photo', dcId: 4, size: 80000, location: { _: 'inputPhotoFileLocation', thumbSize: 'y' } });
    const media: tl.TypeMessageMedia = { _: 'messageMediaGeo', geo: { _: 'geoPoint', lat: 51.5, long: -0.12, accessHash: Long.fromNumber(0) } };
    const geo = await map({ _: 'updateNewMessage', message: message({ id: 1005, media }), pts: 105, ptsCount: 1 });
    expect(geo.records[0]?.meta).toMatchObject({ media: 'messageMediaGeo' });
    // No file to download: the location itself is kept as its TL bytes, and decodes back.
    const attachment = geo.records[0]?.attachments?.[0];
    expect(attachment).toMatchObject({ status: 'stored', mime: TL_MEDIA_MIME, name: 'messageMediaGeo.tl', size: encodeTl(media).length });
  });
});

describe('mapTelegramUpdate: edits, deletes, reactions', () => {
  const original = message({ id: 1001, message: 'Buy 100 ACME', entities: [{ _: 'messageEntityBold', offset: 0, length: 3 }] });

  it('records an edit only when the content fingerprint changes', async () => {
    const known = memory(1001, { fingerprint: contentFingerprint(original) });
    const edited = await map({ _: 'updateEditMessage', message: { ...original, message: 'Buy 200 ACME', editDate: DATE + 60 }, pts: 106, ptsCount: 1 }, { memory: known });
    expect(edited.records).toHaveLength(1);
    expect(edited.records[0]).toMatchObject({ kind: 'edit', text: 'Buy 200 ACME', sentAt: '2023-11-14T22:14:20.000Z', target: { id: '1001', peer: String(DANA) } });
    // A link preview arriving, a view counter, editHide: same content, no edit record.
    const preview: tl.TypeMessageMedia = { _: 'messageMediaWebPage', webpage: { _: 'webPageEmpty', id: Long.fromNumber(5) } };
    const cosmetic = await map({ _: 'updateEditMessage', message: { ...original, media: preview, editHide: true, views: 10 }, pts: 107, ptsCount: 1 }, { memory: known });
    expect(cosmetic.records).toEqual([]);
    // Back and forth: A→B→A→B are separate versions, all recorded (told apart by editDate).
    const back = await map({ _: 'updateEditMessage', message: { ...original, editDate: DATE + 120 }, pts: 110, ptsCount: 1 }, { memory: memory(1001, { fingerprint: contentFingerprint({ ...original, message: 'Buy 200 ACME' }) }) });
    const again = await map({ _: 'updateEditMessage', message: { ...original, message: 'Buy 200 ACME', editDate: DATE + 180 }, pts: 111, ptsCount: 1 }, { memory: known });
    const keys = [edited.records[0]?.key, back.records[0]?.key, again.records[0]?.key];
    expect(new Set(keys).size).toBe(3);
    // An edit of a message we never saw is recorded, flagged.
    const unknown = await map({ _: 'updateEditMessage', message: { ...original, editDate: DATE + 5 }, pts: 108, ptsCount: 1 });
    expect(unknown.records[0]).toMatchObject({ kind: 'edit', meta: { previousUnknown: true } });
  });

  it('keeps content fingerprints exactly as stored indexes hold them (text, entities, media identity; any Unicode)', () => {
    // Fingerprints are persisted in the message index: a changed formula would turn every
    // re-delivered message of an upgraded account into a spurious edit. Values from 3bc7f04.
    const base = { _: 'message', id: 1, peerId: { _: 'peerUser', userId: 2 }, date: 1_700_000_000 } as const;
    const messages: tl.RawMessage[] = [
      { ...base, message: 'Buy 100 ACME @ 12.34 — confirm?' },
      { ...base, message: 'lone \ud800 surrogate, emoji 😀, NUL \u0000 and "quotes"', entities: [{ _: 'messageEntityTextUrl', offset: 0, length: 4, url: 'https://example.com/ü' }, { _: 'messageEntityMentionName', offset: 5, length: 4, userId: 123456789 }] },
      { ...base, message: '', media: { _: 'messageMediaDocument', document: { _: 'document', id: Long.fromString('9007199254740993'), accessHash: Long.ZERO, fileReference: new Uint8Array(0), date: 0, mimeType: 'application/pdf', size: 5, dcId: 2, attributes: [] } } },
      { ...base, message: 'at', media: { _: 'messageMediaGeo', geo: { _: 'geoPoint', long: 13.4, lat: 52.5, accessHash: Long.ZERO } } },
    ];
    expect(messages.map((message) => contentFingerprint(message))).toEqual([
      '079c8140840567daac03e2a0918bbdea6acd92cb6b79a69b67dafc187511cfcd',
      '568d488a331bcbb264945af15cfc0f6149dcd3d4af4996ae680934f3dc425d76',
      'fd12c7fc8dc5df746998c2271f452852d1a0dee8de9832a15fd0a8bb07c87b06',
      '31623c3db617857f8fc2f6d62c7481baf79e4f232422a463d5ac765c16ac57aa',
    ]);
  });

  it('turns reaction-only edits into reaction records (add, then remove in a private chat)', async () => {
    const reactions: tl.TypeMessageReactions = {
      _: 'messageReactions',
      results: [{ _: 'reactionCount', reaction: { _: 'reactionEmoji', emoticon: '👍' }, count: 1 }],
      recentReactions: [{ _: 'messagePeerReaction', peerId: { _: 'peerUser', userId: DANA }, date: DATE + 30, reaction: { _: 'reactionEmoji', emoticon: '👍' } }],
    };
    const known = memory(1001, { fingerprint: contentFingerprint(original), direction: 'outbound' });
    const added = await map({ _: 'updateEditMessage', message: { ...original, reactions }, pts: 109, ptsCount: 1 }, { memory: known });
    expect(added.records.map((record) => record.kind)).toEqual(['reaction']);
    expect(added.records[0]).toMatchObject({ reaction: { value: '👍', action: 'add' }, sender: { id: String(DANA) }, direction: 'inbound', sentAt: '2023-11-14T22:13:50.000Z', target: { id: '1001', peer: String(DANA) } });
    const pairs = [...reactionSet(reactions, SELF).keys()];
    const removed = await map({ _: 'updateMessageReactions', peer: { _: 'peerUser', userId: DANA }, msgId: 1001, reactions: { _: 'messageReactions', results: [] } }, { memory: memory(1001, { reactions: pairs }) });
    expect(removed.records[0]).toMatchObject({ kind: 'reaction', reaction: { value: '👍', action: 'remove' }, sentAt: RECEIVED.toISOString(), meta: { sentAtIsReceipt: true } });
  });

  it('records the custodian’s own reaction (chosenOrder) as outbound', async () => {
    const { records } = await map({
      _: 'updateMessageReactions',
      peer: { _: 'peerChannel', channelId: SUPER },
      msgId: 7,
      reactions: { _: 'messageReactions', results: [{ _: 'reactionCount', reaction: { _: 'reactionCustomEmoji', documentId: Long.fromString('5368324170671202286') }, count: 3, chosenOrder: 0 }] },
    });
    expect(records[0]).toMatchObject({ kind: 'reaction', direction: 'outbound', sender: { id: String(SELF) }, reaction: { value: 'custom:5368324170671202286', action: 'add' }, conversation: { id: `-100${SUPER}`, type: 'group' } });
  });

  it('resolves id-only deletes through the index and keeps unresolved ones as system records', async () => {
    const index = new Map<number, MessageMemory>([[1001, { peer: `-${GROUP}`, type: 'group', fingerprint: 'x', reactions: [], direction: 'outbound' }]]);
    const { records } = await map({ _: 'updateDeleteMessages', messages: [1001, 999], pts: 110, ptsCount: 2 }, { memory: index, pts: 110 });
    expect(records.map((record) => record.kind)).toEqual(['delete', 'system']);
    expect(records[0]).toMatchObject({ conversation: { id: `-${GROUP}`, type: 'group' }, target: { id: '1001', peer: `-${GROUP}` }, direction: 'outbound', deletion: { scope: 'everyone' }, meta: { scopeCertain: false } });
    expect(records[1]).toMatchObject({ key: 'delete-unresolved:999:110', system: { event: 'delete-unresolved', fields: { messageId: '999' } } });
    expect(records[0]?.raw?.sha256).toBe(records[1]?.raw?.sha256); // one update, one evidence blob
  });

  it('maps channel deletes with the channel they carry', async () => {
    const { records } = await map({ _: 'updateDeleteChannelMessages', channelId: SUPER, messages: [7, 8], pts: 12, ptsCount: 2 });
    expect(records.map((record) => record.target)).toEqual([{ id: '7', peer: `-100${SUPER}` }, { id: '8', peer: `-100${SUPER}` }]);
    expect(records[0]).toMatchObject({ conversation: { id: `-100${SUPER}`, type: 'group', title: 'Trading floor' }, meta: { scopeCertain: true } });
  });
});

describe('mapTelegramUpdate: service messages, secret chats, the rest', () => {
  const service = (id: number, action: tl.TypeMessageAction, from = SAM): tl.TypeUpdate => ({
    _: 'updateNewMessage',
    message: { _: 'messageService', id, peerId: { _: 'peerChat', chatId: GROUP }, fromId: { _: 'peerUser', userId: from }, date: DATE, action },
    pts: 120 + id,
    ptsCount: 1,
  });

  it('maps joins, leaves, removals, adds, title changes and creation to membership records', async () => {
    const cases: [tl.TypeMessageAction, number, object][] = [
      [{ _: 'messageActionChatAddUser', users: [DANA] }, SAM, { action: 'add', members: [{ id: String(DANA), name: 'Dana Client', aliases: ['@dana_client'] }] }],
      [{ _: 'messageActionChatDeleteUser', userId: SAM }, SAM, { action: 'leave' }],
      [{ _: 'messageActionChatDeleteUser', userId: DANA }, SAM, { action: 'remove', members: [{ id: String(DANA), name: 'Dana Client', aliases: ['@dana_client'] }] }],
      [{ _: 'messageActionChatJoinedByLink', inviterId: SAM }, DANA, { action: 'join' }],
      [{ _: 'messageActionChatEditTitle', title: 'Deal desk (EMEA)' }, SAM, { action: 'title', value: 'Deal desk (EMEA)' }],
      [{ _: 'messageActionChatCreate', title: 'Deal desk', users: [SELF, SAM] }, SELF, { action: 'create', value: 'Deal desk' }],
      [{ _: 'messageActionPinMessage' }, SAM, { action: 'other', value: 'messageActionPinMessage' }],
    ];
    for (const [index, [action, from, expected]] of cases.entries()) {
      const { records } = await map(service(index + 1, action, from));
      expect(records[0]).toMatchObject({ kind: 'membership', conversation: { id: `-${GROUP}` }, sender: { id: String(from) }, membership: expected, native: { id: String(index + 1), peer: `-${GROUP}` } });
    }
  });

  it('records secret-chat activity it cannot decrypt', async () => {
    const seen = await map({ _: 'updateEncryption', chat: { _: 'encryptedChatRequested', id: 31, accessHash: Long.fromNumber(1), date: DATE, adminId: DANA, participantId: SELF, gA: new Uint8Array(256) }, date: DATE });
    expect(seen.records[0]).toMatchObject({ kind: 'system', system: { event: 'secret-chat-seen', fields: { chatId: '31', state: 'encryptedChatRequested' } } });
    const message = await map({ _: 'updateNewEncryptedMessage', message: { _: 'encryptedMessage', randomId: Long.fromNumber(3), chatId: 31, date: DATE, bytes: new Uint8Array([1, 2, 3, 4]), file: { _: 'encryptedFileEmpty' } }, qts: 4 });
    expect(message.records[0]).toMatchObject({ kind: 'undecryptable', problem: { reason: 'secret-chat' } });
  });

  it('lists only real layer constructors as ignored (a typo would silently turn a record into nothing)', () => {
    const unknown = [...IGNORED_UPDATES].filter((name) => name !== 'mtcute.dummyUpdate' && !(name in __tlWriterMap));
    expect(unknown).toEqual([]);
    for (const mapped of ['updateNewMessage', 'updateDeleteMessages', 'updateMessageReactions', 'updateEncryption']) expect(IGNORED_UPDATES.has(mapped)).toBe(false);
  });

  it('ignores presence and read marks, and keeps any other update as unsupported with its bytes', async () => {
    expect((await map({ _: 'updateUserTyping', userId: DANA, action: { _: 'sendMessageTypingAction' } })).records).toEqual([]);
    const other = await map({ _: 'updateLoginToken' });
    expect(other.records[0]).toMatchObject({ kind: 'unsupported', problem: { reason: 'unmapped-update', detail: 'constructor updateLoginToken' }, raw: { size: other.bytes.length, format: TL_RAW_FORMAT } });
  });
});
