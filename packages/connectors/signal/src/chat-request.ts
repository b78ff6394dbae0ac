import { SignalError } from './signal-error.ts';

/** The part of a libsignal chat connection used for REST-style requests. */
export interface ChatFetch {
  fetch(request: {
    readonly verb: string;
    readonly path: string;
    readonly headers: readonly (readonly [string, string])[];
    readonly body?: Uint8Array<ArrayBuffer>;
    readonly timeoutMillis?: number;
  }): Promise<{ readonly status: number; readonly body: Uint8Array | undefined }>;
}

/**
 * Sends a JSON request over a chat connection and returns the parsed JSON answer (or
 * `undefined` for an empty body). Non-2xx answers throw `SIGNAL_SERVER_REFUSED` naming the
 * path and status only — never the body, which may echo credentials.
 */
export async function chatJson(chat: ChatFetch, verb: string, path: string, body?: unknown, headers: readonly (readonly [string, string])[] = []): Promise<unknown> {
  const response = await chat.fetch({
    verb,
    path,
    headers: [...(body === undefined ? [] : [['content-type', 'application/json'] as const]), ...headers],
    ...(body === undefined ? {} : { body: new Uint8Array(Buffer.from(JSON.stringify(body), 'utf8')) }),
    timeoutMillis: 30_000,
  });
  if (response.status < 200 || response.status > 299) {
    throw new SignalError('SIGNAL_SERVER_REFUSED', `${verb} ${path.split('?')[0] ?? path} answered HTTP ${response.status}.`);
  }
  if (response.body === undefined || response.body.length === 0) return undefined;
  try {
    return JSON.parse(Buffer.from(response.body).toString('utf8')) as unknown;
  } catch {
    throw new SignalError('SIGNAL_SERVER_REFUSED', `${verb} ${path.split('?')[0] ?? path} answered with a body that is not JSON.`);
  }
}
