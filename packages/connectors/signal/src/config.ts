/**
 * The plain-JSON config entry for a Signal connector, as the CLI passes it (after stripping
 * `channel` and `policy`):
 *
 * ```json
 * { "account": "alice", "serverUrl": "https://chat.signal.org", "trustRoots": ["BXu6…"],
 *   "maxAttachmentBytes": 104857600, "unlinkWarningDays": 14 }
 * ```
 *
 * Only production and staging are reachable from config; local test servers are set up in code.
 */
import { ConfigError, assertAccountName } from '@offchannel/core';
import { PublicKey } from '@signalapp/libsignal-client';
import type { SignalConnectorOptions } from './signal-connector.ts';

const KNOWN = ['account', 'serverUrl', 'trustRoots', 'cdnUrls', 'maxAttachmentBytes', 'unlinkWarningDays', 'reconnect'];
const SERVERS: Readonly<Record<string, 'production' | 'staging'>> = {
  'https://chat.signal.org': 'production',
  'https://chat.staging.signal.org': 'staging',
};

/** Validates `entry`; throws core's `ConfigError` naming the bad key (`<key>.<field>`), never echoing values. */
export function parseSignalConnectorConfig(entry: unknown, key: string): SignalConnectorOptions {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new ConfigError(key, 'must be an object');
  const fields = entry as Record<string, unknown>;
  for (const name of Object.keys(fields)) {
    if (!KNOWN.includes(name)) throw new ConfigError(`${key}.${name}`, `is not a Signal option (known: ${KNOWN.join(', ')})`);
  }
  const integer = (name: string, value: unknown, min: number, max: number): number | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new ConfigError(`${key}.${name}`, `must be an integer from ${min} to ${max}`);
    return value;
  };

  const account = fields['account'];
  if (account === undefined) throw new ConfigError(`${key}.account`, 'is required: the custodian account name, e.g. alice');
  try {
    assertAccountName(account);
  } catch (error) {
    throw new ConfigError(`${key}.account`, 'must match [A-Za-z0-9+][A-Za-z0-9._@+=-]{0,127}', { cause: error });
  }

  let environment: 'production' | 'staging' = 'production';
  const serverUrl = fields['serverUrl'];
  if (serverUrl !== undefined) {
    const normalized = typeof serverUrl === 'string' ? serverUrl.replace(/\/+$/, '') : undefined;
    const known = normalized === undefined ? undefined : SERVERS[normalized];
    if (known === undefined) throw new ConfigError(`${key}.serverUrl`, `must be one of ${Object.keys(SERVERS).join(', ')}`);
    environment = known;
  }

  let trustRoots: string[] | undefined;
  if (fields['trustRoots'] !== undefined) {
    const roots = fields['trustRoots'];
    if (!Array.isArray(roots) || roots.length === 0 || roots.length > 16) throw new ConfigError(`${key}.trustRoots`, 'must be a list of 1 to 16 base64 public keys');
    trustRoots = roots.map((root: unknown, index) => {
      try {
        if (typeof root !== 'string') throw new TypeError('not a string');
        PublicKey.deserialize(new Uint8Array(Buffer.from(root, 'base64')));
        return root;
      } catch (error) {
        throw new ConfigError(`${key}.trustRoots[${index}]`, 'must be a base64 Curve25519 public key (33 bytes starting 0x05)', { cause: error });
      }
    });
  }

  let cdnUrls: Record<number, string> | undefined;
  if (fields['cdnUrls'] !== undefined) {
    const urls = fields['cdnUrls'];
    if (typeof urls !== 'object' || urls === null || Array.isArray(urls)) throw new ConfigError(`${key}.cdnUrls`, 'must be an object of CDN number to https URL');
    cdnUrls = {};
    for (const [number, url] of Object.entries(urls as Record<string, unknown>)) {
      if (!/^\d{1,2}$/.test(number)) throw new ConfigError(`${key}.cdnUrls`, 'keys must be CDN numbers (0, 2, 3…)');
      if (typeof url !== 'string' || !URL.canParse(url) || new URL(url).protocol !== 'https:') throw new ConfigError(`${key}.cdnUrls.${number}`, 'must be an https URL');
      const { username, password } = new URL(url);
      if (username !== '' || password !== '') throw new ConfigError(`${key}.cdnUrls.${number}`, 'must not carry a user name or password: that would put a secret in the config');
      cdnUrls[Number(number)] = url;
    }
  }

  let reconnect: { minMs?: number; maxMs?: number } | undefined;
  if (fields['reconnect'] !== undefined) {
    const r = fields['reconnect'];
    if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new ConfigError(`${key}.reconnect`, 'must be an object { minMs, maxMs }');
    const { minMs, maxMs, ...rest } = r as Record<string, unknown>;
    const extra = Object.keys(rest)[0];
    if (extra !== undefined) throw new ConfigError(`${key}.reconnect.${extra}`, 'is not a reconnect option (known: minMs, maxMs)');
    const min = integer('reconnect.minMs', minMs, 100, 600_000);
    const max = integer('reconnect.maxMs', maxMs, 1000, 3_600_000);
    if (min !== undefined && max !== undefined && min > max) throw new ConfigError(`${key}.reconnect.minMs`, 'must not exceed reconnect.maxMs');
    reconnect = { ...(min === undefined ? {} : { minMs: min }), ...(max === undefined ? {} : { maxMs: max }) };
  }

  const maxAttachmentBytes = integer('maxAttachmentBytes', fields['maxAttachmentBytes'], 1, 4 * 1024 ** 3);
  const unlinkWarningDays = integer('unlinkWarningDays', fields['unlinkWarningDays'], 1, 29);
  return {
    account,
    server: { environment },
    ...(trustRoots === undefined ? {} : { trustRoots }),
    ...(cdnUrls === undefined ? {} : { cdnUrls }),
    ...(maxAttachmentBytes === undefined ? {} : { maxAttachmentBytes }),
    ...(unlinkWarningDays === undefined ? {} : { unlinkWarningDays }),
    ...(reconnect === undefined ? {} : { reconnect }),
  };
}
