/**
 * The Prometheus endpoint's HTTP listener: `GET /metrics` with `Authorization: Bearer <token>`,
 * nothing else. Every other request gets a bare status and no detail: 401 without the right
 * token (checked first, in constant time), 405 for another method, 404 for another path, 413
 * for a request with a body. Limits: 16 connections, 8 KiB of headers, 5 s for the headers and
 * 10 s for a request, one render at a time (concurrent scrapes share it). The token and the
 * client's address are never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { OffchannelError } from '@offchannel/core';

export interface MetricsServerOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string;
  /** The exposition text and its content type. */
  readonly render: () => Promise<{ readonly contentType: string; readonly body: string }>;
  /** Called for each request refused for its token (for a counter). */
  readonly onUnauthorized?: () => void;
}

export interface MetricsServer {
  /** Where it listens (the port the system chose when configured with 0). */
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

export const METRICS_LIMITS = { maxConnections: 16, maxHeaderSize: 8192, headersTimeoutMs: 5000, requestTimeoutMs: 10_000 } as const;

/** The listener could not be opened (address in use, not an address of this host). */
export class MetricsListenError extends OffchannelError {
  constructor(host: string, port: number, cause: unknown) {
    const code = (cause as { code?: string } | undefined)?.code ?? 'error';
    super('METRICS_LISTEN_FAILED', `the metrics endpoint cannot listen on ${host}:${port} (${code}); pick a free port in config.metrics.listen, or remove the metrics section`, { cause });
  }
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const expected = digest(`Bearer ${options.token}`);
  let rendering: Promise<{ readonly contentType: string; readonly body: string }> | undefined;
  const render = (): Promise<{ readonly contentType: string; readonly body: string }> => {
    rendering ??= options.render().finally(() => {
      rendering = undefined;
    });
    return rendering;
  };

  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    response.setHeader('cache-control', 'no-store');
    const authorization = request.headers.authorization;
    if (authorization === undefined || !timingSafeEqual(digest(authorization), expected)) {
      options.onUnauthorized?.();
      response.setHeader('www-authenticate', 'Bearer realm="offchannel-metrics"');
      finish(response, 401);
      return;
    }
    if (request.method !== 'GET') {
      response.setHeader('allow', 'GET');
      finish(response, 405);
      return;
    }
    if (request.url !== '/metrics') {
      finish(response, 404);
      return;
    }
    const length = request.headers['content-length'];
    if ((length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined) {
      finish(response, 413);
      return;
    }
    render().then(
      ({ contentType, body }) => {
        response.writeHead(200, { 'content-type': contentType });
        response.end(body);
      },
      () => {
        finish(response, 500);
      },
    );
  };

  const server: Server = createServer({ maxHeaderSize: METRICS_LIMITS.maxHeaderSize, headersTimeout: METRICS_LIMITS.headersTimeoutMs, requestTimeout: METRICS_LIMITS.requestTimeoutMs, keepAliveTimeout: 5000 }, handle);
  server.maxConnections = METRICS_LIMITS.maxConnections;
  // A malformed request or a client that goes away: close its socket, never throw.
  server.on('clientError', (_error, socket) => {
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    const failed = (error: unknown): void => {
      reject(new MetricsListenError(options.host, options.port, error));
    };
    server.once('error', failed);
    server.listen({ host: options.host, port: options.port, exclusive: true }, () => {
      server.off('error', failed);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  return {
    host: options.host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

/** Refusals carry no body beyond the status text, and close the connection. */
function finish(response: ServerResponse, status: number): void {
  response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
  response.end(`${status === 401 ? 'unauthorized' : status === 405 ? 'method not allowed' : status === 404 ? 'not found' : status === 413 ? 'no request body accepted' : 'error'}\n`);
}

/** Hashing both sides first makes the comparison constant-time whatever their lengths. */
function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'latin1').digest();
}
