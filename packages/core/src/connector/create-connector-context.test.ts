import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeRecord } from '../record/encode-record.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import { Recorder } from '../recorder/recorder.ts';
import { openStateStore } from '../state/secret-store.ts';
import { createMemorySink } from '../testing/memory-sink.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { REJECTED_INPUT_BYTES_FORMAT, REJECTED_INPUT_FORMAT, createConnectorContext } from './create-connector-context.ts';

const connector = { channel: 'demo', account: 'alice', source: { package: '@offchannel/demo', version: '1.0.0', upstream: 'demo-lib@2' } };

async function setup() {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-ctx-'));
  const sink = createMemorySink();
  const logger = createRecordingLogger();
  const state = await openStateStore({ dir, key: new Uint8Array(32).fill(1) });
  const ctx = createConnectorContext({ recorder: new Recorder({ sink, allowVolatileSink: true }), connector, state, logger, signal: new AbortController().signal });
  return { dir, sink, logger, state, ctx };
}

describe('createConnectorContext', () => {
  it('captures into the connector stream with its source', async () => {
    const { dir, sink, ctx } = await setup();
    expect(ctx.stream).toBe('demo:alice');
    const result = await ctx.capture({ kind: 'system', key: 'boot', system: { event: 'capture-started' } });
    expect(result).toMatchObject({ status: 'recorded', seq: 1 });
    expect(await ctx.lookup('boot')).toBe(1);
    for await (const stored of sink.read('demo:alice')) expect(decodeRecord(stored.bytes).record.source).toEqual(connector.source);
    await rm(dir, { recursive: true });
  });

  it('records rejected input as unsupported with the input as evidence — nothing is lost', async () => {
    const { dir, sink, ctx, logger } = await setup();
    const secret = 'SECRET-CLIENT-ORDER';
    const big = new Uint8Array(10_000).fill(5);
    const bad = { kind: 'message', native: { id: 'x' }, text: secret, sender: { id: '' }, attachments: [{ bytes: big, mime: 'image/png' }], raw: { bytes: new Uint8Array([1, 2]), format: 'p' } } as unknown as CaptureInput;
    const result = await ctx.capture(bad);
    expect(result.status).toBe('recorded');
    const again = await ctx.capture(bad);
    expect(again.status).toBe('duplicate');
    const records = [];
    for await (const stored of sink.read('demo:alice')) records.push(decodeRecord(stored.bytes).record);
    // The 10,000-byte attachment is the raw of a record of its own, so a record names its blob
    // (forwarded, verified, kept by spool pruning), then the evidence naming it.
    expect(records).toHaveLength(2);
    const [part, record] = records;
    expect(part).toMatchObject({ kind: 'unsupported', problem: { reason: 'invalid-capture-input' }, raw: { format: REJECTED_INPUT_BYTES_FORMAT, size: 10_000 } });
    expect(record).toMatchObject({ kind: 'unsupported', problem: { reason: 'invalid-capture-input' }, raw: { format: REJECTED_INPUT_FORMAT } });
    expect(record?.problem?.detail).toMatch(/INVALID_RECORD at record\.(sender\.id|conversation|sentAt|direction)/);
    const evidence = JSON.parse(Buffer.from((await sink.getBlob(record?.raw?.sha256 ?? '')) ?? []).toString('utf8')) as { text: string; attachments: [{ bytes: { $blob: { sha256: string } } }]; raw: { bytes: { $base64: string } } };
    expect(evidence.text).toBe(secret);
    expect(evidence.raw.bytes.$base64).toBe('AQI=');
    const named = evidence.attachments[0].bytes.$blob.sha256;
    expect(part?.raw?.sha256).toBe(named);
    expect((await sink.getBlob(named))?.length).toBe(10_000);
    expect(logger.text()).not.toContain(secret);
    expect(logger.lines.some((line) => line.level === 'warn')).toBe(true);
    await rm(dir, { recursive: true });
  });

  it('keeps an own __proto__ member of rejected input as data, and records repeated bytes once', async () => {
    const { dir, sink, ctx } = await setup();
    const big = new Uint8Array(5_000).fill(7);
    const native = JSON.parse('{"id":"y","__proto__":{"polluted":"SECRET-MEMBER"}}') as unknown;
    const bad = { kind: 'message', native, text: 'x', sender: { id: '' }, attachments: [{ bytes: big, mime: 'a/b' }, { bytes: big, mime: 'a/b' }] } as unknown as CaptureInput;
    expect((await ctx.capture(bad)).status).toBe('recorded');
    const records = [];
    for await (const stored of sink.read('demo:alice')) records.push(decodeRecord(stored.bytes).record);
    expect(records.map((record) => record.raw?.format)).toEqual([REJECTED_INPUT_BYTES_FORMAT, REJECTED_INPUT_FORMAT]);
    const text = Buffer.from((await sink.getBlob(records[1]?.raw?.sha256 ?? '')) ?? []).toString('utf8');
    expect(text).toContain('"__proto__":{"polluted":"SECRET-MEMBER"}');
    await rm(dir, { recursive: true });
  });

  it('gives the connector state scoped to its stream', async () => {
    const { dir, ctx, state } = await setup();
    await ctx.state.setJson('cursor', { rowid: 42 });
    expect(await state.scope('demo:alice').getJson('cursor')).toEqual({ rowid: 42 });
    expect(await state.getJson('cursor')).toBeUndefined();
    await rm(dir, { recursive: true });
  });
});
