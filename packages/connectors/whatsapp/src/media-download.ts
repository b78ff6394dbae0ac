/**
 * Downloads, verifies and decrypts WhatsApp media (CDN links expire in weeks).
 *
 * Where from: only the URL {@link mediaUrl} builds (media-url.ts): an allowlisted WhatsApp
 * host over https, whatever the message says. Production connects through DNS to port 443 and
 * refuses to connect when the host resolves to a loopback, private, link-local or other
 * non-public address ({@link isPublicAddress}), so not even a poisoned resolver turns a media
 * download into a request to the capture host's network. Redirects are not followed.
 *
 * What: WhatsApp media is AES-256-CBC encrypted with keys derived (HKDF) from the message's
 * `mediaKey`; the CDN file is `ciphertext ‖ mac` where `mac` is the first 10 bytes of
 * HMAC-SHA256(macKey, iv ‖ ciphertext). The message states `fileEncSha256` (SHA-256 of the
 * CDN file) and `fileSha256` (SHA-256 of the plaintext). Every check is made here — Baileys'
 * own download checks none of them — so a tampered or truncated file is rejected with a
 * reason instead of being archived as if it were the original.
 */
import { createDecipheriv, createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request, type RequestOptions } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { getMediaKeys } from '@whiskeysockets/baileys';
import { mediaUrl } from './media-url.ts';
import { MediaUnavailableError } from './media-unavailable-error.ts';

export { MediaUnavailableError } from './media-unavailable-error.ts';

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

/**
 * Returns the verified plaintext, or throws {@link MediaUnavailableError}. `signal` cancels the
 * download (the error's reason is then `stopped`).
 */
export type MediaDownloader = (ref: MediaRef, signal?: AbortSignal) => Promise<Uint8Array>;

/** Where to connect for an allowlisted media host (test seam, see {@link MediaDownloaderOptions.resolveHost}). */
export type MediaHostResolver = (host: string) => { readonly address: string; readonly port: number };

export interface MediaDownloaderOptions {
  /** Largest media file accepted, in bytes. Default 256 MiB. Larger files are recorded unavailable (`too-large`). */
  readonly maxBytes?: number;
  /** Per-download timeout. Default 120 s; then the attachment is recorded unavailable (`timeout`). */
  readonly timeoutMs?: number;
  /** Downloads running at once per account (the connector's setting). Default 4. */
  readonly concurrency?: number;
  /**
   * Offline tests and the demo only: connect to this address and port for an allowlisted host
   * (the URL, TLS server name and certificate check stay those of the allowlisted host). Loopback
   * addresses only (anything else is refused, `blocked-address`); not a configuration-file
   * setting. Production: DNS, port 443, public addresses only.
   */
  readonly resolveHost?: MediaHostResolver;
  /** Offline tests and the demo only: CA certificates (PEM) trusted instead of the system's, for a loopback CDN. */
  readonly ca?: string;
}

const MAC_BYTES = 10;
const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 120_000;

/** Builds the downloader the connector uses by default. */
export function createMediaDownloader(options: MediaDownloaderOptions = {}): MediaDownloader {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return async (ref, signal) => {
    if (!ref.mediaKey || ref.mediaKey.length !== 32) throw new MediaUnavailableError('no-media-key');
    if (ref.fileLength !== undefined && ref.fileLength > maxBytes) throw new MediaUnavailableError('too-large');
    const url = mediaUrl(ref);
    if (signal?.aborted) throw new MediaUnavailableError('stopped');
    const file = await fetchBounded(url, maxBytes + 16 + MAC_BYTES, timeoutMs, signal, options);
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

/** Addresses a media download may connect to: not loopback, private, link-local, multicast or reserved. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return !BLOCKED.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

const BLOCKED = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) {
  BLOCKED.addSubnet(net, bits, 'ipv4');
}
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are checked against the IPv4 rules by BlockList.
for (const [net, bits] of [['::', 128], ['::1', 128], ['64:ff9b::', 96], ['100::', 64], ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) {
  BLOCKED.addSubnet(net, bits, 'ipv6');
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

function isLoopback(address: string): boolean {
  const family = isIP(address);
  return family !== 0 && LOOPBACK.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Resolves a host name to all its addresses (`dns.lookup` with `all: true`). */
export type AddressResolver = (hostname: string, callback: (error: Error | null, addresses: readonly LookupAddress[]) => void) => void;

const systemResolver: AddressResolver = (hostname, callback) => {
  dnsLookup(hostname, { all: true }, (error, addresses) => { callback(error, addresses); });
};

/**
 * A socket `lookup` that only ever hands the socket public addresses: when the name resolves to
 * none, the connection fails with {@link MediaUnavailableError} `blocked-address` before any
 * packet is sent. Production media downloads use it with the system resolver.
 */
export function publicAddressLookup(resolve: AddressResolver = systemResolver): LookupFunction {
  const lookup = (hostname: string, options: { all?: boolean }, callback: (error: Error | null, address: string | LookupAddress[], family?: number) => void) => {
    resolve(hostname, (error, addresses) => {
      if (error) {
        callback(error, '');
        return;
      }
      const allowed = addresses.filter((entry) => isPublicAddress(entry.address));
      const first = allowed[0];
      if (!first) callback(new MediaUnavailableError('blocked-address'), '');
      else if (options.all === true) callback(null, allowed);
      else callback(null, first.address, first.family);
    });
  };
  return lookup as unknown as LookupFunction;
}

const publicLookup = publicAddressLookup();

function fetchBounded(url: URL, limit: number, timeoutMs: number, stop: AbortSignal | undefined, options: MediaDownloaderOptions): Promise<Buffer> {
  const seam = options.resolveHost?.(url.hostname);
  // The seam serves loopback test CDNs only: it can never aim a download at another machine.
  if (seam && !isLoopback(seam.address)) return Promise.reject(new MediaUnavailableError('blocked-address'));
  const target: RequestOptions = seam
    ? { host: seam.address, port: seam.port, servername: url.hostname }
    : { host: url.hostname, port: 443, servername: url.hostname, lookup: publicLookup };
  return new Promise<Buffer>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => { fail(new MediaUnavailableError('timeout')); }, timeoutMs);
    const onStop = () => { fail(new MediaUnavailableError('stopped')); };
    stop?.addEventListener('abort', onStop, { once: true });
    const finish = () => {
      settled = true;
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
    };
    const fail = (error: MediaUnavailableError) => {
      if (settled) return;
      finish();
      req.destroy();
      reject(error);
    };
    const req = request({
      ...target,
      method: 'GET',
      path: url.pathname + url.search,
      headers: { host: url.hostname, 'accept-encoding': 'identity' },
      agent: false,
      ...(options.ca ? { ca: options.ca } : {}),
    });
    req.on('error', (error) => { fail(error instanceof MediaUnavailableError ? error : new MediaUnavailableError('network-error', { cause: error })); });
    req.on('response', (response) => {
      if (response.statusCode !== 200) {
        fail(new MediaUnavailableError(`http-${response.statusCode ?? 0}`));
        return;
      }
      const declared = Number(response.headers['content-length']);
      if (Number.isFinite(declared) && declared > limit) {
        fail(new MediaUnavailableError('too-large'));
        return;
      }
      const chunks: Buffer[] = [];
      let total = 0;
      response.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > limit) fail(new MediaUnavailableError('too-large'));
        else chunks.push(chunk);
      });
      response.on('error', (error) => { fail(new MediaUnavailableError('network-error', { cause: error })); });
      response.on('aborted', () => { fail(new MediaUnavailableError('truncated')); });
      response.on('end', () => {
        if (settled) return;
        if (!response.complete) {
          fail(new MediaUnavailableError('truncated'));
          return;
        }
        finish();
        resolve(Buffer.concat(chunks));
      });
    });
    req.end();
  });
}

function sha256(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
