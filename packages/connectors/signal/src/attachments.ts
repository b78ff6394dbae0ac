/**
 * Attachments: download from Signal's CDN, verify, decrypt, store.
 *
 * The encrypted blob is `IV(16) || AES-256-CBC-PKCS7(plaintext || zero padding) || HMAC(32)`,
 * the pointer's 64-byte key is `aesKey(32) || macKey(32)`, `digest = SHA-256(blob)` and
 * `size` is the plaintext length. Order of checks: length cap while downloading, digest
 * (binds the pointer to the exact CDN bytes), HMAC over IV‖ciphertext (both timing-safe), then
 * decrypt and cut the zero padding at `size`. A failure at any step becomes an `unavailable`
 * attachment whose `reason` names the step — never a dropped record.
 */
import { createDecipheriv, createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { request } from 'node:https';
import type { AttachmentInput, Logger } from '@offchannel/core';
import type { AttachmentPointer } from './proto/signal-content.ts';
import { SignalError } from './signal-error.ts';

/** Downloads `url`, failing with `SIGNAL_ATTACHMENT_DOWNLOAD_FAILED` (message `HTTP <status>`…) past `maxBytes`. */
export type AttachmentFetcher = (url: string, options: { readonly maxBytes: number; readonly signal?: AbortSignal }) => Promise<Uint8Array>;

/** CDN base URLs by CDN number. Production: cdn.signal.org (0), cdn2 (2), cdn3 (3). */
export const PRODUCTION_CDN_URLS: Readonly<Record<number, string>> = {
  0: 'https://cdn.signal.org',
  2: 'https://cdn2.signal.org',
  3: 'https://cdn3.signal.org',
};

/** Largest attachment the connector downloads by default: 200 MiB of plaintext. */
export const DEFAULT_MAX_ATTACHMENT_BYTES = 200 * 1024 * 1024;

/** Most attachments downloaded for one envelope; further pointers are recorded as unavailable. */
export const MAX_ATTACHMENTS_PER_ENVELOPE = 100;

/** Signal's size buckets: padded plaintext length for a plaintext of `size` bytes. */
export function paddedAttachmentSize(size: number): number {
  if (size <= 0) return 541;
  return Math.max(541, Math.floor(1.05 ** Math.ceil(Math.log(size) / Math.log(1.05))));
}

/** The CDN URL of `pointer`, or a `SignalError` if it names no object or an unknown CDN. */
export function attachmentUrl(pointer: AttachmentPointer, cdnUrls: Readonly<Record<number, string>>): string {
  const base = cdnUrls[pointer.cdnNumber];
  if (base === undefined) throw new SignalError('SIGNAL_ATTACHMENT_INVALID', `unknown-cdn ${pointer.cdnNumber}`);
  const id = pointer.cdnKey ?? pointer.cdnId;
  if (id === undefined || id === '') throw new SignalError('SIGNAL_ATTACHMENT_INVALID', 'no-cdn-location');
  return `${base.replace(/\/+$/, '')}/attachments/${encodeURIComponent(id)}`;
}

/** Verifies and decrypts a downloaded blob. Throws `SIGNAL_ATTACHMENT_INVALID` whose message is the reason code. */
export function decryptAttachment(blob: Uint8Array, pointer: AttachmentPointer): Uint8Array {
  const fail = (reason: string): SignalError => new SignalError('SIGNAL_ATTACHMENT_INVALID', reason);
  const key = pointer.key;
  if (key?.length !== 64) throw fail('bad-key-length');
  if (pointer.size === undefined) throw fail('no-size');
  if (blob.length < 16 + 16 + 32 || (blob.length - 48) % 16 !== 0) throw fail('bad-blob-length');
  if (pointer.digest !== undefined && pointer.digest.length > 0) {
    const digest = createHash('sha256').update(blob).digest();
    if (pointer.digest.length !== 32 || !timingSafeEqual(digest, pointer.digest)) throw fail('digest-mismatch');
  }
  const body = blob.subarray(0, blob.length - 32);
  const mac = createHmac('sha256', key.subarray(32)).update(body).digest();
  if (!timingSafeEqual(mac, blob.subarray(blob.length - 32))) throw fail('mac-mismatch');
  let padded: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-cbc', key.subarray(0, 32), body.subarray(0, 16));
    padded = Buffer.concat([decipher.update(body.subarray(16)), decipher.final()]);
  } catch {
    throw fail('decrypt-failed');
  }
  if (padded.length < pointer.size) throw fail('shorter-than-declared-size');
  return padded.subarray(0, pointer.size);
}

/**
 * Downloads, verifies and decrypts each pointer. Returns what to archive for each: the
 * plaintext bytes, or an `unavailable` marker with the reason. Never throws for one bad
 * attachment; aborts only when `signal` is aborted.
 */
export async function fetchAttachments(
  pointers: readonly AttachmentPointer[],
  options: {
    readonly fetcher: AttachmentFetcher;
    readonly cdnUrls: Readonly<Record<number, string>>;
    readonly maxBytes: number;
    readonly logger: Logger;
    readonly signal?: AbortSignal;
  },
): Promise<Map<AttachmentPointer, AttachmentInput>> {
  const results = new Map<AttachmentPointer, AttachmentInput>();
  for (const [index, pointer] of pointers.entries()) {
    const described = {
      ...(pointer.contentType === undefined ? {} : { mime: pointer.contentType }),
      ...(pointer.fileName === undefined ? {} : { name: pointer.fileName }),
    };
    const unavailable = (reason: string): AttachmentInput => ({
      status: 'unavailable',
      reason,
      ...described,
      ...(pointer.size === undefined ? {} : { size: pointer.size }),
    });
    if (index >= MAX_ATTACHMENTS_PER_ENVELOPE) {
      results.set(pointer, unavailable(`too-many-attachments: more than ${MAX_ATTACHMENTS_PER_ENVELOPE} in one message`));
      continue;
    }
    if (pointer.size !== undefined && pointer.size > options.maxBytes) {
      results.set(pointer, unavailable(`too-large: declared ${pointer.size} bytes, limit ${options.maxBytes}`));
      continue;
    }
    try {
      const url = attachmentUrl(pointer, options.cdnUrls);
      const cap = paddedAttachmentSize(pointer.size ?? 0) * 1.05 + 16 + 16 + 32;
      const blob = await options.fetcher(url, { maxBytes: Math.ceil(cap), ...(options.signal === undefined ? {} : { signal: options.signal }) });
      const plaintext = decryptAttachment(blob, pointer);
      results.set(pointer, { mime: pointer.contentType ?? 'application/octet-stream', ...described, bytes: plaintext });
    } catch (error) {
      if (options.signal?.aborted === true) throw error;
      const code = SignalError.isInstance(error) ? error.code : 'UNEXPECTED';
      const reason =
        code === 'SIGNAL_ATTACHMENT_INVALID' ? (error as Error).message : code === 'SIGNAL_ATTACHMENT_DOWNLOAD_FAILED' ? `download-failed: ${(error as Error).message}` : 'download-failed: unexpected error';
      options.logger.warn({ code, reason, cdn: pointer.cdnNumber }, 'attachment not archived; recorded as unavailable');
      results.set(pointer, unavailable(reason));
    }
  }
  return results;
}

/**
 * The default fetcher: HTTPS GET with a byte cap and a timeout. `ca` (PEM) replaces the
 * system roots — only for test servers.
 */
export function httpsAttachmentFetcher(options: { readonly ca?: string; readonly timeoutMs?: number } = {}): AttachmentFetcher {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return (url, { maxBytes, signal }) =>
    new Promise<Uint8Array>((resolve, reject) => {
      const failed = (message: string): SignalError => new SignalError('SIGNAL_ATTACHMENT_DOWNLOAD_FAILED', message);
      const req = request(url, { method: 'GET', timeout: timeoutMs, ...(options.ca === undefined ? {} : { ca: options.ca }), ...(signal === undefined ? {} : { signal }) }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(failed(`HTTP ${res.statusCode ?? 0}`));
          return;
        }
        const chunks: Buffer[] = [];
        let total = 0;
        res.on('data', (chunk: Buffer) => {
          total += chunk.length;
          if (total > maxBytes) {
            req.destroy();
            reject(failed(`larger than ${maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          resolve(Buffer.concat(chunks));
        });
        res.on('error', () => {
          reject(failed('connection error'));
        });
      });
      req.on('timeout', () => req.destroy(failed('timeout')));
      req.on('error', (error) => {
        reject(SignalError.isInstance(error) ? error : failed('connection error'));
      });
      req.end();
    });
}
