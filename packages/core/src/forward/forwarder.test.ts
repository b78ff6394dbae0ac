import { describe, expect, it } from 'vitest';
import { SinkUnavailableError } from '../errors/sink-errors.ts';
import { sha256Hex } from '../hash/sha256.ts';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import type { CaptureInput } from '../record/capture-input.ts';
import type { ArchiveRecord } from '../record/record.ts';
import { Recorder } from '../recorder/recorder.ts';
import type { Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { chainAfter } from '../testing/sink-conformance.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { verifyArchive } from '../verify/verify-archive.ts';
import { blobRefs } from '../verify/blob-refs.ts';
import { Forwarder } from './forwarder.ts';

const source = { package: '@offchannel/test', version: '0' };
const key = generateEd25519NoteKey('archive.example/offchannel');

function message(index: number): CaptureInput {
  return {
    kind: 'message',
    sentAt: '2026-11-21T09:00:00.000Z',
    conversation: { id: 'c', type: 'direct' },
    sender: { id: 'bob' },
    direction: 'inbound',
    native: { id: `m${index}` },
    text: `secret message text ${index}`,
    ...(index % 10 === 0 ? { attachments: [{ bytes: new TextEncoder().encode(`attachment ${index}`), mime: 'text/plain' }] } : {}),
  };
}

/** A sink that fails every call with SINK_UNAVAILABLE while `down()` is true, and logs the calls it passes. */
function flaky(sink: Sink, down: () => boolean, calls: string[] = []): Sink {
  const gate = <T>(name: string, run: () => Promise<T>): Promise<T> => {
    if (down()) return Promise.reject(new SinkUnavailableError(`${name}: target down (injected)`));
    calls.push(name);
    return run();
  };
  return {
    ...sink,
    head: (stream) => gate('head', () => sink.head(stream)),
    appendBatch: (batch) => gate(`append:${batch.firstSeq}-${batch.firstSeq + batch.records.length - 1}:${batch.records.map((bytes) => blobRefs(JSON.parse(Buffer.from(bytes).toString()) as ArchiveRecord).map(([, ref]) => ref.sha256).join(',')).join(',')}`, () => sink.appendBatch(batch)),
    read: (stream, options) => sink.read(stream, options),
    streams: () => gate('streams', () => sink.streams()),
    putBlob: (sha256, bytes) => gate(`blob:${sha256}`, () => sink.putBlob(sha256, bytes)),
    getBlob: (sha256) => sink.getBlob(sha256),
    statBlob: (sha256) => gate('stat', () => sink.statBlob(sha256)),
    putCheckpoint: (stream, size, file, bytes) => gate(`checkpoint:${size}.${file}`, () => sink.putCheckpoint(stream, size, file, bytes)),
    getCheckpoint: (stream, size, file) => sink.getCheckpoint(stream, size, file),
    checkpoints: (stream) => gate('checkpoints', () => sink.checkpoints(stream)),
    putTile: (stream, tile, bytes) => gate('tile', () => sink.putTile(stream, tile, bytes)),
    getTile: (stream, tile) => sink.getTile(stream, tile),
    close: () => sink.close(),
  };
}

async function allRecords(sink: Sink, stream: string): Promise<string[]> {
  const out: string[] = [];
  for await (const stored of sink.read(stream)) out.push(Buffer.from(stored.bytes).toString());
  return out;
}

async function sameArchive(a: MemoryStorage, b: MemoryStorage): Promise<void> {
  const [left, right] = [createMemorySink(a), createMemorySink(b)];
  expect(await right.streams()).toEqual(await left.streams());
  for (const stream of await left.streams()) expect(await allRecords(right, stream)).toEqual(await allRecords(left, stream));
  expect([...b.blobs.keys()].sort()).toEqual([...a.blobs.keys()].sort());
  expect(new Map([...b.checkpoints].map(([name, bytes]) => [name, sha256Hex(bytes)]))).toEqual(new Map([...a.checkpoints].map(([name, bytes]) => [name, sha256Hex(bytes)])));
  expect(new Map([...b.tiles].map(([name, bytes]) => [name, sha256Hex(bytes)]))).toEqual(new Map([...a.tiles].map(([name, bytes]) => [name, sha256Hex(bytes)])));
}

function setup(options: { targets?: number; down?: () => boolean; maxBatchRecords?: number } = {}) {
  const spool = new MemoryStorage();
  const remotes = Array.from({ length: options.targets ?? 1 }, () => new MemoryStorage());
  const calls: string[][] = remotes.map(() => []);
  const logger = createRecordingLogger();
  const forwarder = new Forwarder({
    spool: createMemorySink(spool),
    targets: remotes.map((storage, index) => ({ name: `remote-${index}`, sink: flaky(createMemorySink(storage), index === 0 ? (options.down ?? (() => false)) : () => false, calls[index]) })),
    logger,
    minRetryMs: 5,
    maxRetryMs: 20,
    pollMs: 50,
    ...(options.maxBatchRecords ? { maxBatchRecords: options.maxBatchRecords } : {}),
  });
  const recorder = new Recorder({ sink: forwarder.sink, allowVolatileSink: true, logger, checkpoints: { signer: key, everyRecords: 100, timestamp: async (note) => Uint8Array.from(Buffer.from(`token over ${sha256Hex(note)}`)) } });
  return { spool, remotes, calls, logger, forwarder, recorder };
}

describe('Forwarder', () => {
  it('copies records, blobs, tiles, checkpoints and tokens to two targets, identical to the spool, each verifying alone', async () => {
    const { spool, remotes, forwarder, recorder, logger } = setup({ targets: 2 });
    forwarder.start();
    for (const account of ['alice', 'bob']) {
      const writer = recorder.writer({ channel: 'demo', account, source });
      // Three group commits of 150 (concurrent captures are sequenced together): a checkpoint after each.
      for (let from = 0; from < 450; from += 150) await Promise.all(Array.from({ length: 150 }, (_, index) => writer.capture(message(from + index))));
    }
    await recorder.close();
    await forwarder.drain({ timeoutMs: 10_000 });
    await forwarder.stop();
    for (const remote of remotes) {
      await sameArchive(spool, remote);
      const report = await verifyArchive(createMemorySink(remote), { verifiers: [key.verifier], workers: 1 });
      // The tokens here are placeholders (the RFC 3161 path is tested against a real TSA elsewhere): copied, not valid.
      expect(report.failures.filter((failure) => failure.code !== 'TIMESTAMP_INVALID')).toEqual([]);
      expect([...remote.checkpoints.keys()].filter((name) => name.endsWith('.rfc3161')).length).toBeGreaterThanOrEqual(4);
      expect(report.streams.map((stream) => stream.checkpoints?.at(-1)?.size)).toEqual([450, 450]);
    }
    expect(forwarder.status().targets.flatMap((target) => target.streams.map((stream) => [target.name, stream.stream, stream.seq, stream.checkpoint, stream.state]))).toEqual([
      ['remote-0', 'demo:alice', 450, 450, 'idle'],
      ['remote-0', 'demo:bob', 450, 450, 'idle'],
      ['remote-1', 'demo:alice', 450, 450, 'idle'],
      ['remote-1', 'demo:bob', 450, 450, 'idle'],
    ]);
    expect(logger.text()).not.toContain('secret message text');
  });

  it('stores every blob a batch names on the target before the batch', async () => {
    const { calls, forwarder, recorder } = setup({ maxBatchRecords: 7 });
    forwarder.start();
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    for (let index = 0; index < 95; index++) await writer.capture(message(index));
    await recorder.close();
    await forwarder.drain({ timeoutMs: 10_000 });
    await forwarder.stop();
    const log = calls[0] as string[];
    const stored = new Set<string>();
    let appends = 0;
    for (const call of log) {
      if (call.startsWith('blob:')) stored.add(call.slice(5));
      if (!call.startsWith('append:')) continue;
      appends++;
      const [, range, blobs] = call.split(':') as [string, string, string];
      const [first, last] = range.split('-').map(Number) as [number, number];
      expect(last - first + 1).toBeLessThanOrEqual(7);
      for (const blob of blobs.split(',').filter(Boolean)) expect(stored.has(blob), `blob ${blob} before records ${range}`).toBe(true);
    }
    expect(appends).toBeGreaterThanOrEqual(14);
  });

  it('keeps the recorder acknowledging while a target is down, and catches up when it returns', async () => {
    let down = false;
    const { spool, remotes, forwarder, recorder } = setup({ down: () => down });
    forwarder.start();
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    for (let index = 0; index < 50; index++) await writer.capture(message(index));
    await forwarder.drain({ timeoutMs: 5000 });
    down = true;
    for (let index = 50; index < 300; index++) expect((await writer.capture(message(index))).status).toBe('recorded');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const during = forwarder.status().targets[0]?.streams[0];
    expect(during).toMatchObject({ state: 'retrying', seq: undefined, lastError: expect.stringMatching(/target down/) as string });
    await expect(forwarder.drain({ timeoutMs: 200 })).rejects.toMatchObject({ code: 'FORWARD_TIMEOUT' });
    down = false;
    await recorder.close();
    await forwarder.drain({ timeoutMs: 10_000 });
    await forwarder.stop();
    await sameArchive(spool, remotes[0] as MemoryStorage);
    expect((await allRecords(createMemorySink(remotes[0] as MemoryStorage), 'demo:alice')).length).toBe(300);
  });

  it('resumes after a restart and tolerates a second forwarder: nothing skipped, nothing twice', async () => {
    const { spool, remotes, forwarder, recorder } = setup({ maxBatchRecords: 10 });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    for (let index = 0; index < 200; index++) await writer.capture(message(index));
    await recorder.close();
    let copied = 0;
    let stopping: Promise<void> | undefined;
    const first: Forwarder = new Forwarder({
      spool: createMemorySink(spool),
      targets: [{ name: 'r', sink: createMemorySink(remotes[0]) }],
      maxBatchRecords: 10,
      onForwarded: () => {
        if (++copied === 5) stopping = first.stop();
      },
    });
    first.start();
    while (!stopping) await new Promise((resolve) => setTimeout(resolve, 1));
    await stopping;
    const partial = (await allRecords(createMemorySink(remotes[0]), 'demo:alice')).length;
    expect(partial).toBeGreaterThanOrEqual(50);
    expect(partial).toBeLessThan(200);
    // Two forwarders at once on the same spool and target.
    const again = [0, 1].map(() => new Forwarder({ spool: createMemorySink(spool), targets: [{ name: 'r', sink: createMemorySink(remotes[0] as MemoryStorage) }], maxBatchRecords: 10 }));
    for (const instance of again) instance.start();
    await Promise.all(again.map((instance) => instance.drain({ timeoutMs: 10_000 })));
    await Promise.all(again.map((instance) => instance.stop()));
    await forwarder.stop();
    await sameArchive(spool, remotes[0] as MemoryStorage);
  });

  it('stops a stream whose target diverged from the spool, and keeps copying the others', async () => {
    const { remotes, forwarder, recorder } = setup({ targets: 2 });
    // The first target already holds a different record 1 for demo:alice (another writer).
    const other = new Recorder({ sink: createMemorySink(remotes[0]), allowVolatileSink: true });
    await other.writer({ channel: 'demo', account: 'alice', source }).capture({ ...message(999), text: 'another history' });
    await other.close();
    forwarder.start();
    for (const account of ['alice', 'bob']) {
      const writer = recorder.writer({ channel: 'demo', account, source });
      for (let index = 0; index < 20; index++) await writer.capture(message(index));
    }
    await recorder.close();
    await expect(forwarder.drain({ timeoutMs: 5000 })).rejects.toMatchObject({ code: 'FORWARD_DIVERGED', target: 'remote-0', stream: 'demo:alice' });
    await forwarder.stop();
    const status = forwarder.status();
    expect(status.targets[0]?.streams.map((stream) => [stream.stream, stream.state])).toEqual([
      ['demo:alice', 'diverged'],
      ['demo:bob', 'idle'],
    ]);
    expect(status.targets[1]?.streams.every((stream) => stream.state === 'idle' && stream.seq === 20)).toBe(true);
    expect((await allRecords(createMemorySink(remotes[0] as MemoryStorage), 'demo:alice')).length).toBe(1);
  });

  it('copies a timestamp token that arrives after its checkpoint was copied', async () => {
    const spool = new MemoryStorage();
    const remote = new MemoryStorage();
    const forwarder = new Forwarder({ spool: createMemorySink(spool), targets: [{ name: 'r', sink: createMemorySink(remote) }], pollMs: 20 });
    let release: (() => void) | undefined;
    const recorder = new Recorder({
      sink: forwarder.sink,
      allowVolatileSink: true,
      checkpoints: {
        signer: key,
        everyRecords: 10,
        timestamp: async () => {
          await new Promise<void>((resolve) => {
            release = resolve;
          });
          return Uint8Array.from([1, 2, 3]);
        },
      },
    });
    forwarder.start();
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    for (let index = 0; index < 10; index++) await writer.capture(message(index));
    while (!release) await new Promise((resolve) => setTimeout(resolve, 1));
    await forwarder.drain({ timeoutMs: 5000 });
    expect(remote.checkpoints.has('demo:alice/10.note')).toBe(true);
    expect(remote.checkpoints.has('demo:alice/10.rfc3161')).toBe(false);
    release();
    await recorder.close();
    const deadline = Date.now() + 5000;
    while (!remote.checkpoints.has('demo:alice/10.rfc3161') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(remote.checkpoints.get('demo:alice/10.rfc3161')).toEqual(Uint8Array.from([1, 2, 3]));
    await forwarder.stop();
  });

  it("copies a witness's cosigned copy that arrives after its checkpoint was copied", async () => {
    const spool = new MemoryStorage();
    const remote = new MemoryStorage();
    const forwarder = new Forwarder({ spool: createMemorySink(spool), targets: [{ name: 'r', sink: createMemorySink(remote) }], pollMs: 20 });
    const recorder = new Recorder({ sink: forwarder.sink, allowVolatileSink: true, checkpoints: { signer: key, everyRecords: 10 } });
    forwarder.start();
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    for (let index = 0; index < 10; index++) await writer.capture(message(index));
    await recorder.close();
    await forwarder.drain({ timeoutMs: 5000 });
    expect(remote.checkpoints.has('demo:alice/10.note')).toBe(true);
    // The witness answers late: its copy lands in the spool only now (through the spooling sink, as the witness client writes it).
    const copy = Uint8Array.from(Buffer.from(`${Buffer.from(spool.checkpoints.get('demo:alice/10.note') as Uint8Array).toString()}— witness.example/w1 AAAA\n`));
    await forwarder.sink.putCheckpoint('demo:alice', 10, 'cosigned-0123abcd', copy);
    const deadline = Date.now() + 5000;
    while (!remote.checkpoints.has('demo:alice/10.cosigned-0123abcd') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(remote.checkpoints.get('demo:alice/10.cosigned-0123abcd')).toEqual(copy);
    await forwarder.stop();
  });

  it('after a restart, copies every timestamp token the target is missing — and drain waits for them', async () => {
    const spool = new MemoryStorage();
    const spoolSink = createMemorySink(spool);
    const remote = new MemoryStorage();
    const stream = 'demo:alice';
    let head = { seq: 0, hash: '0'.repeat(64) };
    for (let size = 1; size <= 6; size++) {
      head = await spoolSink.appendBatch(chainAfter(stream, head, [`r${size}`]));
      await spoolSink.putCheckpoint(stream, size, 'note', new TextEncoder().encode(`note ${size}\n`));
      await spoolSink.putCheckpoint(stream, size, 'rfc3161', new TextEncoder().encode(`token ${size}`));
    }
    let tokensFail = true;
    const remoteSink = createMemorySink(remote);
    const target: Sink = { ...flaky(remoteSink, () => false), putCheckpoint: (name, size, file, bytes) => (file === 'rfc3161' && tokensFail ? Promise.reject(new SinkUnavailableError('token store down (injected)')) : remoteSink.putCheckpoint(name, size, file, bytes)) };
    const first = new Forwarder({ spool: spoolSink, targets: [{ name: 'r', sink: target }], minRetryMs: 5, maxRetryMs: 20 });
    first.start();
    while ((await remoteSink.checkpoints(stream)).length < 6) await new Promise((resolve) => setTimeout(resolve, 5));
    await expect(first.drain({ timeoutMs: 300 })).rejects.toMatchObject({ code: 'FORWARD_TIMEOUT' });
    await first.stop();
    await expect(first.drain()).rejects.toMatchObject({ code: 'FORWARD_STOPPED' });
    expect([...remote.checkpoints.keys()].filter((name) => name.endsWith('.rfc3161'))).toEqual([]);
    tokensFail = false;
    const second = new Forwarder({ spool: spoolSink, targets: [{ name: 'r', sink: target }] });
    second.start();
    await second.drain({ timeoutMs: 5000 });
    expect([...remote.checkpoints.keys()].filter((name) => name.endsWith('.rfc3161')).sort()).toEqual([1, 2, 3, 4, 5, 6].map((size) => `${stream}/${size}.rfc3161`));
    await second.stop();
  });

  it('stops a stream whose spool no longer continues what the target holds', async () => {
    const { spool, remotes, forwarder, recorder } = setup();
    forwarder.start();
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    for (let index = 0; index < 5; index++) await writer.capture(message(index));
    await forwarder.drain({ timeoutMs: 5000 });
    // The spool is replaced under the forwarder (restored from an old backup, say): same length, other records.
    const entry = spool.streams.get('demo:alice') as { records: Uint8Array[]; head: { seq: number; hash: string } };
    const other = chainAfter('demo:alice', { seq: 0, hash: '0'.repeat(64) }, ['x1', 'x2', 'x3', 'x4', 'x5', 'x6']);
    entry.records = [...other.records];
    entry.head = { seq: 6, hash: sha256Hex(other.records[5] as Uint8Array) };
    forwarder.notify('demo:alice');
    await expect(forwarder.drain({ timeoutMs: 5000 })).rejects.toMatchObject({ code: 'FORWARD_DIVERGED' });
    expect((await allRecords(createMemorySink(remotes[0] as MemoryStorage), 'demo:alice')).length).toBe(5);
    await forwarder.stop();
    await recorder.close().catch(() => undefined);
  });

  it('stores every named blob again on WORM targets, so its retention can be extended for the new record', async () => {
    const spool = new MemoryStorage();
    const remote = new MemoryStorage();
    const puts: string[] = [];
    const remoteSink = createMemorySink(remote);
    const worm: Sink = { ...flaky(remoteSink, () => false), guarantees: { ...remoteSink.guarantees, retention: 'compliance-lock' }, putBlob: (sha256, bytes) => (puts.push(sha256), remoteSink.putBlob(sha256, bytes)) };
    const forwarder = new Forwarder({ spool: createMemorySink(spool), targets: [{ name: 'worm', sink: worm }], maxBatchRecords: 1 });
    const recorder = new Recorder({ sink: forwarder.sink, allowVolatileSink: true });
    forwarder.start();
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    const shared = { bytes: new TextEncoder().encode('the same attachment'), mime: 'text/plain' };
    for (let index = 0; index < 3; index++) await writer.capture({ ...message(index + 1), attachments: [shared] });
    await forwarder.drain({ timeoutMs: 5000 });
    expect(puts).toHaveLength(3);
    await forwarder.stop();
    await recorder.close();
  });

  it('copies a record whose blob is gone from the spool when the WORM target already holds it, rather than stall; stalls (and says why) when no one holds it', async () => {
    const spool = new MemoryStorage();
    const remote = new MemoryStorage();
    const remoteSink = createMemorySink(remote);
    const worm: Sink = { ...flaky(remoteSink, () => false), guarantees: { ...remoteSink.guarantees, retention: 'compliance-lock' } };
    const recorder = new Recorder({ sink: createMemorySink(spool), allowVolatileSink: true });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    const held = { bytes: new TextEncoder().encode('pruned from the spool, held by S3'), mime: 'text/plain' };
    const lost = { bytes: new TextEncoder().encode('held by no one'), mime: 'text/plain' };
    await writer.capture({ ...message(1), attachments: [held] });
    await writer.capture({ ...message(2), attachments: [lost] });
    await recorder.close();
    // Another process pruned both blobs from the spool; the target got the first one earlier.
    await remoteSink.putBlob(sha256Hex(held.bytes), held.bytes);
    spool.blobs.delete(sha256Hex(held.bytes));
    spool.blobs.delete(sha256Hex(lost.bytes));
    const logger = createRecordingLogger();
    const forwarder = new Forwarder({ spool: createMemorySink(spool), targets: [{ name: 'worm', sink: worm }], maxBatchRecords: 1, minRetryMs: 5, maxRetryMs: 20, logger });
    forwarder.start();
    await expect(forwarder.drain({ timeoutMs: 1000 })).rejects.toMatchObject({ code: 'FORWARD_TIMEOUT' });
    // Record 1 went through; record 2 waits for a blob that exists nowhere.
    expect((await remoteSink.head('demo:alice')).seq).toBe(1);
    expect(forwarder.status().targets[0]?.streams[0]).toMatchObject({ state: 'retrying', lastError: expect.stringMatching(/blob [0-9a-f]{64} named by a record is missing from the spool/) as string });
    expect(logger.text()).toContain('no longer in the spool but the target holds it');
    await forwarder.stop();
  });

  it('refuses a target that is the spool, and duplicate target names', () => {
    const spool = createMemorySink();
    expect(() => new Forwarder({ spool, targets: [] })).toThrow(/at least one target/);
    expect(() => new Forwarder({ spool, targets: [{ name: 'a', sink: spool }] })).toThrow(/is the spool itself/);
    expect(() => new Forwarder({ spool, targets: [{ name: 'a', sink: createMemorySink() }, { name: 'a', sink: createMemorySink() }] })).toThrow(/distinct names/);
  });
});
