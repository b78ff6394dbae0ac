/**
 * What the recorder-level benches capture, so their figures compare: a 1 KiB message in one of
 * 50 direct chats, alternating direction. Plus the record the Recorder would build from it (what
 * the naive baselines hash and write themselves) and a percentile over sorted latencies.
 */
import type { CaptureInput } from '@offchannel/core';

export const BENCH_SOURCE = { package: '@offchannel-bench/bench', version: '0' } as const;

export const BENCH_TEXT = 'Indicative levels for the 5y: 4.12 / 4.15, size up to 50m. '.repeat(20).slice(0, 1024);

export function benchInput(index: number): CaptureInput {
  return {
    kind: 'message',
    key: `message:${index}`,
    sentAt: '2026-11-21T09:30:00.000Z',
    conversation: { id: `chat-${index % 50}`, type: 'direct' },
    sender: { id: `party-${index % 50}` },
    direction: index % 2 === 0 ? 'inbound' : 'outbound',
    native: { id: `m-${index}` },
    text: BENCH_TEXT,
  };
}

/** The record the Recorder would build for `benchInput(index)` as record `index + 1` of stream `bench:<account>`. */
export function naiveRecord(index: number, prev: string, account: string) {
  return { ...benchInput(index), v: 1, stream: `bench:${account}`, seq: index + 1, prev, channel: 'bench', account, capturedAt: new Date().toISOString(), source: BENCH_SOURCE };
}

/** The `p`th percentile of ascending `sorted`. */
export function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/**
 * Captures bench records 0 to `count` − 1 with `writer`, at most `inFlight` at a time, each next
 * one launched as one finishes; resolves when all are durable, rejects on the first failure.
 */
export function captureBenchRecords(writer: { capture(input: CaptureInput): Promise<unknown> }, count: number, inFlight: number): Promise<void> {
  let next = 0;
  let done = 0;
  return new Promise<void>((resolve, reject) => {
    const launch = (): void => {
      while (next < count && next - done < inFlight) {
        writer.capture(benchInput(next++)).then(() => {
          done++;
          if (done === count) resolve();
          else launch();
        }, reject);
      }
    };
    launch();
  });
}
