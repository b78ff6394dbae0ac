import { describe, expect, it } from 'vitest';
import { appleDateToIso, appleSecondsToIso, unixMsToAppleNs } from './apple-time.ts';
import { encodeBplist } from './bplist/bplist-writer.ts';
import type { RowBundle, SqlRow } from './chat-db/chat-db.ts';
import { keys, mapNewChat, mapNewRow, mapRowChanges, parseAssociatedGuid, type MapContext } from './map-chat-db-row.ts';
import { encodeAttributedBody } from './typedstream/typedstream-writer.ts';

const GUID = '6A1D4C2E-0B2F-4D7B-9F3A-2C1E5D6F7A8B';
const DATE = 785_000_000_000_000_000n; // 2025-11-16T15:33:20Z in chat.db nanoseconds
const context: MapContext = { self: 'alice@firm.example', files: new Map() };
const handle: SqlRow = { ROWID: 3n, id: '+15550100', service: 'iMessage', uncanonicalized_id: '(555) 0100' };
const dm: SqlRow = { ROWID: 1n, guid: 'iMessage;-;+15550100', style: 45n, display_name: '' };
const group: SqlRow = { ROWID: 2n, guid: 'iMessage;+;chat42', style: 43n, display_name: 'Rates desk', service_name: 'iMessage' };

function bundle(message: Record<string, SqlRow[string]>, extra: Partial<RowBundle> = {}): RowBundle {
  return { message: { ROWID: 10n, guid: GUID, text: null, attributedBody: null, service: 'iMessage', date: DATE, is_from_me: 0n, handle_id: 3n, item_type: 0n, associated_message_type: 0n, ...message }, handle, chat: dm, attachments: [], ...extra };
}

describe('mapNewRow', () => {
  it('maps an incoming message: text column, sender, conversation, nanosecond time, raw row', () => {
    const input = mapNewRow(bundle({ text: 'hello', attributedBody: encodeAttributedBody('hello') }), context);
    expect(input).toMatchObject({ kind: 'message', key: `row:${GUID}`, native: { id: GUID }, text: 'hello', direction: 'inbound', sentAt: '2025-11-16T15:33:20.000000000Z', sender: { id: '+15550100', aliases: ['(555) 0100'] }, conversation: { id: 'iMessage;-;+15550100', type: 'direct' } });
    const raw = JSON.parse(new TextDecoder().decode((input.raw as { bytes: Uint8Array }).bytes)) as { message: Record<string, unknown> };
    expect(raw.message['date']).toEqual({ int: '785000000000000000' });
    expect(raw.message['attributedBody']).toEqual({ base64: Buffer.from(encodeAttributedBody('hello')).toString('base64') });
  });

  it('decodes attributedBody when text is NULL and keeps mentions and links', () => {
    const body = encodeAttributedBody('hi @Bob see https://x.example', {
      runs: [
        { length: 3, attributes: { __kIMMessagePartAttributeName: 0 } },
        { length: 4, attributes: { __kIMMessagePartAttributeName: 0, __kIMMentionConfirmedMention: 'bob@client.example' } },
        { length: 5, attributes: { __kIMMessagePartAttributeName: 0 } },
        { length: 17, attributes: { __kIMMessagePartAttributeName: 0, __kIMLinkAttributeName: { url: 'https://x.example' } } },
      ],
    });
    expect(mapNewRow(bundle({ attributedBody: body, is_from_me: 1n }), context)).toMatchObject({ text: 'hi @Bob see https://x.example', mentions: ['bob@client.example'], direction: 'outbound', sender: { id: 'alice@firm.example' }, meta: { 'imessage.links': 'https://x.example' } });
  });

  it('decodes attributedBody when text is the empty string (as real macOS rows hold it)', () => {
    const body = encodeAttributedBody('only in the body @Bob', {
      runs: [
        { length: 17, attributes: { __kIMMessagePartAttributeName: 0 } },
        { length: 4, attributes: { __kIMMessagePartAttributeName: 0, __kIMMentionConfirmedMention: 'bob@client.example' } },
      ],
    });
    expect(mapNewRow(bundle({ text: '', attributedBody: body }), context)).toMatchObject({ kind: 'message', text: 'only in the body @Bob', mentions: ['bob@client.example'] });
    const edited = mapRowChanges(bundle({ text: '', attributedBody: encodeAttributedBody('edited, body only'), date_edited: DATE + 1n }), context);
    expect(edited).toMatchObject([{ kind: 'edit', key: `edit:${GUID}:at:${DATE + 1n}`, text: 'edited, body only' }]);
    // An empty text column never stands in for a body that could not be read.
    expect(mapNewRow(bundle({ text: '', attributedBody: Uint8Array.from([4, 11, 1, 2]) }), context)).toMatchObject({ kind: 'unsupported', problem: { reason: 'attributed-body-undecodable', detail: 'TYPEDSTREAM_TRUNCATED' } });
    expect(mapNewRow(bundle({ text: 'column wins', attributedBody: encodeAttributedBody('body') }), context).text).toBe('column wins');
  });

  it('keeps attachments with an undecodable body, and records the body error', () => {
    const input = mapNewRow(bundle({ attributedBody: Uint8Array.from([4, 11, 1, 2]) }, { attachments: [{ guid: 'AT1', mime_type: 'image/heic', transfer_name: 'IMG.HEIC' }] }), context);
    expect(input).toMatchObject({ kind: 'message', attachments: [{ status: 'unavailable', reason: 'not-read', mime: 'image/heic', name: 'IMG.HEIC' }], meta: { 'imessage.bodyError': 'TYPEDSTREAM_TRUNCATED' } });
    expect(input.text).toBeUndefined();
  });

  it('records rows with nothing to show as unsupported or, when unsent first, as a gap', () => {
    expect(mapNewRow(bundle({ balloon_bundle_id: 'com.apple.messages.URLBalloonProvider' }), context)).toMatchObject({ kind: 'unsupported', problem: { reason: 'no-content', detail: 'com.apple.messages.URLBalloonProvider' } });
    expect(mapNewRow(bundle({ date_edited: DATE, message_summary_info: encodeBplist({ rp: [0], otr: { 0: { lo: 0, le: 3 } } }) }), context)).toMatchObject({ kind: 'gap', gap: { reason: 'unsent-before-capture' } });
  });

  it('maps tapbacks 2000–2007 / 3000–3007 to reactions on the target part', () => {
    expect(mapNewRow(bundle({ associated_message_type: 2003n, associated_message_guid: `p:1/${GUID.replace('6A', '7B')}` }), context)).toMatchObject({ kind: 'reaction', target: { id: GUID.replace('6A', '7B') }, reaction: { value: 'laugh', action: 'add' }, meta: { 'imessage.part': 1, 'imessage.tapback': 2003 } });
    expect(mapNewRow(bundle({ associated_message_type: 3006n, associated_message_guid: `bp:${GUID}`, associated_message_emoji: '🔥' }), context)).toMatchObject({ reaction: { value: '🔥', action: 'remove' } });
    expect(parseAssociatedGuid(GUID)).toEqual({ guid: GUID });
    expect(parseAssociatedGuid(undefined)).toEqual({ guid: 'unknown' });
  });

  it('maps group events to membership records', () => {
    const other = { ROWID: 4n, id: 'bob@client.example', service: 'iMessage' };
    const as = (itemType: bigint, action: bigint, extra: Record<string, SqlRow[string]> = {}) => mapNewRow(bundle({ item_type: itemType, group_action_type: action, other_handle: 4n, ...extra }, { chat: group, otherHandle: other }), context).membership;
    expect(as(1n, 0n)).toEqual({ action: 'add', members: [{ id: 'bob@client.example' }] });
    expect(as(1n, 1n)).toEqual({ action: 'remove', members: [{ id: 'bob@client.example' }] });
    expect(as(2n, 0n, { group_title: 'Rates EU' })).toEqual({ action: 'title', value: 'Rates EU' });
    expect(as(3n, 0n)).toEqual({ action: 'leave' });
    expect(as(3n, 1n)).toEqual({ action: 'settings', value: 'icon-changed' });
    expect(as(3n, 9n)).toEqual({ action: 'other', value: 'group-action-9' });
    expect(mapNewRow(bundle({ item_type: 4n }), context)).toMatchObject({ kind: 'system', system: { event: 'imessage-item', fields: { itemType: '4' } } });
  });

  it('cuts over-long names to 1,024 characters without splitting a surrogate pair', () => {
    const title = `${'x'.repeat(1023)}👍 and more`;
    const input = mapNewRow(bundle({ item_type: 2n, group_title: title }, { chat: { ...group, display_name: title } }), context);
    for (const value of [input.membership?.value, input.conversation?.title]) {
      expect(value).toHaveLength(1024);
      expect(value?.isWellFormed()).toBe(true);
    }
  });

  it('records the service and reply target', () => {
    expect(mapNewRow(bundle({ text: 'sms', service: 'SMS', was_downgraded: 1n, thread_originator_guid: 'T-1', thread_originator_part: '0:0:3' }), context)).toMatchObject({ replyTo: { id: 'T-1' }, meta: { 'imessage.service': 'SMS', 'imessage.downgraded': true, 'imessage.replyToPart': '0:0:3' } });
  });
});

describe('mapRowChanges', () => {
  const history = encodeBplist({ ec: { 0: [{ d: 785000000, t: encodeAttributedBody('v0') }, { d: 785000010.5, t: encodeAttributedBody('v1') }, { d: 785000020, t: encodeAttributedBody('v2') }] }, ep: [0], otr: { 0: { lo: 0, le: 2 } } });

  it('turns each later version in ec into an edit with its own key and time', () => {
    const edits = mapRowChanges(bundle({ attributedBody: encodeAttributedBody('v2'), date_edited: DATE + 20n, message_summary_info: history }), context);
    expect(edits.map((e) => [e.kind, e.key, e.text, e.sentAt])).toEqual([
      ['edit', keys.edit(GUID, 0, 1), 'v1', '2025-11-16T15:33:30.500000000Z'],
      ['edit', keys.edit(GUID, 0, 2), 'v2', '2025-11-16T15:33:40.000000000Z'],
    ]);
  });

  it('turns retracted parts and legacy date_retracted into deletes for everyone', () => {
    expect(mapRowChanges(bundle({ date_edited: DATE + 5n, message_summary_info: encodeBplist({ rp: [0, 1] }) }), context).map((d) => [d.kind, d.key, d.deletion])).toEqual([
      ['delete', keys.unsend(GUID, 0), { scope: 'everyone' }],
      ['delete', keys.unsend(GUID, 1), { scope: 'everyone' }],
    ]);
    expect(mapRowChanges(bundle({ date_retracted: DATE + 5n }), context)).toMatchObject([{ kind: 'delete', key: keys.unsend(GUID, 'all') }]);
  });

  it('records delivered and read receipts for outgoing direct messages only', () => {
    const sent = { is_from_me: 1n, date_delivered: DATE + 1n, date_read: DATE + 2n };
    expect(mapRowChanges(bundle(sent), context).map((r) => [r.kind, r.receipt, r.sender])).toEqual([
      ['receipt', { status: 'delivered' }, { id: '+15550100', aliases: ['(555) 0100'] }],
      ['receipt', { status: 'read' }, { id: '+15550100', aliases: ['(555) 0100'] }],
    ]);
    expect(mapRowChanges(bundle(sent, { chat: group }), context)).toEqual([]);
    expect(mapRowChanges(bundle({ ...sent, associated_message_type: 2000n }), context)).toEqual([]);
  });

  it('records an undecodable summary as unsupported, and the edited row as it now reads', () => {
    const changes = mapRowChanges(bundle({ text: 'now', date_edited: DATE, message_summary_info: Uint8Array.from([1, 2, 3]) }), context);
    expect(changes).toMatchObject([
      { kind: 'unsupported', problem: { reason: 'summary-info-undecodable', detail: 'BPLIST_INVALID' } },
      { kind: 'edit', key: keys.edit(GUID, 'at', String(DATE)), text: 'now' },
    ]);
  });
});

describe('hostile rows', () => {
  it('maps rows with any column holding any kind of value without throwing (deterministic fuzz)', () => {
    let seed = 20261206;
    const next = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T,>(values: readonly T[]): T => values[Math.floor(next() * values.length)] as T;
    const real = (value: number): Uint8Array => {
      const bytes = Buffer.from(encodeBplist({ ec: { 0: [{ d: 1, t: encodeAttributedBody('a') }, { d: 1.25, t: encodeAttributedBody('b') }] }, rp: [0] }));
      const marker = Buffer.alloc(8);
      marker.writeDoubleBE(1.25);
      bytes.writeDoubleBE(value, bytes.indexOf(marker));
      return bytes;
    };
    const values: readonly SqlRow[string][] = [
      null, '', 'x', 'p:1/G', 'p:99999999999999999999/G', 'bp:', 0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2000n, 3006n, 43n,
      1.5, Number.NaN, Number.POSITIVE_INFINITY, 1e300, -0, Uint8Array.from([1, 2]), encodeAttributedBody('hi'),
      encodeBplist({ rp: [0] }), encodeBplist({ otr: { 99999999: {} } }), encodeBplist({ ec: { 0: [{ d: 1.5, t: 'str', bcg: 5 }] }, rp: ['1'] }),
      real(1e20), real(-1e20), real(Number.NaN), real(Number.MAX_VALUE),
    ];
    const columns = ['text', 'attributedBody', 'date', 'date_edited', 'date_retracted', 'date_delivered', 'date_read', 'message_summary_info', 'associated_message_type', 'associated_message_guid', 'associated_message_emoji', 'item_type', 'group_action_type', 'group_title', 'is_from_me', 'thread_originator_guid', 'thread_originator_part', 'balloon_bundle_id', 'service', 'account', 'subject', 'guid', 'ROWID', 'was_downgraded', 'is_spam', 'expressive_send_style_id', 'destination_caller_id'];
    for (let i = 0; i < 1500; i++) {
      const message: Record<string, SqlRow[string]> = {};
      for (const column of columns) if (next() < 0.5) message[column] = pick(values);
      const rows: RowBundle = {
        message,
        ...(next() < 0.5 ? { handle: { ROWID: 1n, id: pick(values), uncanonicalized_id: pick(values) } } : {}),
        ...(next() < 0.5 ? { chat: { ROWID: 1n, guid: pick(values), style: pick(values), display_name: pick(values) } } : {}),
        ...(next() < 0.2 ? { otherHandle: { id: pick(values) } } : {}),
        attachments: next() < 0.3 ? [{ guid: pick(values), mime_type: pick(values), transfer_name: pick(values) }] : [],
      };
      expect(() => mapNewRow(rows, context), `row ${i}`).not.toThrow();
      expect(() => mapRowChanges(rows, context), `row ${i}`).not.toThrow();
    }
  }, 60_000);
});

describe('mapNewChat and dates', () => {
  it('records a new group with its members and name', () => {
    const input = mapNewChat(group, [handle], new Date('2026-01-01T00:00:00Z'));
    expect(input).toMatchObject({ kind: 'membership', key: 'chat:iMessage;+;chat42', conversation: { id: 'iMessage;+;chat42', type: 'group', title: 'Rates desk' }, membership: { action: 'create', value: 'Rates desk', members: [{ id: '+15550100' }] } });
  });

  it('converts chat.db dates (nanoseconds, or seconds on old Macs) without losing precision', () => {
    expect(appleDateToIso(785_000_000_123_456_789n)).toBe('2025-11-16T15:33:20.123456789Z');
    expect(appleDateToIso(500_000_000n)).toBe('2016-11-05T00:53:20.000000000Z');
    expect(appleDateToIso(0n)).toBeUndefined();
    expect(appleDateToIso(null)).toBeUndefined();
    expect(appleSecondsToIso(785000010.5)).toBe('2025-11-16T15:33:30.500000000Z');
    expect(unixMsToAppleNs(Date.UTC(2001, 0, 1, 0, 0, 1))).toBe(1_000_000_000n);
  });

  it('returns no time, never throws, for dates a hostile row or summary holds', () => {
    for (const seconds of [1e20, 1e303, Number.MAX_VALUE, 8.64e12, 252_423_993_600]) expect(appleSecondsToIso(seconds)).toBeUndefined();
    expect(appleSecondsToIso(252_423_993_599)).toBe('9999-12-31T23:59:59.000000000Z');
    expect(appleDateToIso(2n ** 63n - 1n)).toBe('2293-04-11T23:47:16.854775807Z');
    expect(appleDateToIso(2n ** 100n)).toBeUndefined();
    // An edit whose version date is absurd is still recorded, at the row's own time.
    const summary = Buffer.from(encodeBplist({ ec: { 0: [{ d: 785000000, t: encodeAttributedBody('first') }, { d: 1.25, t: encodeAttributedBody('second') }] } }));
    const real = Buffer.alloc(8);
    real.writeDoubleBE(1.25);
    summary.writeDoubleBE(1e20, summary.indexOf(real)); // our writer writes 1e20 as an integer; Messages writes a real
    expect(mapRowChanges(bundle({ message_summary_info: summary, date_edited: DATE }), context)).toMatchObject([{ kind: 'edit', text: 'second', sentAt: '2025-11-16T15:33:20.000000000Z' }]);
  });
});
