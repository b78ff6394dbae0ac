/**
 * The capture config's `metrics` section: where the Prometheus endpoint listens and which file
 * holds its bearer token. No section, no listener. The address must be an IP literal; a
 * non-loopback one is refused unless `allowNonLoopback` is set, because anything that can reach
 * it can try the token. The token is read from a file private to the capture user (0600/0400),
 * never from the config, and no error message prints it.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { isIP } from 'node:net';
import { ConfigError } from '@offchannel/core';
import { type Json, object, optionalBoolean, requiredString } from './config-reader.ts';

export interface MetricsConfig {
  /** An IP literal (IPv6 without brackets). */
  readonly host: string;
  /** 0 lets the system choose (the chosen port is logged). */
  readonly port: number;
  readonly tokenFile: string;
  readonly allowNonLoopback: boolean;
}

/** Shortest accepted token: 16 characters (`openssl rand -hex 32` makes 64). */
export const MIN_TOKEN_LENGTH = 16;
const MAX_TOKEN_LENGTH = 4096;

/** Parses `config.metrics`; `at` resolves a path relative to the config file. */
export function parseMetricsConfig(value: unknown, at: (relative: string) => string): MetricsConfig | undefined {
  if (value === undefined) return undefined;
  const entry: Json = object(value, 'config.metrics', ['listen', 'tokenFile', 'allowNonLoopback']);
  const { host, port } = parseListen(requiredString(entry.listen, 'config.metrics.listen'));
  const tokenFile = requiredString(entry.tokenFile, 'config.metrics.tokenFile');
  if (/^[A-Za-z0-9+=_-]{32,}$/.test(tokenFile) && /\d/.test(tokenFile) && /[A-Za-z]/.test(tokenFile)) {
    // 32+ letters and digits with no directory and no extension: the token itself, pasted here.
    throw new ConfigError('config.metrics.tokenFile', 'must name a file (e.g. "./metrics.token"), not hold the token (not printed). Secrets never go in the config: put the token in a file readable only by the capture user (chmod 600); if this was the token, replace it');
  }
  const allowNonLoopback = optionalBoolean(entry.allowNonLoopback, 'config.metrics.allowNonLoopback') ?? false;
  if (!allowNonLoopback && !isLoopback(host)) {
    throw new ConfigError('config.metrics.listen', `is not a loopback address; use 127.0.0.1 or ::1 and let Prometheus scrape through a local agent or tunnel, or set "allowNonLoopback": true to listen on ${host} (bearer token only, no TLS: keep it on a trusted network)`);
  }
  return { host, port, tokenFile: at(tokenFile), allowNonLoopback };
}

/** `127.0.0.1:9464` or `[::1]:9464`. */
export function parseListen(text: string): { readonly host: string; readonly port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (host === undefined || !Number.isInteger(port) || port > 65_535) throw new ConfigError('config.metrics.listen', 'must be "<ip>:<port>", e.g. "127.0.0.1:9464" or "[::1]:9464"');
  if (isIP(host) === 0) throw new ConfigError('config.metrics.listen', 'must name an IP address, not a host name (a name can resolve elsewhere); e.g. "127.0.0.1:9464"');
  if (isIP(host) === 6 && match?.[1] === undefined) throw new ConfigError('config.metrics.listen', 'must put an IPv6 address in brackets, e.g. "[::1]:9464"');
  return { host, port };
}

/** 127.0.0.0/8, ::1 and IPv4-mapped 127.x. */
export function isLoopback(host: string): boolean {
  const lower = host.toLowerCase();
  if (isIP(lower) === 4) return lower.startsWith('127.');
  if (lower === '::1' || /^(?:0{0,4}:){7}0{0,3}1$/.test(lower)) return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  return mapped?.[1]?.startsWith('127.') ?? false;
}

/**
 * Reads the bearer token: the file must be a regular file private to its owner, holding one
 * token of visible ASCII (surrounding whitespace is trimmed, as Prometheus trims its
 * `credentials_file`). Errors name the file, never its content.
 */
export async function readMetricsToken(file: string): Promise<string> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw new ConfigError('config.metrics.tokenFile', `cannot read ${file} (${(error as { code?: string }).code ?? 'error'}); create it with: openssl rand -hex 32 > ${file} && chmod 600 ${file}`, { cause: error });
  }
  let text: string;
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ConfigError('config.metrics.tokenFile', `${file} is not a regular file`);
    if ((info.mode & 0o077) !== 0) throw new ConfigError('config.metrics.tokenFile', `${file} can be read or changed by group or others; run chmod 600 on it (and replace the token if others may have read it)`);
    if (info.size > MAX_TOKEN_LENGTH + 16) throw new ConfigError('config.metrics.tokenFile', `${file} is larger than a token; it must hold one token (openssl rand -hex 32)`);
    text = (await handle.readFile('latin1')).trim();
  } finally {
    await handle.close();
  }
  if (text.length < MIN_TOKEN_LENGTH || text.length > MAX_TOKEN_LENGTH || !/^[\x21-\x7e]+$/.test(text)) {
    throw new ConfigError('config.metrics.tokenFile', `${file} must hold one token of ${MIN_TOKEN_LENGTH} to ${MAX_TOKEN_LENGTH} visible ASCII characters and nothing else (not printed); make one with: openssl rand -hex 32`);
  }
  return text;
}
