import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type CaptureInput, Recorder, type StreamWriter } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type AttestationEvidence, collectCoverage } from './collect-coverage.ts';

const T0 = Date.UTC(2026, 10, 2, 9, 0, 0);
const MIN = 60_000;
const dirs: string[] = [];

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A real archive, written by the Recorder with a clock the script moves: `at(minutes, input)`. */
async function archive(script: (at: (minutes: number, input: CaptureInput, stream?: string) => Promise<void>) => Promise<void>) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-coverage-'));
  dirs.push(dir);
  let now = T0;
  const sink = await openFsSink({ dir });
  const recorder = new Recorder({ sink, clock: () => new Date(now) });
  const writers = new Map<string, StreamWriter>();
  const writer = (stream: string) => {
    let found = writers.get(stream);
    if (!found) {
      const [channel = '', account = ''] = stream.split(':');
      found = recorder.writer({ channel, account, source: { package: 'offchannel', version: '0.0.0' } });
      writers.set(stream, found);
    }
    return found;
  };
  await script(async (minutes, input, stream = 'demo:alice') => {
    now = T0 + minutes * MIN;
    await writer(stream).capture(input);
  });
  await recorder.close();
  return sink;
}

let n = 0;
const state = (event: string, fields: Record<string, string>): CaptureInput => ({ kind: 'system', key: `capture-state:${fields.run ?? 'x'}:${++n}`, system: { event, fields } });
const transition = (event: string, reason?: string): CaptureInput => ({ kind: 'system', system: { event: `connector-${event}`, ...(reason ? { fields: { reason } } : {}) } });
const message = (id: string, minutes: number): CaptureInput => ({
  kind: 'message',
  key: `message:${id}`,
  conversation: { id: 'dm:bob', type: 'direct' },
  sender: { id: 'bob' },
  direction: 'inbound',
  native: { id },
  text: `hello ${id}`,
  sentAt: new Date(T0 + minutes * MIN).toISOString(),
});
const at = (minutes: number) => new Date(T0 + minutes * MIN).toISOString();
const period = { from: T0, to: T0 + 120 * MIN, attestEveryMs: 5 * MIN };

describe('collectCoverage', () => {
  it('reports a process killed and restarted as "process down" from its last sign of life to the new start', async () => {
    const sink = await archive(async (write) => {
      await write(0, state('capture-started', { run: 'a', attempt: '0' }));
      await write(10, message('m1', 10));
      await write(20, message('m2', 20));
      await write(50, state('capture-started', { run: 'b', attempt: '0' }));
      await write(60, message('m3', 60));
    });
    const report = await collectCoverage(sink, period);
    await sink.close();
    const [stream] = report.streams;
    expect(stream?.stream).toBe('demo:alice');
    expect(stream?.gaps.map((gap) => [gap.from, gap.to, gap.cause, gap.open])).toEqual([[at(20), at(50), 'process down', undefined]]);
    expect(stream?.gaps[0]?.detail).toContain('without recording capture-stopped');
    expect(stream?.covered).toBe(false);
    expect(stream?.state).toBe('live');
    expect(stream?.live).toEqual([
      { from: at(0), to: at(20) },
      { from: at(50), to: at(120) },
    ]);
    expect(stream?.daily).toEqual([expect.objectContaining({ day: '2026-11-02', messages: 3, gaps: 1, other: 2 })]);
  });

  it('a graceful stop and start is "process down" (stopped); the same run restarting is not a crash', async () => {
    const sink = await archive(async (write) => {
      await write(0, state('capture-started', { run: 'a', attempt: '0' }));
      await write(5, state('capture-restarting', { run: 'a', attempt: '1', code: 'CONNECTOR_FAILED' }));
      await write(6, state('capture-started', { run: 'a', attempt: '1' }));
      await write(30, state('capture-stopped', { run: 'a', reason: 'shutdown' }));
      await write(40, state('capture-started', { run: 'b', attempt: '0' }));
    });
    const report = await collectCoverage(sink, period);
    await sink.close();
    expect(report.streams[0]?.gaps).toEqual([
      { from: at(5), to: at(6), cause: 'disconnected', detail: 'capture-restarting (CONNECTOR_FAILED)' },
      { from: at(30), to: at(40), cause: 'process down', detail: 'capture-stopped (shutdown)' },
    ]);
  });

  it('logged out, unlinked and disconnected come from state records and close when capture runs again', async () => {
    const sink = await archive(async (write) => {
      await write(0, state('capture-started', { run: 'a', attempt: '0' }));
      await write(10, transition('logged-out', '401'));
      await write(11, state('capture-logged-out', { run: 'a', code: 'CONNECTOR_LOGGED_OUT' }));
      await write(40, state('capture-started', { run: 'a', attempt: '0' }));
      await write(41, transition('connected'));
      await write(50, transition('disconnected', 'connectionLost'));
      await write(52, transition('connected'));
      await write(0, state('capture-started', { run: 'a', attempt: '0' }), 'signal:bob');
      await write(70, { kind: 'system', key: 'event:device-unlinked:1', system: { event: 'device-unlinked', fields: { deviceId: '2' } } }, 'signal:bob');
    });
    const report = await collectCoverage(sink, period);
    await sink.close();
    const [demo, signal] = report.streams;
    expect(demo?.gaps.map((gap) => [gap.from, gap.to, gap.cause, gap.detail])).toEqual([
      [at(10), at(40), 'logged out', 'connector-logged-out (401)'],
      [at(50), at(52), 'disconnected', 'connector-disconnected (connectionLost)'],
    ]);
    expect(signal?.stream).toBe('signal:bob');
    expect(signal?.gaps).toEqual([{ from: at(70), to: at(120), cause: 'unlinked', detail: 'device-unlinked', open: true }]);
    expect(signal?.state).toBe('unlinked');
    expect(signal?.reconciliation).toMatch(/^not possible: Signal gives a linked device no message history/);
    expect(demo?.reconciliation).toBeUndefined();
  });

  it('reports gap records as platform-reported loss with window, positions, count and what was recovered', async () => {
    const sink = await archive(async (write) => {
      await write(0, state('capture-started', { run: 'a', attempt: '0' }));
      await write(30, { kind: 'gap', key: 'gap:1', gap: { reason: 'differenceTooLong', from: '100', to: '180', missing: 80 } });
      await write(31, { kind: 'gap', key: 'gap:2', gap: { reason: 'offline-count-mismatch', from: at(12), to: at(25), missing: 3 }, meta: { recovered: 'partial' } });
      await write(32, { ...message('r1', 20), meta: { recoveredBy: 'history-fetch' } });
    });
    const report = await collectCoverage(sink, period);
    await sink.close();
    expect(report.streams[0]?.gaps).toEqual([
      { from: at(12), to: at(25), cause: 'platform-reported loss', detail: 'offline-count-mismatch', positions: { from: at(12), to: at(25) }, missing: 3, seq: 3, recovered: 'partial' },
      { from: at(30), to: at(30), cause: 'platform-reported loss', detail: 'differenceTooLong', positions: { from: '100', to: '180' }, missing: 80, seq: 2 },
    ]);
    expect(report.streams[0]?.daily[0]).toMatchObject({ messages: 1, recovered: 1, gaps: 2 });
  });

  it('shows against each gap what reconciliation did, from the gap-backfilled / gap-not-recovered records naming its key', async () => {
    const gapInput = (key: string, minutes: number): CaptureInput => ({ kind: 'gap', key, gap: { reason: 'offline-count-mismatch', from: at(minutes - 5), to: at(minutes), missing: 2 } });
    const outcome = (event: string, gap: string, fields: Record<string, string>): CaptureInput => ({ kind: 'system', key: `${event}:${gap}:${++n}`, system: { event, fields: { gap, method: 'fetchMessageHistory', ...fields } } });
    const sink = await archive(async (write) => {
      await write(0, state('capture-started', { run: 'a', attempt: '0' }));
      await write(10, gapInput('offline-count:a', 10));
      await write(20, gapInput('offline-count:b', 20));
      await write(30, gapInput('offline-count:c', 30));
      await write(35, gapInput('offline-count:d', 35));
      // a: the phone was offline, then answered; b: answered in two parts; c: never answered.
      await write(40, outcome('gap-not-recovered', 'offline-count:a', { reason: 'phone-did-not-answer', attempt: '1', recorded: '0' }));
      await write(41, outcome('gap-not-recovered', 'offline-count:c', { reason: 'phone-did-not-answer', attempt: '1', recorded: '0' }));
      await write(50, outcome('gap-backfilled', 'offline-count:a', { attempt: '2', recorded: '2' }));
      await write(51, outcome('gap-backfilled', 'offline-count:b', { attempt: '1', recorded: '1', reason: 'some-chats-did-not-answer' }));
      await write(52, outcome('gap-backfilled', 'offline-count:b', { attempt: '2', recorded: '3' }));
      await write(53, outcome('gap-not-recovered', 'offline-count:b', { reason: 'phone-did-not-answer', attempt: '3', recorded: '0' }));
      await write(54, outcome('gap-backfilled', 'offline-count:unknown', { recorded: '9' }));
      // d: one contact filled the chat slots; the chats left over are counted.
      await write(55, outcome('gap-backfilled', 'offline-count:d', { attempt: '1', recorded: '1', reason: 'some-chats-not-asked', notAsked: '4', unaskedChats: 'possible' }));
    });
    const report = await collectCoverage(sink, period);
    await sink.close();
    expect(report.streams[0]?.gaps.map((g) => [g.from, g.recovered])).toEqual([
      [at(5), '2 recovered (fetchMessageHistory)'],
      [at(15), '4 recovered (fetchMessageHistory)'],
      [at(25), 'not recovered: phone-did-not-answer (attempt 1)'],
      [at(30), '1 recovered (fetchMessageHistory, partial: some-chats-not-asked; 4 messages in chats not asked)'],
    ]);
  });

  it('with attestations, silence longer than the tolerance is "process down", also at the end of the period', async () => {
    const sink = await archive(async (write) => {
      await write(0, state('capture-started', { run: 'a', attempt: '0' }));
      await write(5, message('m1', 5));
    });
    // Attested every 5 minutes until 30, silent until 60 (a hung host), then until 90, then nothing.
    const times = [...range(0, 30, 5), ...range(60, 90, 5)];
    async function* attestations(): AsyncIterable<AttestationEvidence> {
      for (const minutes of times) yield { host: 'h1', time: at(minutes), streams: [{ stream: 'demo:alice', state: 'running' }, { stream: 'delivery:smtp', state: 'running' }] };
    }
    const report = await collectCoverage(sink, { ...period, attestations: attestations() });
    await sink.close();
    expect(report.toleranceMs).toBe(10 * MIN);
    expect(report.streams.map((stream) => stream.stream)).toEqual(['demo:alice']);
    const [stream] = report.streams;
    expect(stream?.attested).toBe(true);
    expect(stream?.gaps).toEqual([
      { from: at(30), to: at(60), cause: 'process down', detail: 'no attestation or record for 1800s' },
      { from: at(90), to: at(120), cause: 'process down', detail: `no attestation or record since ${at(90)}`, open: true },
    ]);
  });

  it('a restart whose first attestation (stamped to the second) comes just before its capture-started is one gap', async () => {
    const sink = await archive(async (write) => {
      await write(0, state('capture-started', { run: 'a', attempt: '0' }));
      await write(1, message('m1', 1));
      await write(30.5, state('capture-started', { run: 'b', attempt: '0' }));
    });
    async function* attestations(): AsyncIterable<AttestationEvidence> {
      for (const minutes of [0, 0.5, 1, 30]) yield { host: 'h1', time: at(minutes), streams: [{ stream: 'demo:alice', state: 'connected' }] };
    }
    const report = await collectCoverage(sink, { ...period, attestEveryMs: 30_000, to: T0 + 31 * MIN, attestations: attestations() });
    await sink.close();
    const gaps = report.streams[0]?.gaps ?? [];
    expect(gaps.map((gap) => [gap.from, gap.to, gap.cause])).toEqual([[at(1), at(30.5), 'process down']]);
    expect(gaps[0]?.detail).toMatch(/without recording capture-stopped.*; no attestation or record for 1740s/);
  });

  it('clips to the period, starts at the first evidence, and counts excluded and problem records per day', async () => {
    const sink = await archive(async (write) => {
      await write(-60, state('capture-started', { run: 'a', attempt: '0' }));
      await write(-50, state('capture-logged-out', { run: 'a', code: 'CONNECTOR_LOGGED_OUT' }));
      await write(30, state('capture-started', { run: 'a', attempt: '0' }));
      await write(31, { kind: 'policy', key: 'ex:1', system: { event: 'conversation-excluded', fields: { count: '7', version: '1' } } });
      await write(32, { kind: 'undecryptable', key: 'u:1', problem: { reason: 'bad-mac' }, raw: { bytes: new Uint8Array([1, 2]), format: 'test' } });
      await write(33, { kind: 'unsupported', key: 'u:2', problem: { reason: 'unknown-type' }, raw: { bytes: new Uint8Array([3]), format: 'test' } });
      await write(24 * 60 + 1, message('next-day', 24 * 60 + 1));
      await write(0, state('capture-started', { run: 'a', attempt: '0' }), 'demo:late');
    });
    const report = await collectCoverage(sink, { ...period, to: T0 + 2 * 24 * 60 * MIN });
    await sink.close();
    const [alice, late] = report.streams;
    expect(alice?.gaps).toEqual([{ from: at(0), to: at(30), cause: 'logged out', detail: 'capture-logged-out (CONNECTOR_LOGGED_OUT)' }]);
    expect(alice?.daily).toEqual([
      { day: '2026-11-02', messages: 0, edits: 0, deletes: 0, excluded: 7, undecryptable: 1, unsupported: 1, gaps: 1, recovered: 0, other: 1 },
      { day: '2026-11-03', messages: 1, edits: 0, deletes: 0, excluded: 0, undecryptable: 0, unsupported: 0, gaps: 0, recovered: 0, other: 0 },
    ]);
    expect(late).toMatchObject({ stream: 'demo:late', from: at(0), covered: true, gaps: [] });
  });

  it('with verified evidence, records after the last verified checkpoint and unverified streams are not evidence', async () => {
    const sink = await archive(async (write) => {
      await write(0, state('capture-started', { run: 'a', attempt: '0' }));
      await write(10, state('capture-logged-out', { run: 'a', code: 'CONNECTOR_LOGGED_OUT' }));
      await write(20, state('capture-started', { run: 'a', attempt: '0' }));
      await write(0, message('x', 0), 'demo:unsigned');
    });
    const report = await collectCoverage(sink, { ...period, verifiedThrough: new Map([['demo:alice', 2]]) });
    await sink.close();
    expect(report.evidence).toBe('verified');
    const [alice, unsigned] = report.streams;
    expect(alice?.gaps).toEqual([{ from: at(10), to: at(120), cause: 'logged out', detail: 'capture-logged-out (CONNECTOR_LOGGED_OUT)', open: true }]);
    expect(unsigned).toMatchObject({ stream: 'demo:unsigned', state: 'unverified', covered: false, records: 0 });
  });
});

function range(from: number, to: number, step: number): number[] {
  const out: number[] = [];
  for (let value = from; value <= to; value += step) out.push(value);
  return out;
}
