/**
 * A loopback HTTPS server standing in for WhatsApp's media CDN in offline tests and the demo.
 * It serves the allowlisted host name (`mmg.whatsapp.net`) with a throwaway self-signed
 * certificate made at start, listens on 127.0.0.1 only, on a random port, and serves only what
 * was put into it. The connector reaches it through the downloader's test seams
 * ({@link MediaServer.downloaderOptions}): same URL, TLS server name and certificate check as
 * production, only the address differs.
 */
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { MediaDownloaderOptions } from '../media-download.ts';
import { WHATSAPP_MEDIA_HOSTS } from '../media-url.ts';
import { createTestCertificate } from './test-certificate.ts';

export interface MediaServer {
  /** Serves `bytes` at `/<name>` and returns its URL (`https://mmg.whatsapp.net/<name>`). */
  put(name: string, bytes: Uint8Array): string;
  /** Makes `/<name>` answer with this HTTP status (e.g. 410 for an expired link). */
  fail(name: string, status: number): string;
  /**
   * Makes `/<name>` never answer until `release()` is called; then it serves what `put` gave
   * it (or 404). `requested` resolves when a request for it has arrived.
   */
  hold(name: string): { readonly url: string; readonly requested: Promise<void>; release(): void };
  /** Number of requests received (any status, held ones included). */
  readonly requests: number;
  /** What to pass as the connector's `media` options to download from this server. */
  readonly downloaderOptions: Pick<MediaDownloaderOptions, 'resolveHost' | 'ca'>;
  close(): Promise<void>;
}

const HOST = WHATSAPP_MEDIA_HOSTS[0] as string;

export async function startMediaServer(): Promise<MediaServer> {
  const files = new Map<string, Uint8Array | number>();
  const held = new Map<string, { arrived: () => void; released: Promise<void> }>();
  let requests = 0;
  const { cert, key } = createTestCertificate([HOST]);
  const server: Server = createServer({ cert, key }, (request, response) => {
    requests++;
    const name = (request.url ?? '/').slice(1);
    const serve = () => {
      const entry = files.get(name);
      if (entry === undefined || typeof entry === 'number') {
        response.writeHead(typeof entry === 'number' ? entry : 404).end();
        return;
      }
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': entry.length }).end(entry);
    };
    const hold = held.get(name);
    if (!hold) {
      serve();
      return;
    }
    hold.arrived();
    void hold.released.then(serve);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => { resolve(); });
  });
  const port = (server.address() as AddressInfo).port;
  const check = (name: string): string => {
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(name)) throw new TypeError('media name must be [A-Za-z0-9._-]{1,100}');
    return `https://${HOST}/${name}`;
  };
  return {
    put(name, bytes) {
      const url = check(name);
      files.set(name, Uint8Array.from(bytes));
      return url;
    },
    fail(name, status) {
      const url = check(name);
      files.set(name, status);
      return url;
    },
    hold(name) {
      const url = check(name);
      const requested = Promise.withResolvers<undefined>();
      const released = Promise.withResolvers<undefined>();
      held.set(name, { arrived: () => { requested.resolve(undefined); }, released: released.promise });
      return { url, requested: requested.promise, release: () => { released.resolve(undefined); } };
    },
    get requests() {
      return requests;
    },
    downloaderOptions: {
      resolveHost: (host) => {
        if (host !== HOST) throw new TypeError('the test CDN serves the allowlisted host only');
        return { address: '127.0.0.1', port };
      },
      ca: cert,
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => { resolve(); });
      }),
  };
}
