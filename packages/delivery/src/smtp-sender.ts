/**
 * Sends one ready-made message over SMTP with Nodemailer (no hand-written SMTP), and says what
 * the server answered. Security: STARTTLS is required on `smtp://` (implicit TLS on `smtps://`),
 * certificates are verified, TLS 1.2 at least; only a loopback server with the explicit
 * exception may run without TLS. The message bytes are sent as they are (`raw`).
 */
import nodemailer from 'nodemailer';
import type { DeliveryTarget, SmtpEndpoint } from './delivery-target.ts';

/** What the server said to one attempt. */
export type SendOutcome =
  | { readonly status: 'accepted'; readonly reply: string }
  /** 4xx or no answer (connection refused, reset, timeout): try again later. */
  | { readonly status: 'transient'; readonly reply: string }
  /** 5xx: the server will not take this message. */
  | { readonly status: 'permanent'; readonly reply: string }
  /** No STARTTLS, a certificate that does not verify, a failed handshake. */
  | { readonly status: 'tls'; readonly reply: string }
  | { readonly status: 'auth'; readonly reply: string };

export interface SmtpSender {
  send(message: Uint8Array): Promise<SendOutcome>;
  close(): void;
}

/** Longest server reply kept (receipts, errors). */
const MAX_REPLY = 300;

export function createSmtpSender(target: DeliveryTarget, endpoint: SmtpEndpoint, timeoutMs = 60_000): SmtpSender {
  const plaintextAllowed = target.allowPlaintextLoopback === true;
  const transport = nodemailer.createTransport({
    pool: true,
    maxConnections: 1,
    host: endpoint.host,
    port: endpoint.port,
    secure: endpoint.implicitTls,
    requireTLS: !endpoint.implicitTls && !plaintextAllowed,
    tls: { rejectUnauthorized: true, minVersion: 'TLSv1.2', servername: endpoint.host, ...(target.ca === undefined ? {} : { ca: target.ca }) },
    ...(target.user !== undefined && target.password !== undefined ? { auth: { user: target.user, pass: target.password } } : {}),
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    disableFileAccess: true,
    disableUrlAccess: true,
    logger: false,
    debug: false,
  });
  return {
    async send(message) {
      try {
        const info = await transport.sendMail({ envelope: { from: target.from, to: [target.to] }, raw: Buffer.from(message.buffer, message.byteOffset, message.byteLength) });
        const reply = clip(info.response);
        if (!/^2\d\d/.test(reply) || info.rejected.length > 0) return { status: reply.startsWith('5') ? 'permanent' : 'transient', reply: reply || 'no reply' };
        return { status: 'accepted', reply };
      } catch (error) {
        return classify(error);
      }
    },
    close() {
      transport.close();
    },
  };
}

/** Maps a Nodemailer error to an outcome; the reply is the server's line or the error code. */
export function classify(error: unknown): SendOutcome {
  const failure = error as { code?: unknown; responseCode?: unknown; response?: unknown; message?: unknown };
  const code = typeof failure.code === 'string' ? failure.code : 'ERROR';
  const status = typeof failure.responseCode === 'number' ? failure.responseCode : undefined;
  const response = typeof failure.response === 'string' ? clip(failure.response) : undefined;
  const reply = response ?? `${code}${status === undefined ? '' : ` ${status}`}`;
  const message = typeof failure.message === 'string' ? failure.message : '';
  if (code === 'EAUTH' || status === 535 || status === 534) return { status: 'auth', reply };
  if (code === 'ETLS' || code === 'EREQUIRETLS' || /certificate|self[- ]signed|STARTTLS|TLS|SSL/i.test(message) && code !== 'EENVELOPE' && code !== 'EMESSAGE') return { status: 'tls', reply: response ?? `${code}: ${clip(message.replace(/response=.*/s, '').trim())}` };
  if (status !== undefined && status >= 500) return { status: 'permanent', reply };
  return { status: 'transient', reply };
}

function clip(text: string): string {
  const line = text.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').trim();
  return line.length > MAX_REPLY ? `${line.slice(0, MAX_REPLY)}…` : line;
}
