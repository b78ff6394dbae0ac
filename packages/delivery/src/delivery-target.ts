/**
 * A delivery target: one journaling address on one SMTP server. Targets are independent —
 * each has its own cursor, its own receipts stream (`delivery:<name>`) and its own failures.
 */
import { isIP } from 'node:net';
import { assertAccountName } from '@offchannel/core';
import { DeliveryError } from './delivery-error.ts';

export const DELIVERY_MODES = ['record', 'day'] as const;
export type DeliveryMode = (typeof DELIVERY_MODES)[number];

export interface DeliveryTarget {
  /** Names the receipts stream `delivery:<name>` and the state files; the account-name grammar. */
  readonly name: string;
  /** `smtp://host:port` (STARTTLS required) or `smtps://host:port` (implicit TLS). */
  readonly smtp: string;
  /** The journaling address (envelope recipient). */
  readonly to: string;
  /** Envelope sender (bounces go here). */
  readonly from: string;
  /** One e-mail per record (default) or one transcript per conversation and UTC day. */
  readonly mode?: DeliveryMode;
  /** SMTP AUTH user; the password comes from a file or the environment, never the config. */
  readonly user?: string;
  readonly password?: string;
  /** Extra trust anchors (PEM) for the server's certificate; the system's are used as well. */
  readonly ca?: string | Buffer;
  /**
   * Allow a plaintext session (no STARTTLS offered) — only to a loopback address, for tests.
   * STARTTLS is still used when the server offers it.
   */
  readonly allowPlaintextLoopback?: boolean;
  /** At most this many messages per second (the journal's rate limit). Default: unlimited. */
  readonly maxPerSecond?: number;
}

export interface SmtpEndpoint {
  readonly host: string;
  readonly port: number;
  readonly implicitTls: boolean;
}

const ADDRESS = /^[^\s@<>()",;:\\[\]]+@[A-Za-z0-9.-]+$/;

/** Checks a target and parses its SMTP URL. Throws `DeliveryError('DELIVERY_OPTIONS')`. */
export function checkTarget(target: DeliveryTarget): SmtpEndpoint {
  try {
    assertAccountName(target.name);
  } catch {
    throw new DeliveryError('DELIVERY_OPTIONS', 'target name must match [A-Za-z0-9+][A-Za-z0-9._@+=-]{0,127} (it names the receipts stream delivery:<name>)');
  }
  if (!ADDRESS.test(target.to)) throw new DeliveryError('DELIVERY_OPTIONS', `target ${target.name}: "to" must be one plain address such as journal@archive.example`);
  if (!ADDRESS.test(target.from)) throw new DeliveryError('DELIVERY_OPTIONS', `target ${target.name}: "from" must be one plain address such as offchannel@firm.example`);
  if (target.mode !== undefined && !DELIVERY_MODES.includes(target.mode)) throw new DeliveryError('DELIVERY_OPTIONS', `target ${target.name}: mode must be record or day`);
  if (target.maxPerSecond !== undefined && !(target.maxPerSecond > 0 && target.maxPerSecond <= 10_000)) throw new DeliveryError('DELIVERY_OPTIONS', `target ${target.name}: maxPerSecond must be between 0 and 10000`);
  if ((target.user === undefined) !== (target.password === undefined)) throw new DeliveryError('DELIVERY_OPTIONS', `target ${target.name}: a user needs a password (from a 0600 file or OFFCHANNEL_SMTP_PASSWORD) and a password needs a user`);
  const endpoint = parseSmtpUrl(target.smtp, target.name);
  if (target.allowPlaintextLoopback && !isLoopback(endpoint.host)) throw new DeliveryError('DELIVERY_OPTIONS', `target ${target.name}: the plaintext exception applies to loopback servers only (127.0.0.1, ::1, localhost); ${endpoint.host} must offer STARTTLS or implicit TLS`);
  return endpoint;
}

function parseSmtpUrl(value: string, name: string): SmtpEndpoint {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new DeliveryError('DELIVERY_OPTIONS', `target ${name}: smtp must be a URL such as smtp://mail.example:587 or smtps://mail.example:465`);
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') throw new DeliveryError('DELIVERY_OPTIONS', `target ${name}: smtp must start with smtp:// (STARTTLS) or smtps:// (implicit TLS)`);
  if (url.username !== '' || url.password !== '') throw new DeliveryError('DELIVERY_OPTIONS', `target ${name}: credentials never go in the smtp URL; give a user and a password file or OFFCHANNEL_SMTP_PASSWORD`);
  if (url.pathname !== '' && url.pathname !== '/') throw new DeliveryError('DELIVERY_OPTIONS', `target ${name}: the smtp URL takes a host and port only`);
  const implicitTls = url.protocol === 'smtps:';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new DeliveryError('DELIVERY_OPTIONS', `target ${name}: the smtp URL needs a host`);
  return { host, port: url.port === '' ? (implicitTls ? 465 : 587) : Number(url.port), implicitTls };
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}
