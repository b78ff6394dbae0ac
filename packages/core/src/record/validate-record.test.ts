import { describe, expect, it } from 'vitest';
import { InvalidRecordError, RecordTooLargeError } from '../errors/record-errors.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { canonicalBytes } from '../json/canonical-json.ts';
import { decodeRecord, encodeRecord } from './encode-record.ts';
import type { ArchiveRecord, RecordKind } from './record.ts';
import { validateRecord } from './validate-record.ts';

const base = {
  v: 1,
  stream: 'whatsapp:alice',
  seq: 1,
  prev: ZERO_HASH,
  key: 'message:1',
  channel: 'whatsapp',
  account: 'alice',
  capturedAt: '2026-11-21T09:30:00.123Z',
  source: { package: '@offchannel/whatsapp', version: '0.1.0', upstream: '@whiskeysockets/baileys@7.0.0-rc14' },
} as const;
const context = {
  sentAt: '2026-11-21T09:29:59.000Z',
  conversation: { id: '15550100@s.whatsapp.net', type: 'direct', title: 'Bob' },
  sender: { id: '15550100@s.whatsapp.net', name: 'Bob', aliases: ['123456@lid'] },
  direction: 'inbound',
} as const;
const blob = { sha256: sha256Hex(new Uint8Array([1])), size: 1 };

const valid: Record<RecordKind, Record<string, unknown>> = {
  message: { ...base, kind: 'message', ...context, native: { id: 'ABC', chat: 'x' }, text: 'hello', attachments: [{ status: 'stored', ...blob, mime: 'image/jpeg', name: 'a.jpg' }, { status: 'unavailable', reason: 'view-once', mime: 'image/jpeg' }], raw: { ...blob, format: 'whatsapp.WebMessageInfo.proto' }, replyTo: { id: 'PREV' }, forwarded: true, mentions: ['1@s.whatsapp.net'], meta: { viewOnce: false, ephemeralSeconds: 86400, pushName: 'Bob' } },
  edit: { ...base, kind: 'edit', ...context, native: { id: 'EDIT1' }, target: { id: 'ABC' }, text: 'hello (edited)' },
  delete: { ...base, kind: 'delete', ...context, target: { id: 'ABC' }, deletion: { scope: 'everyone', admin: true } },
  reaction: { ...base, kind: 'reaction', ...context, target: { id: 'ABC' }, reaction: { value: '👍', action: 'add' } },
  receipt: { ...base, kind: 'receipt', ...context, target: { id: 'ABC' }, receipt: { status: 'read' } },
  membership: { ...base, kind: 'membership', sentAt: context.sentAt, conversation: { id: 'g@g.us', type: 'group' }, sender: context.sender, membership: { action: 'add', members: [{ id: 'carol' }] } },
  undecryptable: { ...base, kind: 'undecryptable', problem: { reason: 'no-session', detail: 'SessionError' }, raw: { ...blob, format: 'signal.Envelope.proto' } },
  unsupported: { ...base, kind: 'unsupported', problem: { reason: 'unknown-message-type' }, raw: { ...blob, format: 'x' } },
  gap: { ...base, kind: 'gap', gap: { reason: 'channel-too-long', from: '100', to: '250', missing: 150 } },
  system: { ...base, kind: 'system', system: { event: 'identity-key-changed', fields: { party: 'bob' } } },
  policy: { ...base, kind: 'policy', system: { event: 'retention', fields: { class: '17a-4(b)(4)', years: '3' } } },
};

function expectField(record: unknown, field: string): void {
  try {
    validateRecord(record);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidRecordError);
    expect((error as InvalidRecordError).field).toBe(field);
    expect((error as InvalidRecordError).code).toBe('INVALID_RECORD');
    expect((error as Error).message).toContain(field);
    return;
  }
  throw new Error(`expected an InvalidRecordError naming ${field}`);
}

describe('validateRecord', () => {
  it.each(Object.entries(valid))('accepts a valid %s record and round-trips it canonically', (_kind, record) => {
    expect(() => {
      validateRecord(record);
    }).not.toThrow();
    const encoded = encodeRecord(record as unknown as ArchiveRecord);
    const decoded = decodeRecord(encoded.bytes);
    expect(decoded.hash).toBe(encoded.hash);
    expect(decoded.record).toEqual(record);
  });

  it.each(['2024-02-29T00:00:00Z', '2000-02-29T23:59:59.999999999Z', '2026-12-31T23:59:59.5Z', '0001-01-01T00:00:00Z'])('accepts the real date and time %s', (sentAt) => {
    expect(() => {
      validateRecord({ ...valid.message, sentAt });
    }).not.toThrow();
  });

  it.each([
    ['v', { ...valid.message, v: 2 }, 'record.v'],
    ['kind', { ...valid.message, kind: 'chat' }, 'record.kind'],
    ['missing sender', { ...valid.message, sender: undefined }, 'record.sender'],
    ['unknown field', { ...valid.message, body: 'x' }, 'record.body'],
    ['field not allowed for kind', { ...valid.message, reaction: { value: 'x', action: 'add' } }, 'record.reaction'],
    ['edit without target', { ...valid.edit, target: undefined }, 'record.target'],
    ['stream', { ...valid.message, stream: 'whatsapp/alice' }, 'record.stream'],
    ['channel mismatch', { ...valid.message, channel: 'signal' }, 'record.channel'],
    ['account mismatch', { ...valid.message, account: 'bob' }, 'record.account'],
    ['seq zero', { ...valid.message, seq: 0 }, 'record.seq'],
    ['seq float', { ...valid.message, seq: 1.5 }, 'record.seq'],
    ['seq unsafe', { ...valid.message, seq: 2 ** 53 }, 'record.seq'],
    ['seq string', { ...valid.message, seq: '1' }, 'record.seq'],
    ['prev uppercase', { ...valid.message, prev: 'A'.repeat(64) }, 'record.prev'],
    ['capturedAt offset', { ...valid.message, capturedAt: '2026-11-21T09:30:00+01:00' }, 'record.capturedAt'],
    ['sentAt impossible date', { ...valid.message, sentAt: '2026-02-30T00:00:00Z' }, 'record.sentAt'],
    ['sentAt hour 24', { ...valid.message, sentAt: '2026-02-01T24:00:00Z' }, 'record.sentAt'],
    ['sentAt minute 60', { ...valid.message, sentAt: '2026-02-01T23:60:00Z' }, 'record.sentAt'],
    ['sentAt second 60', { ...valid.message, sentAt: '2026-02-01T23:59:60Z' }, 'record.sentAt'],
    ['sentAt month 13', { ...valid.message, sentAt: '2026-13-01T00:00:00Z' }, 'record.sentAt'],
    ['sentAt month 00', { ...valid.message, sentAt: '2026-00-01T00:00:00Z' }, 'record.sentAt'],
    ['sentAt day 00', { ...valid.message, sentAt: '2026-01-00T00:00:00Z' }, 'record.sentAt'],
    ['sentAt April 31', { ...valid.message, sentAt: '2026-04-31T00:00:00Z' }, 'record.sentAt'],
    ['sentAt February 29 of a non-leap year', { ...valid.message, sentAt: '2100-02-29T00:00:00Z' }, 'record.sentAt'],
    ['sentAt ten fraction digits', { ...valid.message, sentAt: '2026-02-01T00:00:00.0000000000Z' }, 'record.sentAt'],
    ['conversation type', { ...valid.message, conversation: { id: 'x', type: 'dm' } }, 'record.conversation.type'],
    ['empty sender id', { ...valid.message, sender: { id: '' } }, 'record.sender.id'],
    ['alias not string', { ...valid.message, sender: { id: 'x', aliases: [5] } }, 'record.sender.aliases[0]'],
    ['direction', { ...valid.message, direction: 'sideways' }, 'record.direction'],
    ['native scope name', { ...valid.message, native: { id: 'x', 'bad name': 'y' } }, 'record.native.<unprintable name>'],
    ['native scope digit', { ...valid.message, native: { id: 'x', '9chat': 'y' } }, 'record.native.9chat'],
    ['native value', { ...valid.message, native: { id: 'x', chat: 1 } }, 'record.native.chat'],
    ['text not string', { ...valid.message, text: 5 }, 'record.text'],
    ['text lone surrogate', { ...valid.message, text: 'a\ud800' }, 'record.text'],
    ['text and textBlob', { ...valid.message, textBlob: blob }, 'record.textBlob'],
    ['message without content', { ...valid.message, text: undefined, attachments: undefined }, 'record.text'],
    ['attachment status', { ...valid.message, attachments: [{ status: 'maybe' }] }, 'record.attachments[0].status'],
    ['attachment hash', { ...valid.message, attachments: [{ status: 'stored', sha256: 'x', size: 1, mime: 'a/b' }] }, 'record.attachments[0].sha256'],
    ['attachment size float', { ...valid.message, attachments: [{ status: 'stored', ...blob, size: 1.5, mime: 'a/b' }] }, 'record.attachments[0].size'],
    ['attachment extra', { ...valid.message, attachments: [{ status: 'stored', ...blob, mime: 'a/b', url: 'http://x' }] }, 'record.attachments[0].url'],
    ['empty attachments', { ...valid.message, attachments: [] }, 'record.attachments'],
    ['forwarded false', { ...valid.message, forwarded: false }, 'record.forwarded'],
    ['raw format', { ...valid.message, raw: { ...blob } }, 'record.raw.format'],
    ['meta float', { ...valid.message, meta: { amount: 1.25 } }, 'record.meta.amount'],
    ['meta object', { ...valid.message, meta: { nested: {} } }, 'record.meta.nested'],
    ['meta name', { ...valid.message, meta: { '1x': 'y' } }, 'record.meta.1x'],
    ['reaction action', { ...valid.reaction, reaction: { value: 'x', action: 'toggle' } }, 'record.reaction.action'],
    ['deletion scope', { ...valid.delete, deletion: { scope: 'them' } }, 'record.deletion.scope'],
    ['receipt status', { ...valid.receipt, receipt: { status: 'seen' } }, 'record.receipt.status'],
    ['membership action', { ...valid.membership, membership: { action: 'kick' } }, 'record.membership.action'],
    ['undecryptable without raw', { ...valid.undecryptable, raw: undefined }, 'record.raw'],
    ['gap missing negative', { ...valid.gap, gap: { reason: 'x', missing: -1 } }, 'record.gap.missing'],
    ['source missing version', { ...valid.message, source: { package: 'x' } }, 'record.source.version'],
    ['hostile field name', { ...valid.message, 'text<script>': 1 }, 'record.<unprintable name>'],
    ['too long id', { ...valid.message, native: { id: 'x'.repeat(1025) } }, 'record.native.id'],
  ])('rejects %s, naming the field', (_name, record, field) => {
    expectField(record, field);
  });

  it('rejects non-objects and class instances', () => {
    expectField(null, 'record');
    expectField([], 'record');
    expectField(new Date(), 'record');
    expectField({ ...valid.message, conversation: new Map() }, 'record.conversation');
  });

  // Party and native members are checked without building their path first; the error must be
  // the one shortString gives, naming the member, for every way a short string can be wrong.
  it.each([
    [undefined, 'must be a string (got a undefined)'],
    [5, 'must be a string (got a number)'],
    [null, 'must be a string (got null)'],
    [{ id: 'x' }, 'must be a string (got an object)'],
    ['', 'must not be empty'],
    ['x'.repeat(1025), 'must be at most 1024 characters'],
    ['a\ud800', 'must be well-formed Unicode (no lone surrogates)'],
    ['\udc00b', 'must be well-formed Unicode (no lone surrogates)'],
  ])('rejects the party or native member %j with its path and problem', (value, problem) => {
    const cases: [unknown, string][] = [
      [{ ...valid.message, sender: { id: value } }, 'record.sender.id'],
      [{ ...valid.message, sender: { id: 'x', name: value } }, 'record.sender.name'],
      [{ ...valid.message, native: { id: value } }, 'record.native.id'],
      [{ ...valid.message, native: { id: 'x', chat: value } }, 'record.native.chat'],
      [{ ...valid.edit, target: { id: 'x', participant: value } }, 'record.target.participant'],
      [{ ...valid.message, replyTo: { id: value } }, 'record.replyTo.id'],
    ];
    for (const [record, field] of cases) {
      // An absent name is allowed (it is optional).
      if (value === undefined && field === 'record.sender.name') continue;
      expectField(record, field);
      expect(() => {
        validateRecord(record);
      }).toThrow(`${field} ${problem}.`);
    }
  });

  it('accepts a zero prev and 1,024-character members, and rejects a prev one character off', () => {
    expect(() => {
      validateRecord({ ...valid.message, prev: ZERO_HASH, sender: { id: 'x'.repeat(1024), name: 'ж' }, native: { id: 'x', chat: 'x'.repeat(1024) } });
    }).not.toThrow();
    for (const prev of [ZERO_HASH.slice(1), `${ZERO_HASH}0`, `${ZERO_HASH.slice(1)}g`, `${ZERO_HASH.slice(1)}A`, 0]) expectField({ ...valid.message, prev }, 'record.prev');
  });

  it('never echoes field values in errors', () => {
    const secret = 'CONFIDENTIAL-DEAL-TERMS';
    for (const record of [
      { ...valid.message, text: 5, sender: { id: secret } },
      { ...valid.message, direction: secret },
      { ...valid.message, meta: { note: { secret } } },
      { ...valid.message, sentAt: secret },
    ]) {
      try {
        validateRecord(record);
      } catch (error) {
        expect((error as Error).message).not.toContain(secret);
      }
    }
  });

  it('refuses records over 65,535 canonical bytes', () => {
    const big = { ...valid.message, text: 'x'.repeat(70_000) } as unknown as ArchiveRecord;
    expect(() => encodeRecord(big)).toThrow(RecordTooLargeError);
    const bytes = canonicalBytes(big);
    expect(() => decodeRecord(bytes)).toThrow(RecordTooLargeError);
  });

  it('decodeRecord refuses non-canonical bytes of a valid record', () => {
    const text = JSON.stringify(valid.message, null, 1);
    expect(() => decodeRecord(new TextEncoder().encode(text))).toThrow(/canonical/);
  });
});

describe('validateRecord, record after record', () => {
  it('checks each record\'s stream, channel, account and times, whatever the records before it held', () => {
    const ok = valid.message;
    const problems: [Record<string, unknown>, string][] = [
      [{ ...ok, channel: 'signal' }, 'record.channel'],
      [{ ...ok, account: 'bob' }, 'record.account'],
      [{ ...ok, stream: 'whatsapp:../alice' }, 'record.stream'],
      [{ ...ok, stream: 'whatsapp:bob' }, 'record.account'],
      [{ ...ok, stream: 42 }, 'record.stream'],
      [{ ...ok, capturedAt: '2026-11-21T09:30:00.123' }, 'record.capturedAt'],
      [{ ...ok, capturedAt: '2026-02-30T09:30:00.123Z' }, 'record.capturedAt'],
      [{ ...ok, sentAt: '2026-11-21T24:29:59.000Z' }, 'record.sentAt'],
      [{ ...ok, sentAt: 1 }, 'record.sentAt'],
    ];
    for (const [record, field] of problems) {
      // The same valid record just before: its stream and times were found valid a moment ago.
      validateRecord({ ...ok, capturedAt: ['2026-11-21T09:30:00.12', '3Z'].join('') });
      expect(() => {
        validateRecord(record);
      }).toThrow(expect.objectContaining({ field }) as Error);
      validateRecord(ok);
    }
    validateRecord({ ...ok, stream: 'signal:bob', channel: 'signal', account: 'bob' });
    expect(() => {
      validateRecord(ok);
    }).not.toThrow();
  });
});

describe('validateRecord, re-entered', () => {
  it('compares channel and account with the record\'s own stream even when a getter validates another record first', () => {
    validateRecord(valid.message);
    const other = { ...valid.message, stream: 'signal:bob', channel: 'signal', account: 'bob' };
    const record = { ...valid.message };
    Object.defineProperty(record, 'channel', {
      enumerable: true,
      get: () => {
        validateRecord(other);
        return 'signal';
      },
    });
    expect(() => {
      validateRecord(record);
    }).toThrow(expect.objectContaining({ field: 'record.channel' }) as Error);
  });
});
