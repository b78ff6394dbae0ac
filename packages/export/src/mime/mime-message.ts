/**
 * A small, deterministic RFC 5322 / MIME writer — enough for RSMF containers and EML exports,
 * with nothing random: the same input gives the same bytes. Header names keep their exact case
 * (`X-RSMF-Version`), non-ASCII header text becomes RFC 2047 encoded words, every body is
 * base64 in 76-character lines, and boundaries are derived from the content's hash
 * (`=_oc…`: `=_` never occurs in base64 text, so a boundary cannot collide with a body).
 */
import { createHash } from 'node:crypto';

/** A leaf part, or a multipart of parts. */
export type MimePart =
  | {
      /** Full Content-Type, e.g. `text/plain; charset=utf-8`. */
      readonly contentType: string;
      readonly body: Uint8Array;
      /** `attachment` with an ASCII file name, or `inline`. */
      readonly disposition?: { readonly type: 'attachment' | 'inline'; readonly filename?: string };
    }
  | { readonly multipart: 'mixed' | 'alternative' | 'related'; readonly parts: readonly MimePart[] };

export type HeaderList = readonly (readonly [name: string, value: string])[];

const CRLF = '\r\n';

/** The whole message: `headers` (values already formatted; see {@link encodeWords}), MIME-Version, then `body`. */
export function buildMimeMessage(headers: HeaderList, body: MimePart): Uint8Array {
  const lines: string[] = [];
  for (const [name, value] of headers) lines.push(headerLine(name, value));
  lines.push(headerLine('MIME-Version', '1.0'));
  const chunks: Buffer[] = [Buffer.from(lines.join(CRLF) + CRLF, 'latin1')];
  writePart(body, chunks);
  return Buffer.concat(chunks);
}

function writePart(part: MimePart, out: Buffer[]): void {
  if ('multipart' in part) {
    const rendered = part.parts.map((child) => {
      const chunks: Buffer[] = [];
      writePart(child, chunks);
      return Buffer.concat(chunks);
    });
    const hash = createHash('sha256');
    for (const child of rendered) hash.update(child);
    const boundary = `=_oc${hash.digest('hex').slice(0, 28)}`;
    out.push(Buffer.from(`${headerLine('Content-Type', `multipart/${part.multipart}; boundary="${boundary}"`)}${CRLF}${CRLF}`, 'latin1'));
    for (const child of rendered) {
      out.push(Buffer.from(`--${boundary}${CRLF}`, 'latin1'), child, Buffer.from(CRLF, 'latin1'));
    }
    out.push(Buffer.from(`--${boundary}--${CRLF}`, 'latin1'));
    return;
  }
  const headers = [headerLine('Content-Type', part.contentType), headerLine('Content-Transfer-Encoding', 'base64')];
  if (part.disposition) {
    const { type, filename } = part.disposition;
    if (filename !== undefined && !/^[\x20-\x7e]{1,200}$/.test(filename)) throw new RangeError('MIME file names must be printable ASCII (make them safe first)');
    headers.push(headerLine('Content-Disposition', filename === undefined ? type : `${type}; filename="${filename.replace(/["\\]/g, '_')}"`));
  }
  out.push(Buffer.from(headers.join(CRLF) + CRLF + CRLF + base64Lines(part.body), 'latin1'));
}

/** Base64 in 76-character CRLF-terminated lines (RFC 2045). Whole 57-byte groups encode to whole lines. */
export function base64Lines(bytes: Uint8Array): string {
  return base64LineBytes(bytes).toString('latin1');
}

/** Bytes encoded at a time: their base64 text (78 KiB) stays a short-lived young-generation string. */
const BASE64_PIECE = 57 * 1024;

/**
 * {@link base64Lines} as bytes, built in one buffer of the exact size: no string of the whole
 * output is made (a large string goes straight to V8's old generation and stays until a full
 * collection — with a chunk per spooled block, that garbage grew the heap by 100 MiB and more).
 */
export function base64LineBytes(bytes: Uint8Array): Buffer {
  const source = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const whole = Math.floor(source.byteLength / 57);
  const tail = source.byteLength % 57;
  const out = Buffer.allocUnsafe(whole * 78 + (tail === 0 ? 0 : Math.ceil(tail / 3) * 4 + 2));
  let position = 0;
  for (let at = 0; at < source.byteLength; at += BASE64_PIECE) {
    // The piece's text is written where its first line goes, then its lines are moved apart for
    // their CRLFs, last line first (each moves onto room only lines already moved were using).
    const chars = out.write(source.toString('base64', at, Math.min(source.byteLength, at + BASE64_PIECE)), position, 'latin1');
    const lines = Math.ceil(chars / 76);
    for (let line = lines - 1; line >= 0; line--) {
      const from = position + line * 76;
      const length = Math.min(76, chars - line * 76);
      const to = position + line * 78;
      out.copyWithin(to, from, from + length);
      out[to + length] = 0x0d;
      out[to + length + 1] = 0x0a;
    }
    position += chars + 2 * lines;
  }
  return out;
}

/** {@link base64LineBytes} of a byte stream, in whole lines as the chunks allow (a partial group waits for the next chunk). */
export async function* base64LineStream(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  let rest: Buffer = Buffer.alloc(0);
  for await (const chunk of chunks) {
    const data = rest.byteLength > 0 ? Buffer.concat([rest, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const whole = data.byteLength - (data.byteLength % 57);
    if (whole > 0) yield base64LineBytes(data.subarray(0, whole));
    rest = Buffer.from(data.subarray(whole));
  }
  if (rest.byteLength > 0) yield base64LineBytes(rest);
}

/** `Name: value`, folded before 78 columns at spaces where possible (no trailing CRLF). */
export function headerLine(name: string, value: string): string {
  if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) throw new RangeError(`invalid header name ${JSON.stringify(name)}`);
  if (/[\r\n]/.test(value) || /[^\x20-\x7e\t]/.test(value)) throw new RangeError(`header ${name} must be printable ASCII on one line (encode it with encodeWords first)`);
  const words = value.split(' ');
  const lines: string[] = [];
  let line = `${name}:`;
  for (const word of words) {
    if (line.length + 1 + word.length > 76 && line.length > name.length + 1) {
      lines.push(line);
      line = ` ${word}`;
    } else {
      line += ` ${word}`;
    }
  }
  lines.push(line);
  return lines.join(CRLF);
}

/**
 * Header text as-is when it is plain printable ASCII; otherwise RFC 2047 `=?utf-8?B?…?=`
 * encoded words of at most 75 characters, split on character boundaries.
 */
export function encodeWords(text: string): string {
  if (/^[\x20-\x7e]*$/.test(text) && !text.includes('=?')) return text;
  const words: string[] = [];
  let chunk = '';
  for (const char of text) {
    const next = chunk + char;
    if (Buffer.byteLength(next, 'utf8') > 45) {
      words.push(chunk);
      chunk = char;
    } else {
      chunk = next;
    }
  }
  if (chunk !== '') words.push(chunk);
  return words.map((word) => `=?utf-8?B?${Buffer.from(word, 'utf8').toString('base64')}?=`).join(' ');
}

/** `"Display Name" <local@domain>` with the name quoted or encoded as needed. */
export function formatAddress(address: string, name?: string): string {
  if (!/^[^\s<>()",;:\\@]+@[A-Za-z0-9.-]+$/.test(address)) throw new RangeError('not a plain addr-spec; build one with mailboxFor()');
  if (name === undefined || name === '') return `<${address}>`;
  const display = /^[\x20-\x7e]*$/.test(name) ? `"${name.replace(/["\\]/g, (char) => `\\${char}`)}"` : encodeWords(name);
  return `${display} <${address}>`;
}

/**
 * A syntactically valid mailbox for a platform party: the id itself when it already is a plain
 * e-mail address, else `<id made safe>@<channel>.offchannel.invalid` (RFC 2606 `.invalid`:
 * never deliverable). The exact id is always given separately in `X-Offchannel-*` headers.
 */
export function mailboxFor(id: string, channel: string): string {
  if (/^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/.test(id)) return id;
  const local = id.replace(/[^A-Za-z0-9._+-]+/g, '_').replace(/^\.+|\.+$/g, '').replace(/\.{2,}/g, '.').slice(0, 64) || 'unknown';
  return `${local}@${channel.replace(/[^a-z0-9-]/g, '') || 'channel'}.offchannel.invalid`;
}

/** RFC 5322 date-time in UTC: `Sat, 21 Nov 2026 09:30:00 +0000`. */
export function rfc5322Date(iso: string): string {
  return new Date(iso).toUTCString().replace('GMT', '+0000');
}
