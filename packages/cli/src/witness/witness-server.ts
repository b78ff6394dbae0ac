/**
 * The witness's HTTP listener: `POST /add-checkpoint` and nothing else (404 for any other
 * path, 405 for another method). Loopback HTTP by default; any other address needs TLS.
 *
 * Limits, all answered with a 4xx and no change of state: a body larger than
 * MAX_ADD_CHECKPOINT_BYTES (413, counted as it arrives, not trusted from Content-Length);
 * more requests from one address than the rate allows (429, token bucket per address);
 * slow clients (headers within 10 s, the whole request within 30 s).
 * Requests are authenticated by the log's signature on the checkpoint, as the spec intends.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { MAX_ADD_CHECKPOINT_BYTES } from '@offchannel/core';
import { UsageError } from '../usage-error.ts';
import type { WitnessService } from './witness-service.ts';

export interface WitnessServerOptions {
  readonly service: WitnessService;
  readonly host: string;
  readonly port: number;
  /** PEM certificate chain and key: HTTPS. Required for a non-loopback host. */
  readonly tls?: { readonly cert: string; readonly key: string } | undefined;
  /** Requests per second per client address (sustained), and the burst allowed. */
  readonly rate?: { readonly perSecond: number; readonly burst: number } | undefined;
  /** Counts answers by status (for the operator's log line); no content. */
  readonly onAnswer?: (status: number) => void;
}

export interface RunningWitnessServer {
  readonly url: string;
  close(): Promise<void>;
}

const DEFAULT_RATE = { perSecond: 20, burst: 100 };
const MAX_TRACKED_CLIENTS = 10_000;

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export async function startWitnessServer(options: WitnessServerOptions): Promise<RunningWitnessServer> {
  const rate = options.rate ?? DEFAULT_RATE;
  const buckets = new Map<string, { tokens: number; at: number }>();
  const allow = (client: string): boolean => {
    const now = performance.now() / 1000;
    let bucket = buckets.get(client);
    if (!bucket) {
      if (buckets.size >= MAX_TRACKED_CLIENTS) buckets.clear();
      bucket = { tokens: rate.burst, at: now };
      buckets.set(client, bucket);
    }
    bucket.tokens = Math.min(rate.burst, bucket.tokens + (now - bucket.at) * rate.perSecond);
    bucket.at = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  };
  const handler = (request: IncomingMessage, response: ServerResponse): void => {
    const send = (status: number, body: string, contentType = 'text/plain; charset=utf-8', extra: Record<string, string> = {}): void => {
      options.onAnswer?.(status);
      if (response.headersSent) return;
      response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), ...extra });
      response.end(body);
    };
    const url = (request.url ?? '').split('?')[0];
    if (url !== '/add-checkpoint') {
      request.resume();
      send(404, 'not found: this witness serves only POST /add-checkpoint\n');
      return;
    }
    if (request.method !== 'POST') {
      request.resume();
      send(405, 'method not allowed: use POST\n', undefined, { allow: 'POST' });
      return;
    }
    if (!allow(request.socket.remoteAddress ?? '?')) {
      request.resume();
      send(429, 'too many requests: slow down and retry later\n', undefined, { 'retry-after': '1' });
      return;
    }
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > MAX_ADD_CHECKPOINT_BYTES) {
      send(413, `request body too large: at most ${MAX_ADD_CHECKPOINT_BYTES} bytes\n`, undefined, { connection: 'close' });
      request.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let length = 0;
    let tooLarge = false;
    request.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length > MAX_ADD_CHECKPOINT_BYTES) {
        if (!tooLarge) send(413, `request body too large: at most ${MAX_ADD_CHECKPOINT_BYTES} bytes\n`, undefined, { connection: 'close' });
        tooLarge = true;
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on('error', () => undefined);
    request.on('end', () => {
      if (tooLarge) return;
      options.service.addCheckpoint(Buffer.concat(chunks)).then(
        (answer) => { send(answer.status, answer.body, answer.contentType); },
        () => { send(500, 'the witness could not record this checkpoint; nothing was cosigned — retry later\n'); },
      );
    });
  };
  if (!options.tls && !isLoopback(options.host)) {
    throw new UsageError(`the witness listens on ${options.host} without TLS: give --tls-cert and --tls-key, or listen on 127.0.0.1`);
  }
  const server: Server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handler) : createHttpServer(handler);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 50;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `${options.tls ? 'https' : 'http'}://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => { resolve(); });
        server.closeAllConnections();
      }),
  };
}
