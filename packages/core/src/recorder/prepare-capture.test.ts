import { describe, expect, it } from 'vitest';
import { InvalidRecordError } from '../errors/record-errors.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { canonicalize } from '../json/canonical-json.ts';
import { TEXT_INLINE_MAX_BYTES } from '../record/record.ts';
import { prepareCapture } from './prepare-capture.ts';

const names = { stream: 'whatsapp:alice', channel: 'whatsapp', account: 'alice' };
const source = { package: '@offchannel/test', version: '1.0.0' };
const input = {
  kind: 'message',
  sentAt: '2026-11-21T09:30:00.000Z',
  conversation: { id: 'chat-1', type: 'direct' },
  sender: { id: 'party-1' },
  direction: 'inbound',
  native: { id: 'm-1', chat: 'chat-1' },
  text: 'hello',
} as const;

describe('prepareCapture', () => {
  it('makes the template whose canonical text is the record with placeholder sequencing fields', () => {
    const { key, template } = prepareCapture(input, names, source);
    expect(key).toBe('message:{"chat":"chat-1","id":"m-1"}');
    // Written out by hand: the placeholders are as long as the longest real values.
    expect(canonicalize(template)).toBe(
      '{"account":"alice","capturedAt":"2000-01-01T00:00:00.000Z","channel":"whatsapp",' +
        '"conversation":{"id":"chat-1","type":"direct"},"direction":"inbound",' +
        '"key":"message:{\\"chat\\":\\"chat-1\\",\\"id\\":\\"m-1\\"}","kind":"message",' +
        '"native":{"chat":"chat-1","id":"m-1"},' +
        `"prev":"${ZERO_HASH}","sender":{"id":"party-1"},"sentAt":"2026-11-21T09:30:00.000Z","seq":9007199254740991,` +
        '"source":{"package":"@offchannel/test","version":"1.0.0"},"stream":"whatsapp:alice","text":"hello","v":1}',
    );
  });

  it('moves a long well-formed text to a blob, and rejects a long one with a lone surrogate as text', () => {
    const long = 'ж'.repeat(TEXT_INLINE_MAX_BYTES / 2 + 1); // two UTF-8 bytes each: just over the limit
    const moved = prepareCapture({ ...input, text: long }, names, source);
    expect(moved.template.text).toBeUndefined();
    expect(moved.template.textBlob).toEqual({ sha256: sha256Hex(Buffer.from(long, 'utf8')), size: Buffer.byteLength(long) });
    for (const text of [`${long}\ud800`, `\udc00${long}`]) {
      expect(() => prepareCapture({ ...input, text }, names, source)).toThrow(InvalidRecordError);
      try {
        prepareCapture({ ...input, text }, names, source);
      } catch (error) {
        expect((error as InvalidRecordError).field).toBe('record.text');
      }
    }
    // Short texts stay inline, whatever they hold (a lone surrogate is rejected as text too).
    expect(prepareCapture({ ...input, text: 'ж'.repeat(100) }, names, source).template.text).toBe('ж'.repeat(100));
    expect(() => prepareCapture({ ...input, text: 'a\ud800' }, names, source)).toThrow(/record\.text must be well-formed Unicode/);
  });

  it('refuses the sequencing fields from a connector', () => {
    for (const field of ['seq', 'prev', 'capturedAt']) {
      expect(() => prepareCapture({ ...input, [field]: 1 }, names, source)).toThrow(new RegExp(`input\\.${field} is assigned by the recorder`));
    }
  });
});
