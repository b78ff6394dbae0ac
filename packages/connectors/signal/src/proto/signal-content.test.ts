import { describe, expect, it } from 'vitest';
import { addPadding, stripPadding } from './padding.ts';
import { serviceIdFromBinary, serviceIdToBinary } from './service-id.ts';
import { decodeContent, decodeEnvelope } from './signal-content.ts';
import { ProtoWriter } from './wire.ts';

const ACI = '3f17a2c4-9b1e-4c55-8d2a-0b6f5e4d3c21';
const PNI = 'PNI:12600000-aaaa-4bbb-8ccc-dddddddddddd';

describe('Signal service ids', () => {
  it('converts ACI and PNI between string and binary forms', () => {
    expect(serviceIdToBinary(ACI)).toHaveLength(16);
    expect(serviceIdToBinary(PNI)).toHaveLength(17);
    expect(serviceIdFromBinary(serviceIdToBinary(ACI), 'x')).toBe(ACI);
    expect(serviceIdFromBinary(serviceIdToBinary(PNI), 'x')).toBe(PNI);
    expect(() => serviceIdFromBinary(Uint8Array.of(1, 2, 3), 'x')).toThrow(/3 bytes/);
    expect(() => serviceIdFromBinary(Uint8Array.from([0x02, ...serviceIdToBinary(ACI)]), 'x')).toThrow();
  });
});

describe('Envelope', () => {
  it('reads the string and the binary forms of source, destination and server guid', () => {
    const guid = '0123abcd-0000-4000-8000-000000000001';
    const asString = new ProtoWriter().uint(1, 6).string(11, ACI.toUpperCase()).uint(7, 3).string(13, PNI).string(9, guid).uint(10, 1_700_000_000_000).finish();
    const asBinary = new ProtoWriter()
      .uint(1, 6)
      .bytes(19, serviceIdToBinary(ACI))
      .uint(7, 3)
      .bytes(20, serviceIdToBinary(PNI))
      .bytes(21, Buffer.from(guid.replaceAll('-', ''), 'hex'))
      .uint(10, 1_700_000_000_000)
      .finish();
    for (const bytes of [asString, asBinary]) {
      expect(decodeEnvelope(bytes)).toEqual({
        type: 6,
        sourceServiceId: ACI,
        sourceDevice: 3,
        destinationServiceId: PNI,
        serverGuid: guid,
        serverTimestamp: 1_700_000_000_000,
        urgent: true,
        story: false,
      });
    }
  });

  it('rejects a malformed binary service id', () => {
    expect(() => decodeEnvelope(new ProtoWriter().uint(1, 1).bytes(19, Uint8Array.of(1, 2)).finish())).toThrow(expect.objectContaining({ code: 'SIGNAL_PROTOBUF_INVALID' }));
  });
});

describe('Content', () => {
  it('decodes a data message with quote, reaction, delete, group, timer, mentions and attachment pointers', () => {
    const pointer = new ProtoWriter().fixed64(1, 12345678901234567890n).string(2, 'image/jpeg').bytes(3, new Uint8Array(64)).uint(4, 1000).bytes(6, new Uint8Array(32)).string(7, 'a.jpg').uint(14, 2);
    const dm = new ProtoWriter()
      .string(1, 'hello')
      .message(2, pointer)
      .message(15, new ProtoWriter().bytes(1, new Uint8Array(32)).uint(2, 4))
      .uint(4, 0)
      .uint(5, 3600)
      .uint(7, 1_700_000_000_001)
      .message(8, new ProtoWriter().uint(1, 1_700_000_000_000).string(5, ACI).string(3, 'quoted'))
      .message(16, new ProtoWriter().string(1, '👍').uint(5, 1_699_999_999_999).bytes(6, serviceIdToBinary(ACI)))
      .message(17, new ProtoWriter().uint(1, 1_699_999_999_998))
      .message(18, new ProtoWriter().uint(1, 0).uint(2, 1).string(3, ACI))
      .bytes(10, Uint8Array.of(1));
    const content = decodeContent(new ProtoWriter().message(1, dm).finish());
    const d = content.dataMessage;
    expect(d).toMatchObject({
      body: 'hello',
      groupRevision: 4,
      expireTimer: 3600,
      timestamp: 1_700_000_000_001,
      quote: { id: 1_700_000_000_000, authorAci: ACI, text: 'quoted' },
      reaction: { emoji: '👍', remove: false, targetAuthorAci: ACI, targetSentTimestamp: 1_699_999_999_999 },
      deleteTargetSentTimestamp: 1_699_999_999_998,
      mentions: [ACI],
    });
    expect(d?.attachments[0]).toMatchObject({ cdnId: '12345678901234567890', contentType: 'image/jpeg', size: 1000, fileName: 'a.jpg', cdnNumber: 2 });
    expect(d?.fields).toContain(10);
  });

  it('decodes sync transcripts with string and binary destinations, and edits', () => {
    const message = new ProtoWriter().string(1, 'mine').uint(7, 5);
    const withString = new ProtoWriter().message(2, new ProtoWriter().message(1, new ProtoWriter().string(7, ACI).uint(2, 5).message(3, message)));
    const withBinary = new ProtoWriter().message(2, new ProtoWriter().message(1, new ProtoWriter().bytes(12, serviceIdToBinary(ACI)).uint(2, 5).message(3, message)));
    for (const w of [withString, withBinary]) {
      expect(decodeContent(w.finish()).syncMessage?.sent).toMatchObject({ destinationServiceId: ACI, timestamp: 5, message: { body: 'mine' } });
    }
    const edit = decodeContent(new ProtoWriter().message(11, new ProtoWriter().uint(1, 5).message(2, new ProtoWriter().string(1, 'mine, edited').uint(7, 6))).finish());
    expect(edit.editMessage).toMatchObject({ targetSentTimestamp: 5, dataMessage: { body: 'mine, edited', timestamp: 6 } });
  });

  it('rejects hostile nested content (a truncated inner message)', () => {
    const inner = new ProtoWriter().string(1, 'x').finish().subarray(0, 2);
    expect(() => decodeContent(new ProtoWriter().bytes(1, inner).finish())).toThrow(expect.objectContaining({ code: 'SIGNAL_PROTOBUF_INVALID' }));
  });
});

describe('padding', () => {
  it('pads to one less than a multiple of 160 and strips back', () => {
    for (const length of [0, 1, 158, 159, 160, 1000]) {
      const content = new Uint8Array(length).fill(7);
      const padded = addPadding(content);
      expect((padded.length + 1) % 160).toBe(0);
      expect(stripPadding(padded)).toEqual(content);
    }
    expect([...stripPadding(Uint8Array.of(1, 0x80))]).toEqual([1]); // the mock's minimal padding
  });

  it('rejects plaintext without the 0x80 terminator', () => {
    for (const bad of [Uint8Array.of(), Uint8Array.of(0, 0), Uint8Array.of(1, 2, 3), Uint8Array.of(0x80, 1)]) {
      expect(() => stripPadding(bad)).toThrow(expect.objectContaining({ code: 'SIGNAL_PADDING_INVALID' }));
    }
  });
});
