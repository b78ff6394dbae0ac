import { describe, expect, it } from 'vitest';
import { type ConnectorConformanceOptions, runConnectorConformance } from './connector-conformance.ts';
import { type LoopbackFlaws, loopbackFixture } from './loopback-connector.ts';

describe('connector conformance on the loopback connector', () => {
  runConnectorConformance({ test: it, createFixture: async () => loopbackFixture() });
});

/** Runs the harness on a broken connector and returns each test's outcome by group. */
async function outcomes(flaws: LoopbackFlaws): Promise<Map<string, 'pass' | 'fail'>> {
  const tests: { name: string; fn: () => Promise<void> }[] = [];
  const options: ConnectorConformanceOptions = { test: (name, fn) => tests.push({ name, fn }), createFixture: async () => loopbackFixture(flaws), patienceMs: 2000 };
  runConnectorConformance(options);
  const result = new Map<string, 'pass' | 'fail'>();
  for (const { name, fn } of tests) {
    result.set(
      name.split(':')[0] as string,
      await fn().then(
        () => 'pass' as const,
        () => 'fail' as const,
      ),
    );
  }
  return result;
}

describe('connector conformance catches broken connectors', () => {
  it('one that acknowledges before the record is durable', { timeout: 60_000 }, async () => {
    const result = await outcomes({ ackOnDelivery: true });
    expect(result.get('durable before acknowledge')).toBe('fail');
    expect(result.get('archive unavailable')).toBe('fail');
    expect(result.get('lifecycle')).toBe('pass');
  });

  it('one that logs message text', { timeout: 60_000 }, async () => {
    const result = await outcomes({ logText: true });
    expect(result.get('logs')).toBe('fail');
    expect(result.get('durable before acknowledge')).toBe('pass');
  });

  it('one that drops what it cannot map', { timeout: 60_000 }, async () => {
    const result = await outcomes({ dropUnmappable: true });
    expect(result.get('malformed input')).toBe('fail');
    expect(result.get('replays')).toBe('pass');
  });
});
