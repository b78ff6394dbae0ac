/**
 * The `delivery-missed` records a target writes for records pruned before it delivered them:
 * keyed by the whole gap, split between ranges when long, never cut inside a range.
 */
import { describe, expect, it } from 'vitest';
import { missedCaptures } from './delivery-receipts.ts';

const at = new Date('2026-11-20T09:00:00Z');
const base = { target: 'journal', to: 'journal@archive.example', stream: 'demo:alice', at };
const fields = (input: ReturnType<typeof missedCaptures>[number]): Record<string, unknown> => (input.system as { fields: Record<string, unknown> }).fields;

describe('missedCaptures', () => {
  it('keys a gap by its first and last seq: the same gap once, a grown gap again', () => {
    const [gap] = missedCaptures({ ...base, ranges: ['4-9', '12'] });
    expect(gap?.key).toBe('delivery-missed:demo:alice:4-12');
    expect(fields(gap as NonNullable<typeof gap>)).toMatchObject({ stream: 'demo:alice', seqs: '4-9 12', reason: 'pruned-from-spool-before-delivery' });
    expect(missedCaptures({ ...base, ranges: ['4-9', '12'] })[0]?.key).toBe(gap?.key);
    // A crash before the cursor was written, then a further prune: the gap starts at 4 again
    // but ends later, and is recorded whole under its own key.
    expect(missedCaptures({ ...base, ranges: ['4-9', '12-30'] })[0]?.key).toBe('delivery-missed:demo:alice:4-30');
    expect(missedCaptures({ ...base, ranges: ['7'] })[0]?.key).toBe('delivery-missed:demo:alice:7-7');
  });

  it('splits a long list between ranges, never inside one, and loses none', () => {
    // Every other seq delivered: 3,000 single-seq ranges of up to 5 digits and a space.
    const ranges = Array.from({ length: 3_000 }, (_, index) => String(10_001 + 2 * index));
    const inputs = missedCaptures({ ...base, ranges });
    expect(inputs.length).toBeGreaterThan(1);
    const listed = inputs.flatMap((input) => String(fields(input).seqs).split(' '));
    expect(listed).toEqual(ranges);
    for (const input of inputs) {
      const seqs = String(fields(input).seqs);
      expect(seqs.length).toBeLessThanOrEqual(10_000);
      const [first, last] = [seqs.split(' ')[0], seqs.split(' ').at(-1)];
      expect(input.key).toBe(`delivery-missed:demo:alice:${first}-${last}`);
    }
    expect(new Set(inputs.map((input) => input.key)).size).toBe(inputs.length);
  });
});
