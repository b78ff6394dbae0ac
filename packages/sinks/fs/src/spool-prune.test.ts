/**
 * Spool pruning (bounded spool): only a prefix of whole sealed segments that every target
 * holds goes; the spool still verifies (the prefix reported as pruned, not missing), the
 * recorder reopens it and continues, a prune interrupted at any step is finished later, and
 * tampering with what remains is still caught.
 */
import { cp, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ARCHIVE_LOG, ArchiveLog, Forwarder, type PrunedEvent, Recorder, type Sink, cosignedFile, generateCosigner, generateEd25519NoteKey, openKeyIndex, parseNote, verifyArchive } from '@offchannel/core';
import { MemoryStorage, createMemorySink, createRecordingLogger } from '@offchannel/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openFsSink } from './fs-sink.ts';
import { readPrunedPrefix, writePrunedPrefix } from './pruned-prefix.ts';
import { ArchiveLayout } from './archive-layout.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const stream = 'demo:alice';
const source = { package: 't', version: '0' };
const FAR_FUTURE = new Date('2100-01-01T00:00:00Z');
let work: string;
let pristine: string;
let copies = 0;

function message(index: number) {
  return {
    kind: 'message' as const,
    sentAt: '2026-11-21T10:00:00Z',
    conversation: { id: `c${index % 3}`, type: 'direct' as const },
    sender: { id: 'bob' },
    direction: 'inbound' as const,
    native: { id: `m${index}` },
    text: `message ${index} `.repeat(6),
  };
}

async function capture(dir: string, from: number, to: number): Promise<void> {
  const sink = await openFsSink({ dir, segmentBytes: 8_000 });
  const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 70 }, clock: () => new Date('2026-11-21T10:00:00Z') });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  for (let index = from; index <= to; index++) await writer.capture(message(index));
  await recorder.close();
  await sink.close();
}

async function copy(): Promise<string> {
  const dir = path.join(work, `copy-${++copies}`);
  await cp(pristine, dir, { recursive: true });
  return dir;
}

async function segmentNames(dir: string): Promise<string[]> {
  return (await readdir(path.join(dir, 'streams', stream))).filter((name) => name.endsWith('.jsonl')).sort();
}

async function verify(dir: string) {
  const sink = await openFsSink({ dir, readOnly: true });
  try {
    return await verifyArchive(sink, { verifiers: [key.verifier], workers: 2 });
  } finally {
    await sink.close();
  }
}

async function prune(dir: string, request: Parameters<Awaited<ReturnType<typeof openFsSink>>['prune']>[1]) {
  const sink = await openFsSink({ dir, segmentBytes: 8_000 });
  try {
    return await sink.prune(stream, request);
  } finally {
    await sink.close();
  }
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-prune-'));
  pristine = path.join(work, 'pristine');
  await capture(pristine, 1, 400);
}, 60_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('FsSink.prune', () => {
  it('drops only sealed segments below `below`, keeps the rest readable and verifiable', { timeout: 60_000 }, async () => {
    const dir = await copy();
    const before = await segmentNames(dir);
    expect(before.length).toBeGreaterThan(20);
    const result = await prune(dir, { below: 350, sealedBefore: FAR_FUTURE, now: new Date('2026-11-22T00:00:00Z') });
    expect(result.segments).toBeGreaterThan(10);
    expect(result.throughSeq).toBeLessThan(350);
    const after = await segmentNames(dir);
    expect(after.length).toBe(before.length - result.segments);
    expect(Number(after[0]?.slice(0, 16))).toBe(result.throughSeq + 1);

    const sink = await openFsSink({ dir, readOnly: true });
    const prefix = await sink.pruned(stream);
    expect(prefix?.seq).toBe(result.throughSeq);
    await expect(async () => {
      for await (const _ of sink.read(stream, { fromSeq: result.throughSeq })) break;
    }).rejects.toMatchObject({ code: 'RECORDS_PRUNED', prunedThrough: result.throughSeq });
    const reader = sink.read(stream, { fromSeq: result.throughSeq + 1 })[Symbol.asyncIterator]();
    const first = await reader.next();
    await reader.return?.(); // closes the segment the read holds open
    const firstKept = first.value as { bytes: Uint8Array } | undefined;
    expect((JSON.parse(Buffer.from(firstKept?.bytes ?? []).toString()) as { prev: string }).prev).toBe(prefix?.hash);
    await sink.close();

    const report = await verify(dir);
    expect(report.failures).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.warnings.map((warning) => warning.code)).toContain('PRUNED');
    expect(report.streams[0]).toMatchObject({ stream, pruned: result.throughSeq, head: { seq: 400 } });
  });

  it('never prunes the last segment, a segment reaching `below`, or a segment too young', { timeout: 60_000 }, async () => {
    const dir = await copy();
    expect((await prune(dir, { below: 2, sealedBefore: FAR_FUTURE })).segments).toBe(0);
    // Sealed "now": younger than a cut-off in the past.
    expect((await prune(dir, { below: 10_000, sealedBefore: new Date('2000-01-01T00:00:00Z') })).segments).toBe(0);
    const all = await prune(dir, { below: 10_000, sealedBefore: FAR_FUTURE });
    expect(await segmentNames(dir)).toHaveLength(1);
    expect(all.throughSeq).toBeLessThan(400);
  });

  it('prunes oldest-first by age, and by size whatever the age', { timeout: 60_000 }, async () => {
    const dir = await copy();
    const names = await segmentNames(dir);
    // The first three segments were sealed long ago, the rest just now.
    const cutoff = new Date('2026-01-01T00:00:00Z');
    for (const name of names.slice(0, 3)) await utimes(path.join(dir, 'streams', stream, name.replace('.jsonl', '.seal.json')), new Date('2025-01-01'), new Date('2025-01-01'));
    expect((await prune(dir, { below: 350, sealedBefore: cutoff })).segments).toBe(3);
    const bySize = await prune(dir, { below: 350, maxBytes: 40_000 });
    expect(bySize.segments).toBeGreaterThan(0);
    expect(bySize.heldBytes).toBeLessThanOrEqual(40_000 + 8_000 * 2);
    expect((await verify(dir)).ok).toBe(true);
  });

  it('the recorder reopens a pruned spool, continues the chain and still finds duplicates it keeps', { timeout: 60_000 }, async () => {
    const dir = await copy();
    const { throughSeq } = await prune(dir, { below: 350, sealedBefore: FAR_FUTURE });
    const sink = await openFsSink({ dir, segmentBytes: 8_000 });
    const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 70 }, clock: () => new Date('2026-11-21T11:00:00Z') });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    expect((await writer.capture(message(399))).status).toBe('duplicate');
    for (let index = 401; index <= 480; index++) expect((await writer.capture(message(index))).status).toBe('recorded');
    await recorder.close();
    await sink.close();
    expect(throughSeq).toBeGreaterThan(0);
    const report = await verify(dir);
    expect(report.failures).toEqual([]);
    expect(report.streams[0]?.head.seq).toBe(480);
  });

  it('with a persistent key index, replays of pruned messages are still duplicates', { timeout: 60_000 }, async () => {
    const dir = path.join(work, 'indexed');
    const index = openKeyIndex({ file: path.join(work, 'indexed-state', 'key-index.sqlite') });
    const open = async () => {
      const sink = await openFsSink({ dir, segmentBytes: 8_000 });
      const recorder = new Recorder({ sink, keyIndex: index, checkpoints: { signer: key, everyRecords: 70 }, clock: () => new Date('2026-11-21T10:00:00Z') });
      return { sink, recorder, writer: recorder.writer({ channel: 'demo', account: 'alice', source }) };
    };
    const first = await open();
    for (let index = 1; index <= 400; index++) await first.writer.capture(message(index));
    await first.recorder.close();
    await first.sink.close();
    const { throughSeq } = await prune(dir, { below: 350, sealedBefore: FAR_FUTURE });
    expect(throughSeq).toBeGreaterThan(5);
    const second = await open();
    expect((await second.writer.capture(message(5))).status).toBe('duplicate');
    expect((await second.writer.capture(message(401))).status).toBe('recorded');
    await second.recorder.close();
    await second.sink.close();
    index.close();
  });

  it('a prune interrupted after writing its prefix is finished by the next one; readers skip the leftovers', { timeout: 60_000 }, async () => {
    const dir = await copy();
    const layout = new ArchiveLayout(dir);
    const seal = JSON.parse(await readFile(path.join(dir, 'streams', stream, '0000000000000001.seal.json'), 'utf8')) as { lastSeq: number; lastHash: string; bytes: number };
    // Crash: the prefix is durable, no segment was removed yet.
    await writePrunedPrefix(layout, { v: 1, format: 'offchannel-pruned-prefix', stream, throughSeq: seal.lastSeq, lastHash: seal.lastHash, segments: 1, bytes: seal.bytes, at: '2026-11-22T00:00:00.000Z' });
    const report = await verify(dir);
    expect(report.failures).toEqual([]);
    expect(report.streams[0]?.pruned).toBe(seal.lastSeq);
    const names = await segmentNames(dir);
    expect(names[0]).toBe('0000000000000001.jsonl');
    await prune(dir, { below: 1 + seal.lastSeq, sealedBefore: FAR_FUTURE });
    expect((await segmentNames(dir))[0]).not.toBe('0000000000000001.jsonl');
    expect((await verify(dir)).ok).toBe(true);
  });
});

describe('tampering with a pruned spool is still caught', () => {
  it('a tile inside the pruned prefix altered', { timeout: 60_000 }, async () => {
    const dir = await copy();
    await prune(dir, { below: 350, sealedBefore: FAR_FUTURE });
    const tile = path.join(dir, 'tiles', stream, '0', '000');
    const bytes = await readFile(tile);
    bytes[40] = (bytes[40] ?? 0) ^ 1;
    await writeFile(tile, bytes);
    const report = await verify(dir);
    expect(report.ok).toBe(false);
    // The altered hash no longer reproduces the signed roots, nor proves them consistent.
    expect(report.failures.some((failure) => ['CHECKPOINT_ROOT_MISMATCH', 'CHECKPOINT_INCONSISTENT'].includes(failure.code) && failure.severity === 'critical')).toBe(true);
  });

  it('a retained segment removed after the prefix', { timeout: 60_000 }, async () => {
    const dir = await copy();
    await prune(dir, { below: 300, sealedBefore: FAR_FUTURE });
    const first = (await segmentNames(dir))[0] ?? '';
    await rm(path.join(dir, 'streams', stream, first), { force: true });
    await rm(path.join(dir, 'streams', stream, first.replace('.jsonl', '.seal.json')), { force: true });
    const report = await verify(dir);
    expect(report.ok).toBe(false);
    expect(report.failures.map((failure) => failure.code)).toEqual(expect.arrayContaining(['SEGMENT_MISSING']));
  });

  it('a damaged or hostile pruned.json is a clear error, never a read from elsewhere', { timeout: 60_000 }, async () => {
    for (const content of ['not json', '{"v":1}', JSON.stringify({ v: 1, format: 'offchannel-pruned-prefix', stream: 'demo:mallory', throughSeq: 5, lastHash: 'a'.repeat(64), segments: 1, bytes: 1, at: 'x' })]) {
      const dir = await copy();
      await writeFile(path.join(dir, 'streams', stream, 'pruned.json'), content);
      await expect(readPrunedPrefix(new ArchiveLayout(dir), stream)).rejects.toMatchObject({ code: 'ARCHIVE_CORRUPT' });
      const report = await verify(dir);
      expect(report.ok).toBe(false);
      expect(report.failures.map((failure) => failure.code)).toContain('PRUNED_PREFIX_INVALID');
    }
  });
});

describe('Forwarder with prune', () => {
  it('prunes only what every target holds, and the spool shrinks after an outage', { timeout: 60_000 }, async () => {
    const dir = await copy();
    const spool = await openFsSink({ dir, segmentBytes: 8_000 });
    const up = createMemorySink(new MemoryStorage());
    let reachable = false;
    const flaky = new Proxy(createMemorySink(new MemoryStorage()), {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as unknown;
        if (typeof value !== 'function' || property === 'close') return value;
        return (...args: unknown[]) => {
          if (!reachable) return Promise.reject(Object.assign(new Error('down'), { code: 'SINK_UNAVAILABLE' }));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const pruned: PrunedEvent[] = [];
    const forwarder = new Forwarder({
      spool,
      targets: [
        { name: 'up', sink: up },
        { name: 'flaky', sink: flaky },
      ],
      pollMs: 50,
      minRetryMs: 10,
      maxRetryMs: 50,
      prune: { minAgeMs: 0, now: () => FAR_FUTURE },
      onPruned: (event) => pruned.push(event),
    });
    forwarder.start();
    // One target down: nothing may go, however long we wait.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await forwarder.prune()).toEqual([]);
    expect(await spool.pruned(stream)).toBeUndefined();
    reachable = true;
    await forwarder.drain({ timeoutMs: 30_000 });
    const events = await forwarder.prune();
    await forwarder.stop();
    const all = [...pruned, ...events];
    expect(all.length).toBeGreaterThan(0);
    const through = (await spool.pruned(stream))?.seq ?? 0;
    expect(through).toBeGreaterThan(100);
    await spool.close();
    for (const target of [up, flaky]) {
      const report = await verifyArchive(target, { verifiers: [key.verifier], workers: 0 });
      expect(report.ok).toBe(true);
      expect(report.streams[0]?.head.seq).toBe(400);
    }
    expect((await verify(dir)).ok).toBe(true);
  });

  it('with the archive log: a pruned spool still holds back an archive checkpoint until a lagging lane has copied what it includes', { timeout: 60_000 }, async () => {
    const dir = path.join(work, 'archive-log');
    const witness = generateCosigner('w1.witness.example');
    {
      const sink = await openFsSink({ dir, segmentBytes: 8_000 });
      const archiveLog = await ArchiveLog.open({ sink, signer: key, logger: createRecordingLogger(), everyMs: 3_600_000 });
      const recorder = new Recorder({ sink, checkpoints: { signer: key, everyRecords: 70, witnesses: archiveLog }, clock: () => new Date('2026-11-21T10:00:00Z') });
      for (const account of ['alice', 'bob']) {
        const writer = recorder.writer({ channel: 'demo', account, source });
        for (let index = 1; index <= 300; index++) await writer.capture(message(index));
      }
      await recorder.close();
      await archiveLog.close();
      const size = (await sink.checkpoints(ARCHIVE_LOG)).at(-1) ?? 0;
      const note = new TextDecoder().decode(await sink.getCheckpoint(ARCHIVE_LOG, size, 'note'));
      await sink.putCheckpoint(ARCHIVE_LOG, size, cosignedFile(witness.verifier), new TextEncoder().encode(`${note}${witness.cosign(parseNote(note).text, 1_795_000_000)}`));
      await sink.close();
    }
    const fsSpool = await openFsSink({ dir, segmentBytes: 8_000 });
    const rounds = { value: 0 };
    // The spool, counting copy rounds: each lists the attestation hosts, then copies the archive log.
    const spool = new Proxy(fsSpool, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          if (property === 'attestationHosts') rounds.value++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    let held = true;
    // A target whose copy of demo:bob fails while `held`.
    const heldStorage = new MemoryStorage();
    const lagging: Sink = new Proxy(createMemorySink(heldStorage), {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as unknown;
        if (typeof value !== 'function' || property === 'close') return value;
        return (...args: unknown[]) => {
          const about = args[0] === 'demo:bob' || (args[0] as { stream?: unknown } | undefined)?.stream === 'demo:bob';
          if (held && about) return Promise.reject(Object.assign(new Error('down'), { code: 'SINK_UNAVAILABLE' }));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const upStorage = new MemoryStorage();
    const forwarder = new Forwarder({ spool, targets: [{ name: 'up', sink: createMemorySink(upStorage) }, { name: 'held', sink: lagging }], archiveLogs: [ARCHIVE_LOG], pollMs: 20, minRetryMs: 10, maxRetryMs: 20, prune: { minAgeMs: 0, now: () => FAR_FUTURE } });
    forwarder.start();
    const up = createMemorySink(upStorage, { readOnly: true });
    const heldView = createMemorySink(heldStorage, { readOnly: true });
    const deadline = Date.now() + 30_000;
    const until = async (done: () => Promise<boolean>) => {
      while (!(await done())) {
        if (Date.now() > deadline) throw new Error('no progress');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    await until(async () => (await heldView.checkpoints('demo:alice')).at(-1) === 300 && (await up.checkpoints(ARCHIVE_LOG)).length > 0);
    // demo:alice is on both targets: it is pruned from the spool (its checkpoint notes stay).
    await until(async () => (await fsSpool.pruned('demo:alice')) !== undefined);
    expect(await fsSpool.pruned('demo:bob')).toBeUndefined();
    const after = rounds.value;
    await until(() => Promise.resolve(rounds.value >= after + 2));
    expect(await heldView.checkpointFiles?.(ARCHIVE_LOG)).toEqual([]);
    const policy = { verifiers: [key.verifier], witnesses: [witness.verifier], quorum: 1 };
    expect((await verifyArchive(heldView, policy)).failures.filter((failure) => failure.code.startsWith('ARCHIVE_LOG'))).toEqual([]);
    held = false;
    await forwarder.drain({ timeoutMs: 30_000 });
    await forwarder.stop();
    await fsSpool.close();
    for (const target of [up, heldView]) {
      const report = await verifyArchive(target, { ...policy, workers: 0 });
      expect(report.failures).toEqual([]);
      expect(report.archiveLogs?.map((log) => log.witnessedSize)).toEqual([(await target.checkpoints(ARCHIVE_LOG)).at(-1)]);
    }
  });

  it('keeps what another reader of the spool still needs: age never passes its hold; the size cap does, and says so', { timeout: 60_000 }, async () => {
    const dir = await copy();
    const spool = await openFsSink({ dir, segmentBytes: 8_000 });
    const target = createMemorySink(new MemoryStorage());
    let hold: number | undefined = 120;
    const asked: string[] = [];
    const holds = (name: string): number | undefined => (asked.push(name), name === stream ? hold : undefined);
    const aged = new Forwarder({ spool, targets: [{ name: 's3', sink: target }], pollMs: 600_000, prune: { minAgeMs: 0, now: () => FAR_FUTURE, holds } });
    aged.start();
    await aged.drain({ timeoutMs: 30_000 });
    const first = await aged.prune();
    const held = (await spool.pruned(stream))?.seq ?? 0;
    // Everything is forwarded under the final checkpoint (400); the hold at 120 keeps seq 120 on.
    expect(held).toBeGreaterThan(60);
    expect(held).toBeLessThan(120);
    expect(first).toHaveLength(1);
    expect(first[0]?.passedHold).toBeUndefined();
    expect(asked).toContain(stream);
    hold = 1;
    expect(await aged.prune()).toEqual([]);
    hold = undefined;
    const freed = await aged.prune();
    expect(freed[0]?.throughSeq).toBeGreaterThan(300);
    expect(freed[0]?.throughSeq).toBeLessThan(400);
    await aged.stop();

    // A reader that stopped at seq 1 of a fresh copy: the size cap prunes past it, reported.
    const dir2 = await copy();
    const spool2 = await openFsSink({ dir: dir2, segmentBytes: 8_000 });
    const logger = createRecordingLogger();
    const events: PrunedEvent[] = [];
    const target2 = createMemorySink(new MemoryStorage());
    const capped = new Forwarder({ spool: spool2, targets: [{ name: 's3', sink: target2 }], pollMs: 600_000, logger, onPruned: (event) => events.push(event), prune: { minAgeMs: 60_000, maxBytes: 40_000, now: () => new Date('2000-01-01T00:00:00Z'), holds: () => 1 } });
    capped.start();
    await capped.drain({ timeoutMs: 30_000 });
    const [event] = await capped.prune();
    await capped.stop();
    expect(event?.segments).toBeGreaterThan(10);
    expect(event?.heldBytes).toBeLessThanOrEqual(40_000 + 8_000 * 2);
    expect(event?.passedHold).toEqual({ fromSeq: 1, throughSeq: event?.throughSeq });
    expect(events).toEqual([event]);
    const warning = logger.lines.find((line) => line.level === 'warn' && line.message?.startsWith('the spool exceeded maxBytes'));
    expect(warning?.fields).toEqual({ stream, fromSeq: 1, throughSeq: event?.throughSeq });
    // A tighter cap later (the reader still at seq 1): only what this pass prunes is reported,
    // from after the earlier prefix — never the records an earlier pass already reported.
    const tighter = new Forwarder({ spool: spool2, targets: [{ name: 's3', sink: target2 }], pollMs: 600_000, prune: { minAgeMs: 60_000, maxBytes: 20_000, now: () => new Date('2000-01-01T00:00:00Z'), holds: () => 1 } });
    tighter.start();
    await tighter.drain({ timeoutMs: 30_000 });
    const [again] = await tighter.prune();
    await tighter.stop();
    expect(again?.passedHold).toEqual({ fromSeq: (event?.throughSeq ?? 0) + 1, throughSeq: again?.throughSeq });
    expect(again?.throughSeq).toBeGreaterThan(event?.throughSeq ?? 0);
    await spool.close();
    await spool2.close();
    expect((await verify(dir2)).ok).toBe(true);
  });

  it('refuses a spool that cannot prune', () => {
    expect(() => new Forwarder({ spool: createMemorySink(), targets: [{ name: 't', sink: createMemorySink() }], prune: { minAgeMs: 0 } })).toThrow(/cannot be pruned/);
  });
});
