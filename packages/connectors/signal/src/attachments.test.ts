import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { createRecordingLogger } from '@offchannel/core/testing';
import { describe, expect, it } from 'vitest';
import { type AttachmentFetcher, MAX_ATTACHMENTS_PER_ENVELOPE, attachmentUrl, decryptAttachment, fetchAttachments, paddedAttachmentSize } from './attachments.ts';
import type { AttachmentPointer } from './proto/signal-content.ts';
import { SignalError } from './signal-error.ts';

/** Encrypts like a Signal sender: zero-pad to the size bucket, AES-256-CBC, HMAC, digest. */
function encrypt(plaintext: Uint8Array): { blob: Buffer; pointer: AttachmentPointer } {
  const key = randomBytes(64);
  const iv = randomBytes(16);
  const padded = Buffer.concat([plaintext, Buffer.alloc(paddedAttachmentSize(plaintext.length) - plaintext.length)]);
  const cipher = createCipheriv('aes-256-cbc', key.subarray(0, 32), iv);
  const body = Buffer.concat([iv, cipher.update(padded), cipher.final()]);
  const blob = Buffer.concat([body, createHmac('sha256', key.subarray(32)).update(body).digest()]);
  const digest = createHash('sha256').update(blob).digest();
  return { blob, pointer: { cdnKey: 'abc', cdnNumber: 3, key, size: plaintext.length, digest, flags: 0, contentType: 'application/pdf', fileName: 'x.pdf' } };
}

const reasonOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (error) {
    if (SignalError.isInstance(error)) return error.message;
  }
  return 'no error';
};

describe('attachments', () => {
  it('downloads at most MAX_ATTACHMENTS_PER_ENVELOPE per message, marking the rest unavailable', async () => {
    const { blob, pointer } = encrypt(randomBytes(10));
    const pointers = Array.from({ length: MAX_ATTACHMENTS_PER_ENVELOPE + 2 }, () => ({ ...pointer }));
    let downloads = 0;
    const fetcher: AttachmentFetcher = async () => {
      downloads++;
      return blob;
    };
    const results = await fetchAttachments(pointers, { fetcher, cdnUrls: { 3: 'https://cdn3.example' }, maxBytes: 1000, logger: createRecordingLogger() });
    expect(downloads).toBe(MAX_ATTACHMENTS_PER_ENVELOPE);
    expect(results.get(pointers.at(-1)!)).toMatchObject({ status: 'unavailable', reason: expect.stringMatching(/^too-many-attachments/) as unknown });
  });

  it('verifies digest and MAC, decrypts and cuts the padding at size', () => {
    const plaintext = randomBytes(1234);
    const { blob, pointer } = encrypt(plaintext);
    expect(Buffer.from(decryptAttachment(blob, pointer))).toEqual(plaintext);
  });

  it('names the failing step: digest first, then MAC, size, key and length', () => {
    const { blob, pointer } = encrypt(randomBytes(100));
    const flipped = Buffer.from(blob);
    flipped[40] = (flipped[40] ?? 0) ^ 1;
    expect(reasonOf(() => decryptAttachment(flipped, pointer))).toBe('digest-mismatch');
    expect(reasonOf(() => decryptAttachment(flipped, { ...pointer, digest: createHash('sha256').update(flipped).digest() }))).toBe('mac-mismatch');
    expect(reasonOf(() => decryptAttachment(blob, { ...pointer, size: 100_000 }))).toBe('shorter-than-declared-size');
    expect(reasonOf(() => decryptAttachment(blob, { ...pointer, key: randomBytes(32) }))).toBe('bad-key-length');
    expect(reasonOf(() => decryptAttachment(blob.subarray(0, 40), pointer))).toBe('bad-blob-length');
  });

  it('builds CDN URLs from the key or id and refuses unknown CDNs', () => {
    const cdns = { 0: 'https://cdn.example', 3: 'https://cdn3.example/' };
    expect(attachmentUrl({ cdnKey: 'a/b', cdnNumber: 3, flags: 0 }, cdns)).toBe('https://cdn3.example/attachments/a%2Fb');
    expect(attachmentUrl({ cdnId: '42', cdnNumber: 0, flags: 0 }, cdns)).toBe('https://cdn.example/attachments/42');
    expect(() => attachmentUrl({ cdnKey: 'x', cdnNumber: 9, flags: 0 }, cdns)).toThrow(/unknown-cdn/);
  });

  it('turns every failure into an unavailable attachment with the reason, never throwing', async () => {
    const plaintext = randomBytes(600);
    const ok = encrypt(plaintext);
    const tampered = encrypt(randomBytes(50));
    const missing = encrypt(randomBytes(50));
    const blobs = new Map([
      ['ok', ok.blob],
      ['tampered', Buffer.concat([tampered.blob.subarray(0, 20), Buffer.from([tampered.blob[20]! ^ 1]), tampered.blob.subarray(21)])],
    ]);
    const fetcher: AttachmentFetcher = async (url, { maxBytes }) => {
      const blob = blobs.get(url.split('/').at(-1) ?? '');
      if (blob === undefined) throw new SignalError('SIGNAL_ATTACHMENT_DOWNLOAD_FAILED', 'HTTP 404');
      expect(blob.length).toBeLessThanOrEqual(maxBytes);
      return blob;
    };
    const pointers = [
      { ...ok.pointer, cdnKey: 'ok' },
      { ...tampered.pointer, cdnKey: 'tampered' },
      { ...missing.pointer, cdnKey: 'gone' },
      { ...ok.pointer, cdnKey: 'ok', size: 10_000_000 },
    ];
    const logger = createRecordingLogger();
    const results = await fetchAttachments(pointers, { fetcher, cdnUrls: { 3: 'https://cdn3.example' }, maxBytes: 1_000_000, logger });
    expect(pointers.map((p) => results.get(p))).toEqual([
      { mime: 'application/pdf', name: 'x.pdf', bytes: plaintext },
      { status: 'unavailable', reason: 'digest-mismatch', mime: 'application/pdf', name: 'x.pdf', size: 50 },
      { status: 'unavailable', reason: 'download-failed: HTTP 404', mime: 'application/pdf', name: 'x.pdf', size: 50 },
      { status: 'unavailable', reason: 'too-large: declared 10000000 bytes, limit 1000000', mime: 'application/pdf', name: 'x.pdf', size: 10_000_000 },
    ]);
  });
});
