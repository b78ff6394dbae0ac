/**
 * Validates a WhatsApp connector entry from a plain-JSON configuration file (the CLI strips
 * `channel` and `policy` before calling this). Errors name the offending key, never its value.
 *
 * ```json
 * { "account": "desk-42", "syncFullHistory": true, "waVersion": [2, 3000, 1043857760],
 *   "media": { "maxBytes": 268435456, "timeoutMs": 120000, "concurrency": 4 },
 *   "reconnect": { "initialDelayMs": 1000, "maxDelayMs": 60000 },
 *   "completeness": { "phoneWarningDays": [7, 12], "historyBoundMs": 1800000 },
 *   "reconcile": { "afterGapMs": 60000, "everyMs": 3600000, "timeoutMs": 60000, "count": 50 } }
 * ```
 */
import { ConfigError, assertAccountName, configObject, optionalConfigInteger } from '@offchannel/core';
import type { WhatsAppConnectorOptions } from './whatsapp-connector.ts';

/** What an unknown key in an entry should have been, for `configObject`'s message. */
const SETTING = 'a WhatsApp connector setting';
const TOP = ['account', 'syncFullHistory', 'media', 'reconnect', 'waVersion', 'completeness', 'reconcile'] as const;

export function parseWhatsAppConnectorConfig(entry: unknown, key: string): WhatsAppConnectorOptions {
  const fields = configObject(entry, key, TOP, SETTING);
  if (typeof fields['account'] !== 'string') throw new ConfigError(`${key}.account`, 'is required: the custodian account name (e.g. "desk-42").');
  try {
    assertAccountName(fields['account']);
  } catch {
    throw new ConfigError(`${key}.account`, 'is not a valid account name: up to 128 of letters, digits and . _ @ + = - (no "..").');
  }
  const options: { -readonly [P in keyof WhatsAppConnectorOptions]: WhatsAppConnectorOptions[P] } = { account: fields['account'] };
  if (fields['syncFullHistory'] !== undefined) {
    if (typeof fields['syncFullHistory'] !== 'boolean') throw new ConfigError(`${key}.syncFullHistory`, 'must be true or false.');
    options.syncFullHistory = fields['syncFullHistory'];
  }
  if (fields['waVersion'] !== undefined) {
    const version = fields['waVersion'];
    if (!Array.isArray(version) || version.length !== 3 || !version.every((part) => Number.isSafeInteger(part) && (part as number) >= 0)) {
      throw new ConfigError(`${key}.waVersion`, 'must be three non-negative integers, e.g. [2, 3000, 1043857760].');
    }
    options.waVersion = [version[0] as number, version[1] as number, version[2] as number];
  }
  if (fields['media'] !== undefined) {
    // Only these three: the downloader's test seams (resolveHost, ca) are never configurable.
    const media = configObject(fields['media'], `${key}.media`, ['maxBytes', 'timeoutMs', 'concurrency'], SETTING);
    options.media = {
      ...optionalConfigInteger(media, 'maxBytes', `${key}.media.maxBytes`, 1, 2 ** 32),
      ...optionalConfigInteger(media, 'timeoutMs', `${key}.media.timeoutMs`, 1000, 3_600_000),
      ...optionalConfigInteger(media, 'concurrency', `${key}.media.concurrency`, 1, 32),
    };
  }
  if (fields['reconnect'] !== undefined) {
    const reconnect = configObject(fields['reconnect'], `${key}.reconnect`, ['initialDelayMs', 'maxDelayMs'], SETTING);
    const initial = optionalConfigInteger(reconnect, 'initialDelayMs', `${key}.reconnect.initialDelayMs`, 100, 600_000);
    const max = optionalConfigInteger(reconnect, 'maxDelayMs', `${key}.reconnect.maxDelayMs`, 1000, 3_600_000);
    if (initial.initialDelayMs !== undefined && max.maxDelayMs !== undefined && initial.initialDelayMs > max.maxDelayMs) {
      throw new ConfigError(`${key}.reconnect.initialDelayMs`, 'must not be larger than reconnect.maxDelayMs.');
    }
    options.reconnect = { ...initial, ...max };
  }
  if (fields['completeness'] !== undefined) {
    const completeness = configObject(fields['completeness'], `${key}.completeness`, ['phoneWarningDays', 'historyBoundMs'], SETTING);
    const days = completeness['phoneWarningDays'];
    if (days !== undefined) {
      // WhatsApp logs the device out after about 14 days: a warning at 14 or later is too late.
      if (!Array.isArray(days) || days.length > 8 || !days.every((d) => Number.isSafeInteger(d) && (d as number) >= 1 && (d as number) <= 13)) {
        throw new ConfigError(`${key}.completeness.phoneWarningDays`, 'must be up to 8 whole days from 1 to 13, e.g. [7, 12] (WhatsApp logs the device out after about 14).');
      }
      options.phoneWarningDays = days as number[];
    }
    const bound = optionalConfigInteger(completeness, 'historyBoundMs', `${key}.completeness.historyBoundMs`, 60_000, 7 * 86_400_000);
    if (bound.historyBoundMs !== undefined) options.historyBoundMs = bound.historyBoundMs;
  }
  if (fields['reconcile'] === false) options.reconcile = false;
  else if (fields['reconcile'] !== undefined) {
    const reconcile = configObject(fields['reconcile'], `${key}.reconcile`, ['afterGapMs', 'everyMs', 'timeoutMs', 'count'], SETTING);
    options.reconcile = {
      ...optionalConfigInteger(reconcile, 'afterGapMs', `${key}.reconcile.afterGapMs`, 0, 86_400_000),
      ...optionalConfigInteger(reconcile, 'everyMs', `${key}.reconcile.everyMs`, 60_000, 30 * 86_400_000),
      ...optionalConfigInteger(reconcile, 'timeoutMs', `${key}.reconcile.timeoutMs`, 1000, 600_000),
      ...optionalConfigInteger(reconcile, 'count', `${key}.reconcile.count`, 1, 500),
    };
  }
  return options;
}
