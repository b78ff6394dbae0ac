/**
 * Downloads, verifies and decrypts WhatsApp media at capture time (CDN links expire in weeks).
 *
 * WhatsApp media is AES-256-CBC encrypted with keys derived (HKDF) from the message's
 * `mediaKey`; the CDN file is `ciphertext ‖ mac` where `mac` is the first 10 bytes of
 * HMAC-SHA256(macKey, iv ‖ ciphertext). The message states `fileEncSha256` (SHA-256 of the
 * CDN file) and `fileSha256` (SHA-256 of the plaintext). Every check is made here — Baileys'
 * own download checks none of them — so a tampered or truncated file is rejected with a
 * reason instead of being archived as if it were the original.
 */
import { createDecipheriv, createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { OffchannelError } from '@offchannel/core';
import { getMediaKeys } from '@whiskeysockets/baileys';

/** The media kinds the connector downloads (HKDF key families in parentheses). */
export type MediaKind = 'image' | 'video' | 'audio' | 'document' | 'sticker' | 'ptv';

/** What a message says about one media file. */
export interface MediaRef {
  readonly kind: MediaKind;
  readonly url?: string | undefined;
  readonly directPath?: string | undefined;
  readonly mediaKey?: Uint8Array | undefined;
  readonly fileSha256?: Uint8Array | undefined;
  readonly fileEncSha256?: Uint8Array | undefined;
  readonly fileLength?: number | undefined;
}

/** Returns the verified plaintext, or throws {@link MediaUnavailableError}. */
export type MediaDownloader = (ref: MediaRef) => Promise<Uint8Array>;

/** Media could not be archived; `reason` is a short code recorded on the attachment. */
export class MediaUnavailableError extends OffchannelError {
  readonly reason: string;

  constructor(reason: string, options?: { cause?: unknown }) {
    super('WHATSAPP_MEDIA_UNAVAILABLE', `media could not be archived (${reason}); the record marks the attachment unavailable.`, options);
    this.reason = reason;
  }
}

export interface MediaDownloaderOptions {
  /** Largest media file accepted, in bytes. Default 256 MiB. Larger files are recorded unavailable (`too-large`). */
  readonly maxBytes?: number;
  /** Per-download timeout. Default 120 s. */
  readonly timeoutMs?: number;
  /** CDN host for `directPath` downloads. Default `mmg.whatsapp.net`. */
  readonly host?: string;
  /**
   * Accept plain `http://` URLs to 127.0.0.1 / localhost. For offline tests only; production
   * downloads are https only.
   */
  readonly allowLoopbackHttp?: boolean;
}

const MAC_BYTES = 10;
const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;

/** Builds the downloader the connector uses by default. */
export function createMediaDownloader(options: MediaDownloaderOptions = {}): MediaDownloader {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const host = options.host ?? 'mmg.whatsapp.net';
  return async (ref) => {
    if (!ref.mediaKey || ref.mediaKey.length !== 32) throw new MediaUnavailableError('no-media-key');
    if (ref.fileLength !== undefined && ref.fileLength > maxBytes) throw new MediaUnavailableError('too-large');
    const url = mediaUrl(ref, host, options.allowLoopbackHttp === true);
    const file = await fetchBounded(url, maxBytes + 16 + MAC_BYTES, timeoutMs);
    if (ref.fileEncSha256 && ref.fileEncSha256.length > 0 && !sameBytes(sha256(file), ref.fileEncSha256)) {
      throw new MediaUnavailableError('enc-hash-mismatch');
    }
    if (file.length < MAC_BYTES + 16 || (file.length - MAC_BYTES) % 16 !== 0) throw new MediaUnavailableError('truncated');
    const { iv, cipherKey, macKey } = await getMediaKeys(ref.mediaKey, ref.kind);
    if (!macKey) throw new MediaUnavailableError('no-media-key');
    const ciphertext = file.subarray(0, file.length - MAC_BYTES);
    const mac = createHmac('sha256', macKey).update(iv).update(ciphertext).digest().subarray(0, MAC_BYTES);
    if (!timingSafeEqual(mac, file.subarray(file.length - MAC_BYTES))) throw new MediaUnavailableError('mac-mismatch');
    let plaintext: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-cbc', cipherKey, iv);
      plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch (error) {
      throw new MediaUnavailableError('decrypt-failed', { cause: error });
    }
    if (ref.fileSha256 && ref.fileSha256.length > 0 && !sameBytes(sha256(plaintext), ref.fileSha256)) {
      throw new MediaUnavailableError('hash-mismatch');
    }
    return Uint8Array.from(plaintext);
  };
}

function mediaUrl(ref: MediaRef, host: string, allowLoopbackHttp: boolean): URL {
  let url: URL;
  try {
    url = ref.directPath ? new URL(`https://${host}${ref.directPath}`) : new URL(ref.url ?? '');
  } catch {
    throw new MediaUnavailableError('no-url');
  }
  const loopback = url.hostname === '127.0.0.1' || url.hostname === 'localhost' || url.hostname === '[::1]';
  if (url.protocol === 'https:' || (url.protocol === 'http:' && allowLoopbackHttp && loopback)) return url;
  throw new MediaUnavailableError('insecure-url');
}

async function fetchBounded(url: URL, limit: number, timeoutMs: number): Promise<Buffer> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  } catch (error) {
    throw new MediaUnavailableError((error as { name?: string }).name === 'TimeoutError' ? 'timeout' : 'network-error', { cause: error });
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new MediaUnavailableError(`http-${response.status}`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  const reader = response.body?.getReader();
  try {
    for (;;) {
      const chunk = reader ? await reader.read() : { done: true as const, value: undefined };
      if (chunk.done) break;
      const bytes = chunk.value as Uint8Array;
      total += bytes.length;
      if (total > limit) {
        await reader?.cancel();
        throw new MediaUnavailableError('too-large');
      }
      chunks.push(Buffer.from(bytes));
    }
  } catch (error) {
    if (error instanceof MediaUnavailableError) throw error;
    throw new MediaUnavailableError((error as { name?: string }).name === 'TimeoutError' ? 'timeout' : 'network-error', { cause: error });
  }
  return Buffer.concat(chunks);
}

function sha256(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
