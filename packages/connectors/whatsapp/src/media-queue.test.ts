import { describe, expect, it } from 'vitest';
import { MediaUnavailableError, type MediaDownloader } from './media-download.ts';
import { MediaQueue } from './media-queue.ts';
import type { MediaOutcome, PendingMedia } from './map-whatsapp.ts';

const pending = (n: number): PendingMedia => ({
  key: `attachment:c:s:${n}`,
  ref: { kind: 'image', directPath: `/m${n}` },
  target: { id: String(n), chat: 'c', sender: 's' },
  context: { sentAt: '2026-11-21T09:00:00.000Z' },
  origin: 'notify',
  declared: { mime: 'image/jpeg' },
});

/** A downloader whose downloads end only when the test says so; it ignores the abort signal on purpose. */
function controlled() {
  const calls: { path: string | undefined; signal: AbortSignal | undefined; resolve: (bytes: Uint8Array) => void; reject: (error: unknown) => void }[] = [];
  const download: MediaDownloader = (ref, signal) =>
    new Promise((resolve, reject) => {
      calls.push({ path: ref.directPath, signal, resolve, reject });
    });
  return { calls, download };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('MediaQueue', () => {
  it('runs at most `concurrency` downloads, in order, and reports each outcome once', async () => {
    const { calls, download } = controlled();
    const outcomes: [string, MediaOutcome][] = [];
    const queue = new MediaQueue(download, 2, (media, outcome) => outcomes.push([media.key, outcome]));
    for (let n = 1; n <= 5; n++) queue.submit(pending(n));
    expect(calls.map((call) => call.path)).toEqual(['/m1', '/m2']);
    expect(queue.size).toBe(5);
    calls[1]?.resolve(new Uint8Array([2]));
    await tick();
    expect(calls.map((call) => call.path)).toEqual(['/m1', '/m2', '/m3']);
    calls[0]?.reject(new MediaUnavailableError('timeout'));
    calls[2]?.reject(new TypeError('secret https://mmg.whatsapp.net/path in the message'));
    await tick();
    expect(calls).toHaveLength(5);
    calls[3]?.resolve(new Uint8Array([4]));
    calls[4]?.resolve(new Uint8Array([5]));
    await queue.idle();
    expect(outcomes).toEqual([
      ['attachment:c:s:2', { bytes: new Uint8Array([2]) }],
      ['attachment:c:s:1', { reason: 'timeout' }],
      ['attachment:c:s:3', { reason: 'download-failed: TypeError' }], // never the error's message
      ['attachment:c:s:4', { bytes: new Uint8Array([4]) }],
      ['attachment:c:s:5', { bytes: new Uint8Array([5]) }],
    ]);
    expect(queue.size).toBe(0);
  });

  it('close() reports every running and waiting download `stopped` at once, aborts them, and ignores late results', async () => {
    const { calls, download } = controlled();
    const outcomes: [string, MediaOutcome][] = [];
    const queue = new MediaQueue(download, 2, (media, outcome) => outcomes.push([media.key, outcome]));
    for (let n = 1; n <= 4; n++) queue.submit(pending(n));
    queue.close();
    expect(outcomes.map(([key, outcome]) => [key, 'reason' in outcome ? outcome.reason : 'bytes'])).toEqual([
      ['attachment:c:s:3', 'stopped'],
      ['attachment:c:s:4', 'stopped'],
      ['attachment:c:s:1', 'stopped'],
      ['attachment:c:s:2', 'stopped'],
    ]);
    expect(calls.map((call) => call.signal?.aborted)).toEqual([true, true]);
    await queue.idle(); // nothing left, although both downloads are still "running" in the downloader
    calls[0]?.resolve(new Uint8Array([1]));
    await tick();
    expect(outcomes).toHaveLength(4);
    queue.submit(pending(5)); // after close: stopped at once, never downloaded
    expect(outcomes.at(-1)).toEqual(['attachment:c:s:5', { reason: 'stopped' }]);
    expect(calls).toHaveLength(2);
    queue.open();
    queue.submit(pending(6));
    expect(calls.at(-1)?.path).toBe('/m6');
  });

  it('refuses a concurrency that is not a positive integer', () => {
    const { download } = controlled();
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => new MediaQueue(download, bad, () => undefined)).toThrow(RangeError);
  });
});
