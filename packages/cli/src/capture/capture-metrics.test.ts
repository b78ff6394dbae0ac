/**
 * What the capture metrics say about real captures: a real recorder on a real spool (fs sink),
 * forwarded by a real forwarder to a second fs sink standing in for S3, with a fixed clock.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Forwarder, Recorder } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { DEMO_ACCOUNT, demoExchange } from '../demo/demo-exchange.ts';
import type { AccountSnapshot } from './account-supervisor.ts';
import { CaptureMetrics, STREAM_STATES } from './capture-metrics.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const STREAM = `demo:${DEMO_ACCOUNT}`;
const T0 = Date.UTC(2026, 11, 6, 9, 0, 0);

/** The value of the one series `name{labels}` in exposition `text`, or `undefined`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const have = (match[2] ?? '').split(',').filter((part) => part !== '');
    if (wanted.length === have.length && wanted.every((part) => have.includes(part))) return match[3] === '+Inf' ? Infinity : Number(match[3]);
  }
  return undefined;
}

const account = (stream: string, state: AccountSnapshot['state'], connector?: AccountSnapshot['connector']): AccountSnapshot => ({
  stream,
  state,
  since: new Date(T0).toISOString(),
  attempt: 0,
  captured: 0,
  duplicates: 0,
  errors: 0,
  excluded: 0,
  ...(connector ? { connector } : {}),
});

describe('capture metrics', { timeout: 60_000 }, () => {
  it('counts records by kind, duplicates, latency and errors; backlog and lag follow the forwarder; ages follow the clock', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-capture-metrics-'));
    dirs.push(dir);
    let now = T0;
    let accounts: AccountSnapshot[] = [
      account(STREAM, 'running', { state: 'reconnecting', since: new Date(T0).toISOString(), captured: 0, duplicates: 0, errors: 0 }),
      account('whatsapp:bob', 'logged-out'),
    ];
    const spool = await openFsSink({ dir: path.join(dir, 'spool') });
    const remote = await openFsSink({ dir: path.join(dir, 'remote') });
    const lanes: { forwarder?: Forwarder } = {};
    const metrics = new CaptureMetrics({
      accounts: () => accounts,
      forwarded: () => new Map((lanes.forwarder?.status().targets[0]?.streams ?? []).map((lane) => [lane.stream, lane.seq])),
      now: () => now,
      processMetrics: false,
    });
    const forwarder = new Forwarder({ spool, targets: [{ name: 's3', sink: remote }], onForwarded: metrics.observeForwarded, pollMs: 50 });
    lanes.forwarder = forwarder;
    const recorder = new Recorder({ sink: forwarder.sink, onCapture: metrics.observeCapture });
    const writer = recorder.writer({ channel: 'demo', account: DEMO_ACCOUNT, source: { package: 'offchannel', version: '0.0.0' } });

    const events = demoExchange();
    for (const event of events) await writer.capture(event);
    await writer.capture({ kind: 'system', system: { event: 'capture-started' } });
    const [first] = events;
    if (!first) throw new Error('no demo events');
    await writer.capture(first);
    now += 30_000;
    let text = (await metrics.render()).body;

    const byKind = new Map<string, number>();
    for (const event of events) byKind.set(event.kind, (byKind.get(event.kind) ?? 0) + 1);
    for (const [kind, count] of byKind) expect(sample(text, 'offchannel_records_total', { stream: STREAM, kind }), kind).toBe(count);
    expect(sample(text, 'offchannel_records_total', { stream: STREAM, kind: 'system' })).toBe(1);
    expect(sample(text, 'offchannel_duplicates_total', { stream: STREAM })).toBe(1);
    expect(sample(text, 'offchannel_capture_latency_seconds_count', { stream: STREAM })).toBe(events.length + 2);
    expect(sample(text, 'offchannel_capture_latency_seconds_bucket', { stream: STREAM, le: '+Inf' })).toBe(events.length + 2);
    // Not copied yet: the whole stream is the backlog, as old as the clock moved.
    expect(sample(text, 'offchannel_spool_backlog_records', { stream: STREAM })).toBe(events.length + 1);
    expect(sample(text, 'offchannel_forwarder_lag_seconds', { stream: STREAM })).toBe(30);
    // The running connector's own state wins; a parked account shows its parked state.
    expect(sample(text, 'offchannel_connector_state', { stream: STREAM, state: 'reconnecting' })).toBe(1);
    expect(sample(text, 'offchannel_connector_state', { stream: STREAM, state: 'running' })).toBe(0);
    expect(sample(text, 'offchannel_connector_state', { stream: 'whatsapp:bob', state: 'logged-out' })).toBe(1);
    for (const state of STREAM_STATES) expect(sample(text, 'offchannel_connector_state', { stream: 'whatsapp:bob', state }), state).toBe(state === 'logged-out' ? 1 : 0);
    // The duplicate was the last platform event; the system record after it is not one.
    expect(sample(text, 'offchannel_seconds_since_last_event', { stream: STREAM })).toBe(30);
    expect(sample(text, 'offchannel_seconds_since_last_event', { stream: 'whatsapp:bob' })).toBe(Infinity);
    expect(sample(text, 'offchannel_seconds_since_last_attestation', { stream: STREAM })).toBe(Infinity);

    // Another recorder on the same spool (delivery receipts): its stream's head is not known here.
    const receipts = new Recorder({ sink: forwarder.sink });
    await receipts.writer({ channel: 'delivery', account: 'journal', source: { package: 'offchannel', version: '0.0.0' } }).capture({ kind: 'system', system: { event: 'delivered' } });
    await receipts.close();
    forwarder.start();
    await forwarder.drain({ timeoutMs: 30_000 });
    metrics.noteAttestation(STREAM, new Date(now - 5000));
    metrics.noteAttestation(STREAM, new Date(now - 60_000));
    metrics.noteAttestation(STREAM, new Date(Number.NaN));
    metrics.noteFailure('whatsapp:bob', 'WHATSAPP_LOGGED_OUT');
    metrics.noteFailure('whatsapp:bob', 'a message, not a code: +15550100');
    await recorder.close();
    await expect(writer.capture(first)).rejects.toThrow();
    now += 10_000;
    text = (await metrics.render()).body;
    expect(sample(text, 'offchannel_spool_backlog_records', { stream: STREAM })).toBe(0);
    expect(sample(text, 'offchannel_forwarder_lag_seconds', { stream: STREAM })).toBe(0);
    expect(text).not.toContain('stream="delivery:journal"');
    expect(sample(text, 'offchannel_seconds_since_last_attestation', { stream: STREAM })).toBe(15);
    expect(sample(text, 'offchannel_connector_failures_total', { stream: 'whatsapp:bob', code: 'WHATSAPP_LOGGED_OUT' })).toBe(1);
    expect(sample(text, 'offchannel_connector_failures_total', { stream: 'whatsapp:bob', code: 'OTHER' })).toBe(1);
    expect(sample(text, 'offchannel_capture_errors_total', { stream: STREAM, code: 'CLOSED' })).toBe(1);

    // A removed account leaves the state and age series; its counters stay (Prometheus counters never go back).
    accounts = accounts.slice(0, 1);
    text = (await metrics.render()).body;
    expect(text).not.toMatch(/offchannel_connector_state\{stream="whatsapp:bob"/);
    expect(sample(text, 'offchannel_connector_failures_total', { stream: 'whatsapp:bob', code: 'WHATSAPP_LOGGED_OUT' })).toBe(1);

    // Stream names only: no message text, conversation, sender or native id reaches the text.
    for (const event of events) {
      for (const item of [event.text, event.conversation?.id, event.conversation?.title, event.sender?.id, event.sender?.name, event.native?.id]) {
        if (typeof item === 'string' && item.length >= 4 && item !== DEMO_ACCOUNT) expect(text.includes(item), item).toBe(false);
      }
    }
    expect(text).not.toContain('+15550100');
    await forwarder.stop();
    await spool.close();
    await remote.close();
  });

  it('counts what spool pruning dropped, segments and blobs apart', async () => {
    const metrics = new CaptureMetrics({ accounts: () => [], now: () => T0, processMetrics: false });
    expect((await metrics.render()).body).not.toMatch(/offchannel_spool_pruned_total\{/);
    metrics.observePruned({ stream: STREAM, segments: 3, bytes: 3_000, throughSeq: 90, heldBytes: 500 });
    metrics.observePruned({ stream: 'whatsapp:bob', segments: 1, bytes: 700, throughSeq: 10, heldBytes: 0 });
    expect(sample((await metrics.render()).body, 'offchannel_spool_pruned_undelivered_records_total', { stream: STREAM })).toBeUndefined();
    // The size cap passed a delivery target's hold at seq 4: records 4–12 were not delivered.
    metrics.observePruned({ stream: STREAM, segments: 1, bytes: 900, throughSeq: 12, heldBytes: 500, passedHold: { fromSeq: 4, throughSeq: 12 } });
    metrics.observeBlobsPruned({ blobs: 40, bytes: 123_456 });
    const text = (await metrics.render()).body;
    expect(sample(text, 'offchannel_spool_pruned_total', { what: 'segments' })).toBe(5);
    expect(sample(text, 'offchannel_spool_pruned_bytes_total', { what: 'segments' })).toBe(4_600);
    expect(sample(text, 'offchannel_spool_pruned_undelivered_records_total', { stream: STREAM })).toBe(9);
    expect(sample(text, 'offchannel_spool_pruned_total', { what: 'blobs' })).toBe(40);
    expect(sample(text, 'offchannel_spool_pruned_bytes_total', { what: 'blobs' })).toBe(123_456);
  });

  it('adds Node.js process metrics by default', async () => {
    const metrics = new CaptureMetrics({ accounts: () => [] });
    const text = (await metrics.render()).body;
    expect(sample(text, 'process_cpu_seconds_total')).toBeGreaterThanOrEqual(0);
    expect(text).toContain('nodejs_heap_size_used_bytes');
    expect(text).not.toContain('offchannel_spool_backlog_records');
  });
});
