import { ConfigError } from '@offchannel/core';
import { describe, expect, it } from 'vitest';
import { parseWhatsAppConnectorConfig } from './config.ts';

describe('parseWhatsAppConnectorConfig', () => {
  it('accepts a full entry', () => {
    expect(
      parseWhatsAppConnectorConfig({ account: 'desk-42', syncFullHistory: false, media: { maxBytes: 1024, timeoutMs: 5000, concurrency: 2 }, reconnect: { initialDelayMs: 500, maxDelayMs: 30_000 } }, 'connectors[0]'),
    ).toEqual({ account: 'desk-42', syncFullHistory: false, media: { maxBytes: 1024, timeoutMs: 5000, concurrency: 2 }, reconnect: { initialDelayMs: 500, maxDelayMs: 30_000 } });
    expect(parseWhatsAppConnectorConfig({ account: 'a' }, 'c')).toEqual({ account: 'a' });
    expect(parseWhatsAppConnectorConfig({ account: 'a', waVersion: [2, 3000, 1] }, 'c')).toEqual({ account: 'a', waVersion: [2, 3000, 1] });
    expect(parseWhatsAppConnectorConfig({ account: 'a', completeness: { phoneWarningDays: [5, 10], historyBoundMs: 600_000 } }, 'c')).toEqual({ account: 'a', phoneWarningDays: [5, 10], historyBoundMs: 600_000 });
    expect(parseWhatsAppConnectorConfig({ account: 'a', reconcile: { afterGapMs: 0, everyMs: 60_000, timeoutMs: 1000, count: 500 } }, 'c')).toEqual({ account: 'a', reconcile: { afterGapMs: 0, everyMs: 60_000, timeoutMs: 1000, count: 500 } });
    expect(parseWhatsAppConnectorConfig({ account: 'a', reconcile: false }, 'c')).toEqual({ account: 'a', reconcile: false });
  });

  it.each([
    [null, 'connectors[0]'],
    [[], 'connectors[0]'],
    [{}, 'connectors[0].account'],
    [{ account: 'bad/name' }, 'connectors[0].account'],
    [{ account: 'a', token: 'sekrit-value' }, 'connectors[0].token'],
    [{ account: 'a', syncFullHistory: 'yes' }, 'connectors[0].syncFullHistory'],
    [{ account: 'a', media: { maxBytes: -1 } }, 'connectors[0].media.maxBytes'],
    [{ account: 'a', media: { url: 'x' } }, 'connectors[0].media.url'],
    [{ account: 'a', media: { concurrency: 0 } }, 'connectors[0].media.concurrency'],
    [{ account: 'a', media: { resolveHost: 'x' } }, 'connectors[0].media.resolveHost'], // test seams are not settings
    [{ account: 'a', media: { ca: 'x' } }, 'connectors[0].media.ca'],
    [{ account: 'a', reconnect: { initialDelayMs: 5000, maxDelayMs: 1000 } }, 'connectors[0].reconnect.initialDelayMs'],
    [{ account: 'a', reconnect: 3 }, 'connectors[0].reconnect'],
    [{ account: 'a', waVersion: [2, 3000] }, 'connectors[0].waVersion'],
    [{ account: 'a', waVersion: [2, -1, 'x'] }, 'connectors[0].waVersion'],
    [{ account: 'a', completeness: { phoneWarningDays: [14] } }, 'connectors[0].completeness.phoneWarningDays'],
    [{ account: 'a', completeness: { phoneWarningDays: 7 } }, 'connectors[0].completeness.phoneWarningDays'],
    [{ account: 'a', completeness: { historyBoundMs: 10 } }, 'connectors[0].completeness.historyBoundMs'],
    [{ account: 'a', completeness: { clock: 1 } }, 'connectors[0].completeness.clock'],
    [{ account: 'a', reconcile: true }, 'connectors[0].reconcile'],
    [{ account: 'a', reconcile: { everyMs: 1000 } }, 'connectors[0].reconcile.everyMs'],
    [{ account: 'a', reconcile: { timeoutMs: 0 } }, 'connectors[0].reconcile.timeoutMs'],
    [{ account: 'a', reconcile: { count: 501 } }, 'connectors[0].reconcile.count'],
    [{ account: 'a', reconcile: { window: 1 } }, 'connectors[0].reconcile.window'],
  ])('rejects %j naming %s, without echoing values', (entry, key) => {
    let error: unknown;
    try {
      parseWhatsAppConnectorConfig(entry, 'connectors[0]');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).key).toBe(key);
    expect((error as ConfigError).message).not.toContain('sekrit');
    expect((error as ConfigError).message).not.toContain('bad/name');
  });
});
