import { describe, expect, it } from 'vitest';
import { attachmentFileName, displayName, exportedType, isInlineImage } from './attachment-file-name.ts';

const SHA = 'ab'.repeat(32);

describe('attachment file names', () => {
  it('are the full SHA-256 and an allowlisted extension chosen by type, never by the sender’s name', () => {
    expect(attachmentFileName(SHA, 'application/pdf')).toBe(`${SHA}.pdf`);
    expect(attachmentFileName(SHA, 'IMAGE/JPEG; foo=bar')).toBe(`${SHA}.jpg`);
    expect(attachmentFileName(SHA, 'audio/ogg; codecs=opus')).toBe(`${SHA}.ogg`);
    for (const active of ['text/html', 'image/svg+xml', 'application/xhtml+xml', 'text/xml', 'application/xml', 'application/javascript', 'text/javascript', 'application/x-msdownload', 'application/vnd.ms-htmlhelp', 'message/rfc822', 'multipart/related', 'text/x-python', 'application/x-shockwave-flash', 'text/html ; charset=utf-8', 'text/plain/../html', '', undefined]) {
      expect(attachmentFileName(SHA, active), String(active)).toBe(`${SHA}.bin`);
      expect(exportedType(active)).toBe('application/octet-stream');
    }
    expect(() => attachmentFileName('../../etc/passwd', 'text/plain')).toThrow(RangeError);
    expect(() => attachmentFileName(SHA.slice(0, 16), 'text/plain')).toThrow(RangeError);
  });

  it('shows inline only raster images', () => {
    expect(isInlineImage('image/png')).toBe(true);
    expect(isInlineImage('image/svg+xml')).toBe(false);
    expect(isInlineImage('text/html')).toBe(false);
  });

  it('shows the original name with bidi overrides, controls and invisible characters made visible, cut at 200 characters', () => {
    expect(displayName('invoice\u202egpj.exe')).toBe('invoice[U+202E]gpj.exe');
    expect(displayName('a\u2066b\u2069c\u200fd\u0000e\nf\ufeffg')).toBe('a[U+2066]b[U+2069]c[U+200F]d[U+0000]e[U+000A]f[U+FEFF]g');
    expect(displayName('term sheet (5y).pdf')).toBe('term sheet (5y).pdf');
    expect(displayName('Bob Chén 👍🏽.png')).toBe('Bob Chén 👍🏽.png');
    expect(displayName('😀'.repeat(300))).toBe(`${'😀'.repeat(200)}… (300 characters)`);
  });
});
