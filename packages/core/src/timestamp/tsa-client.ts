/**
 * A client for an RFC 3161 Time-Stamping Authority over HTTP(S) (RFC 3161 §3.4): POST the
 * request as `application/timestamp-query`, expect `application/timestamp-reply`. The token is
 * returned only after it verifies against the data and the request's nonce.
 */
import type { X509Certificate } from 'node:crypto';
import { NoteError } from '../errors/note-errors.ts';
import { MAX_TOKEN_BYTES, createTimestampRequest, parseTimestampResponse, verifyTimestampToken } from './rfc3161.ts';

export interface TsaClientOptions {
  /** The TSA's URL (https, or http for a TSA on loopback). */
  readonly url: string;
  /** TSA certificates to require the token to chain to (see `verifyTimestampToken`). */
  readonly trusted?: readonly X509Certificate[];
  /** Request timeout in ms. Default 10,000. */
  readonly timeoutMs?: number;
  /** fetch implementation (tests). Default: global fetch. */
  readonly fetch?: typeof fetch;
}

/** Returns a function that timestamps bytes with the TSA and resolves with the verified token (DER). */
export function createTsaClient(options: TsaClientOptions): (data: Uint8Array) => Promise<Uint8Array> {
  const url = new URL(options.url);
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new NoteError('TIMESTAMP_INVALID', `the TSA URL must use https (plain http only on loopback): ${url.origin}`);
  }
  const fetchImpl = options.fetch ?? fetch;
  return async (data) => {
    const { request, nonce } = createTimestampRequest(data);
    const response = await fetchImpl(url, {
      method: 'POST',
      headers: { 'content-type': 'application/timestamp-query', accept: 'application/timestamp-reply' },
      body: request,
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
    if (!response.ok) throw new NoteError('TIMESTAMP_INVALID', `the TSA answered HTTP ${response.status}`);
    const body = new Uint8Array(await response.arrayBuffer());
    if (body.length > MAX_TOKEN_BYTES) throw new NoteError('TIMESTAMP_INVALID', 'the TSA response is too large');
    const token = parseTimestampResponse(body);
    const info = verifyTimestampToken(token, data, options.trusted ? { trusted: options.trusted } : {});
    if (info.nonce !== nonce) throw new NoteError('TIMESTAMP_INVALID', 'the TSA response does not carry the request nonce (replayed or mixed up)');
    return token;
  };
}
