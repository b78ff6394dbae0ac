import { describe, expect, it } from 'vitest';
import { InvalidBatchError } from '../errors/sink-errors.ts';
import { ZERO_HASH } from '../hash/sha256.ts';
import { assertAppendBatch } from './check-inputs.ts';
import type { AppendBatch } from './sink.ts';

/** A batch of `sizes`-byte records (bytes 0x20–0x7e), framed in one `lines` buffer like the recorder's. */
function framedBatch(sizes: readonly number[], newlineAt: (record: number, size: number) => number | undefined): AppendBatch {
  const total = sizes.reduce((sum, size) => sum + size + 1, 0);
  // Inside a larger buffer, at an offset, as the recorder's batch buffers are.
  const lines = Buffer.alloc(total + 37, 0x41).subarray(11, 11 + total);
  const records: Uint8Array[] = [];
  let position = 0;
  for (const [index, size] of sizes.entries()) {
    const record = new Uint8Array(lines.buffer, lines.byteOffset + position, size);
    for (let at = 0; at < size; at++) record[at] = 0x20 + ((index * 7 + at) % 95);
    const inside = newlineAt(index, size);
    if (inside !== undefined) record[inside] = 0x0a;
    lines[position + size] = 0x0a;
    records.push(record);
    position += size + 1;
  }
  return { stream: 'demo:alice', firstSeq: 1, prev: ZERO_HASH, records, lines };
}

describe('assertAppendBatch', () => {
  it('finds a newline anywhere inside any record of a framed batch, and names the record', () => {
    let state = 5;
    const next = (limit: number): number => {
      state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
      return state % limit;
    };
    for (let round = 0; round < 300; round++) {
      const sizes = Array.from({ length: 1 + next(40) }, () => 1 + next(300));
      const bad = next(3) === 0 ? undefined : next(sizes.length);
      const batch = framedBatch(sizes, (record, size) => (record === bad ? next(size) : undefined));
      const { lines: _lines, ...unframed } = batch;
      if (bad === undefined) {
        expect(() => { assertAppendBatch(batch); }).not.toThrow();
        expect(() => { assertAppendBatch(unframed); }).not.toThrow();
      } else {
        const error = new InvalidBatchError(`record ${bad} contains a newline byte`);
        expect(() => { assertAppendBatch(batch); }, `round ${round}`).toThrow(error);
        expect(() => { assertAppendBatch(unframed); }, `round ${round}`).toThrow(error);
      }
    }
  });

  it('finds a newline in the first byte, the last byte and in a one-byte record', () => {
    for (const [sizes, record, at] of [[[5, 5], 0, 0], [[5, 5], 1, 4], [[3, 1, 3], 1, 0], [[1], 0, 0]] as const) {
      const batch = framedBatch(sizes, (index) => (index === record ? at : undefined));
      expect(() => { assertAppendBatch(batch); }).toThrow(new InvalidBatchError(`record ${record} contains a newline byte`));
    }
  });
});
