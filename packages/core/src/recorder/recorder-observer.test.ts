/** `RecorderOptions.onCapture`: each capture's stream, kind, outcome and time to durable, and nothing of its content. */
import { describe, expect, it } from 'vitest';
import type { CaptureInput } from '../record/capture-input.ts';
import type { AppendBatch, Sink } from '../sink/sink.ts';
import { createMemorySink } from '../testing/memory-sink.ts';
import { type CaptureEvent, Recorder } from './recorder.ts';

const source = { package: '@offchannel/test', version: '0.0.0' };
const target = { channel: 'demo', account: 'alice', source };

function message(id: string): CaptureInput {
  return { kind: 'message', sentAt: new Date(Date.UTC(2026, 10, 21, 9, 0, 0)), conversation: { id: 'chat-secret', type: 'direct' }, sender: { id: 'bob-secret' }, direction: 'inbound', native: { id }, text: `text of ${id}` };
}

/** A memory sink whose appends fail while `down` is set, as an unreachable archive's do. */
function flakySink(): { sink: Sink; down: (value: boolean) => void } {
  const inner = createMemorySink();
  let down = false;
  const sink: Sink = Object.assign(Object.create(inner) as Sink, {
    appendBatch: (batch: AppendBatch) => (down ? Promise.reject(Object.assign(new Error('disk gone'), { code: 'EIO' })) : inner.appendBatch(batch)),
  });
  return { sink, down: (value) => { down = value; } };
}

describe('Recorder onCapture', () => {
  it('reports recorded, duplicate and failed captures with kind, seq, code and a duration, and never content', async () => {
    const events: CaptureEvent[] = [];
    const { sink, down } = flakySink();
    const recorder = new Recorder({ sink, allowVolatileSink: true, onCapture: (event) => events.push(event) });
    const writer = recorder.writer(target);
    await writer.capture(message('m1'));
    await writer.capture({ kind: 'system', system: { event: 'capture-started' } });
    await writer.capture(message('m1'));
    down(true);
    await expect(writer.capture(message('m2'))).rejects.toThrow();
    down(false);
    await expect(writer.capture({ kind: 'nonsense' } as unknown as CaptureInput)).rejects.toThrow();
    await recorder.close();
    expect(events.map(({ seconds: _seconds, ...rest }) => rest)).toEqual([
      { stream: 'demo:alice', kind: 'message', status: 'recorded', seq: 1 },
      { stream: 'demo:alice', kind: 'system', status: 'recorded', seq: 2 },
      { stream: 'demo:alice', kind: 'message', status: 'duplicate', seq: 1 },
      { stream: 'demo:alice', kind: undefined, status: 'failed', code: 'UNKNOWN' },
      { stream: 'demo:alice', kind: undefined, status: 'failed', code: 'INVALID_RECORD' },
    ]);
    for (const event of events) expect(event.seconds).toBeGreaterThanOrEqual(0);
    expect(JSON.stringify(events)).not.toMatch(/secret|text of/);
  });

  it('ignores an observer that throws: the capture still resolves durable', async () => {
    const recorder = new Recorder({ sink: createMemorySink(), allowVolatileSink: true, onCapture: () => { throw new Error('metrics broke'); } });
    const result = await recorder.writer(target).capture(message('m1'));
    expect(result).toMatchObject({ status: 'recorded', seq: 1 });
    await recorder.close();
  });
});
