/**
 * A ranged checkpoint listing on a real Ceph RGW costs one request whatever the history: the
 * listing starts after the key of `after` (S3 `KeyMarker`), where a full listing pages through
 * every key (1,000 a request).
 */
import { describe, expect, it } from 'vitest';
import { freshSink } from './__fixtures__/buckets.ts';

describe('checkpoint listings by range on Ceph RGW', () => {
  it('lists the newest checkpoints of 1,100 in one request; every one takes two', { timeout: 300_000 }, async () => {
    const { sink } = await freshSink();
    try {
      const stream = 'demo:alice';
      const sizes = Array.from({ length: 1100 }, (_, index) => (index + 1) * 10);
      for (let start = 0; start < sizes.length; start += 25) {
        await Promise.all(sizes.slice(start, start + 25).map((size) => sink.putCheckpoint(stream, size, 'note', new TextEncoder().encode(`note ${size}\n`))));
      }
      await sink.putCheckpoint(stream, 11_000, 'rfc3161', new TextEncoder().encode('token'));
      let lists = 0;
      sink.client.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'ListObjectVersionsCommand') lists++;
          return next(args);
        },
        { step: 'initialize', name: 'countLists' },
      );
      expect(await sink.checkpointFiles(stream, { after: 10_970 })).toEqual([
        { size: 10_980, file: 'note' },
        { size: 10_990, file: 'note' },
        { size: 11_000, file: 'note' },
        { size: 11_000, file: 'rfc3161' },
      ]);
      expect(lists).toBe(1);
      lists = 0;
      expect(await sink.checkpoints(stream, { after: 9 })).toEqual(sizes);
      expect(lists).toBe(2);
    } finally {
      await sink.close();
    }
  });
});
