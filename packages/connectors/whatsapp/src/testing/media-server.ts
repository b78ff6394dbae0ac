/**
 * A loopback HTTP server standing in for WhatsApp's media CDN in offline tests and the demo.
 * Listens on 127.0.0.1 only, on a random port, and serves only what was put into it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface MediaServer {
  /** Serves `bytes` at `/<name>` and returns its URL. */
  put(name: string, bytes: Uint8Array): string;
  /** Makes `/<name>` answer with this HTTP status (e.g. 410 for an expired link). */
  fail(name: string, status: number): string;
  /** Number of requests served (any status). */
  readonly requests: number;
  close(): Promise<void>;
}

export async function startMediaServer(): Promise<MediaServer> {
  const files = new Map<string, Uint8Array | number>();
  let requests = 0;
  const server: Server = createServer((request, response) => {
    requests++;
    const entry = files.get((request.url ?? '/').slice(1));
    if (entry === undefined || typeof entry === 'number') {
      response.writeHead(typeof entry === 'number' ? entry : 404).end();
      return;
    }
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': entry.length }).end(entry);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => { resolve(); });
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const check = (name: string): string => {
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(name)) throw new TypeError('media name must be [A-Za-z0-9._-]{1,100}');
    return `${base}/${name}`;
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
    get requests() {
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => { resolve(); });
      }),
  };
}
