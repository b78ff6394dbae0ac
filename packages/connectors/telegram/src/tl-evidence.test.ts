import { randomBytes } from 'node:crypto';
import { Long, PeersIndex, type tl } from '@mtcute/core';
import { describe, expect, it } from 'vitest';
import { mapTelegramRaw, updateEvidence } from './map-telegram.ts';
import { MAX_TL_BYTES, TL_LAYER, TL_RAW_FORMAT, TelegramDecodeError, constructorIdOf, decodeTl, encodeTl, encodeUpdatesContainer } from './tl-evidence.ts';

const update: tl.TypeUpdate = {
  _: 'updateNewMessage',
  message: { _: 'message', id: 1001, peerId: { _: 'peerUser', userId: 123456789 }, date: 1_700_000_000, message: 'Buy 100 ACME @ 12.34 — confirm?', entities: [{ _: 'messageEntityBold', offset: 0, length: 3 }] },
  pts: 101,
  ptsCount: 1,
};
const env = { selfId: 1, peers: PeersIndex.from({}), receivedAt: new Date(0) };

function expectDecodeError(bytes: Uint8Array, code: string): void {
  let caught: unknown;
  try {
    decodeTl(bytes);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(TelegramDecodeError);
  expect((caught as TelegramDecodeError).code).toBe(code);
}

describe('TL evidence', () => {
  it('round-trips byte for byte with mtcute’s serializer, layer ' + String(TL_LAYER), () => {
    const bytes = encodeTl(update);
    expect(constructorIdOf(bytes)).toBe('0x1f2b0afd'); // updateNewMessage
    const back = decodeTl(bytes);
    expect(back).toMatchObject({ _: 'updateNewMessage', pts: 101, message: { id: 1001, message: 'Buy 100 ACME @ 12.34 — confirm?' } });
    expect(encodeTl(back)).toEqual(bytes);
    expect(TL_RAW_FORMAT).toBe(`telegram.mtproto-tl.layer${TL_LAYER}`);
  });

  it('builds an update’s container evidence byte for byte as mtcute serializes it, encoding shared peers once', () => {
    const users: tl.TypeUser[] = [
      { _: 'user', id: 1, self: true, accessHash: Long.fromNumber(7), firstName: 'Self', phone: '15550000000' },
      { _: 'user', id: 123456789, accessHash: Long.fromNumber(-9), firstName: 'Client', lastName: 'Ünïcode ✓', username: 'client' },
      { _: 'userEmpty', id: 55 },
    ];
    const chats: tl.TypeChat[] = [
      { _: 'chat', id: 4001, title: 'Deal desk', photo: { _: 'chatPhotoEmpty' }, participantsCount: 3, date: 1_700_000_000, version: 1 },
      { _: 'channel', id: 1_500_000_001, megagroup: true, accessHash: Long.fromNumber(9), title: 'Floor', photo: { _: 'chatPhotoEmpty' }, date: 1_700_000_000 },
    ];
    const peers = PeersIndex.from({ users, chats });
    const updates: tl.TypeUpdate[] = [
      update,
      { _: 'updateNewChannelMessage', message: { _: 'message', id: 7, peerId: { _: 'peerChannel', channelId: 1_500_000_001 }, fromId: { _: 'peerUser', userId: 123456789 }, date: 1_700_000_001, message: 'x' }, pts: 3, ptsCount: 1 },
      { _: 'updateNewMessage', message: { _: 'message', id: 8, peerId: { _: 'peerChat', chatId: 4001 }, fromId: { _: 'peerUser', userId: 55 }, date: 1_700_000_002, message: '' }, pts: 4, ptsCount: 1 },
      { _: 'updateDeleteMessages', messages: [1, 2, 3], pts: 5, ptsCount: 3 },
      { _: 'updateUserTyping', userId: 123456789, action: { _: 'sendMessageTypingAction' } },
    ];
    for (const item of updates) {
      // Every combination of what the container can hold, empty vectors included.
      for (const [someUsers, someChats] of [[[], []], [users, []], [[], chats], [users, chats]] as const) {
        const cache = new WeakMap<object, Uint8Array>();
        const expected = encodeTl({ _: 'updates', updates: [item], users: [...someUsers], chats: [...someChats], date: 0, seq: 0 });
        expect(encodeUpdatesContainer(item, someUsers, someChats, cache)).toEqual(expected);
        expect(encodeUpdatesContainer(item, someUsers, someChats, cache)).toEqual(expected); // from the cache
      }
      expect(updateEvidence(item, peers, 1)).toEqual(updateEvidenceByMtcute(item, peers));
    }
  });

  it('puts in an update’s evidence the custodian and exactly the users and chats it names, in the order it names them', () => {
    const user = (id: number): tl.TypeUser => ({ _: 'user', id, accessHash: Long.fromNumber(id), firstName: `User ${id}` });
    const channel = (id: number): tl.TypeChat => ({ _: 'channel', id, accessHash: Long.fromNumber(id), title: `Channel ${id}`, photo: { _: 'chatPhotoEmpty' }, date: 1_700_000_000 });
    const peers = PeersIndex.from({
      users: [user(1), user(55), user(77), user(88), user(99), user(123456789)],
      chats: [{ _: 'chat', id: 4001, title: 'Deal desk', photo: { _: 'chatPhotoEmpty' }, participantsCount: 3, date: 1_700_000_000, version: 1 }, channel(1_500_000_001), channel(1_500_000_002), channel(1_500_000_003)],
    });
    const idsOf = (item: tl.TypeUpdate, selfId: number): [number[], number[]] => {
      const container = decodeTl(updateEvidence(item, peers, selfId)) as tl.RawUpdates;
      expect(container.updates.map((one) => encodeTl(one))).toEqual([encodeTl(item)]);
      return [container.users.map((one) => one.id), container.chats.map((one) => one.id)];
    };
    const created: tl.TypeUpdate = {
      _: 'updateNewMessage',
      message: { _: 'messageService', id: 9, peerId: { _: 'peerChat', chatId: 4001 }, fromId: { _: 'peerUser', userId: 123456789 }, date: 1_700_000_000, action: { _: 'messageActionChatCreate', title: 't', users: [55, 123456789, 404] } },
      pts: 1,
      ptsCount: 1,
    };
    expect(idsOf(created, 1)).toEqual([[1, 123456789, 55], [4001]]);
    expect(idsOf(created, 404)).toEqual([[123456789, 55], [4001]]); // a custodian not in the answer is not invented
    const forwarded: tl.TypeUpdate = {
      _: 'updateNewChannelMessage',
      message: {
        _: 'message',
        id: 7,
        peerId: { _: 'peerChannel', channelId: 1_500_000_001 },
        fromId: { _: 'peerUser', userId: 99 },
        fwdFrom: { _: 'messageFwdHeader', fromId: { _: 'peerChannel', channelId: 1_500_000_002 }, date: 1_699_000_000 },
        viaBotId: 88,
        replyTo: { _: 'messageReplyHeader', replyToMsgId: 3, replyToPeerId: { _: 'peerChannel', channelId: 1_500_000_003 } },
        date: 1_700_000_001,
        message: 'fwd',
        entities: [{ _: 'messageEntityMentionName', offset: 0, length: 3, userId: 77 }],
        reactions: { _: 'messageReactions', results: [], recentReactions: [{ _: 'messagePeerReaction', peerId: { _: 'peerUser', userId: 55 }, date: 1_700_000_002, reaction: { _: 'reactionEmoji', emoticon: '👍' } }] },
      },
      pts: 2,
      ptsCount: 1,
    };
    expect(idsOf(forwarded, 1)).toEqual([[1, 99, 88, 77, 55], [1_500_000_001, 1_500_000_002, 1_500_000_003]]);
    // Ids under other names (message ids, pts, dates) are not peers, even when a peer has the same number.
    expect(idsOf({ _: 'updateDeleteMessages', messages: [55, 77], pts: 88, ptsCount: 99 }, 1)).toEqual([[1], []]);
    expect(idsOf({ _: 'updateDeleteChannelMessages', channelId: 1_500_000_002, messages: [4001], pts: 3, ptsCount: 1 }, 1)).toEqual([[1], [1_500_000_002]]);
  });

  it('rejects truncated, misaligned, trailing-garbage and oversized input with a typed error', () => {
    const bytes = encodeTl(update);
    expectDecodeError(bytes.subarray(0, bytes.length - 4), 'TELEGRAM_TL_MALFORMED');
    expectDecodeError(bytes.subarray(0, 3), 'TELEGRAM_TL_MALFORMED');
    expectDecodeError(new Uint8Array(0), 'TELEGRAM_TL_MALFORMED');
    expectDecodeError(new Uint8Array([...bytes, 1, 2, 3, 4]), 'TELEGRAM_TL_MALFORMED');
    expectDecodeError(new Uint8Array([...bytes, 1]), 'TELEGRAM_TL_MALFORMED');
    expectDecodeError(new Uint8Array(MAX_TL_BYTES + 4), 'TELEGRAM_TL_MALFORMED');
  });

  it('rejects a vector that claims two billion elements without allocating them', () => {
    // updateDeleteMessages: constructor, vector constructor, count = 0x7fffffff, then nothing.
    const bytes = encodeTl({ _: 'updateDeleteMessages', messages: [1], pts: 1, ptsCount: 1 });
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    view.setInt32(8, 0x7fffffff, true);
    expectDecodeError(bytes, 'TELEGRAM_TL_MALFORMED');
  });

  it('names an unknown constructor and keeps its bytes as an unsupported record', () => {
    const bytes = new Uint8Array([0xef, 0xbe, 0xad, 0xde, 0, 0, 0, 0]);
    expectDecodeError(bytes, 'TELEGRAM_TL_UNKNOWN_CONSTRUCTOR');
    const [input] = mapTelegramRaw(bytes, env);
    expect(input).toMatchObject({ kind: 'unsupported', problem: { reason: 'unknown-constructor', detail: `constructor 0xdeadbeef is not in layer ${TL_LAYER}` }, raw: { bytes, format: TL_RAW_FORMAT } });
  });

  it('keeps malformed bytes and non-update objects as unsupported records, never throwing', () => {
    const truncated = encodeTl(update).subarray(0, 40);
    expect(mapTelegramRaw(truncated, env)[0]).toMatchObject({ kind: 'unsupported', problem: { reason: 'malformed-tl' }, raw: { bytes: truncated } });
    const notAnUpdate = encodeTl({ _: 'peerUser', userId: 5 });
    expect(mapTelegramRaw(notAnUpdate, env)[0]).toMatchObject({ kind: 'unsupported', problem: { reason: 'not-an-update', detail: 'constructor peerUser' } });
  });

  it('survives random bytes: only typed errors, and every input maps to a record', () => {
    for (let i = 0; i < 300; i++) {
      const bytes = randomBytes(4 * (1 + (i % 64)));
      if (i % 3 === 0) bytes.set(encodeTl(update).subarray(0, 4)); // a real constructor, garbage after
      let caught: unknown;
      try {
        decodeTl(bytes);
      } catch (error) {
        caught = error;
      }
      if (caught !== undefined) expect(caught).toBeInstanceOf(TelegramDecodeError);
      expect(mapTelegramRaw(bytes, env).length).toBeGreaterThan(0);
    }
  });
});

/** The container `updateEvidence` must produce, built the plain way: decode its peers back and re-encode. */
function updateEvidenceByMtcute(item: tl.TypeUpdate, peers: PeersIndex): Uint8Array {
  const decoded = decodeTl(updateEvidence(item, peers, 1)) as tl.RawUpdates;
  return encodeTl({ _: 'updates', updates: [item], users: decoded.users, chats: decoded.chats, date: 0, seq: 0 });
}
