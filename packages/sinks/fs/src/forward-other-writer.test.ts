/**
 * Checkpoint files the forwarder's lanes were not told of: written by another process sharing
 * the spool (a shard's capture, `offchannel deliver`, `offchannel copy`), or still looked for
 * after a reconnect. Real fs sinks as spool and target; the spool counts its checkpoint
 * listings, so the tests also show what finding those files costs.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ARCHIVE_LOG, ArchiveLog, type CheckpointFile, Forwarder, Recorder, type Sink, type StreamHead, ZERO_HASH, generateEd25519NoteKey } from '@offchannel/core';
import { batchAfter, createRecordingLogger } from '@offchannel/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FsSink, openFsSink } from './fs-sink.ts';

const stream = 'demo:alice';
const encoder = new TextEncoder();
const bytesOf = (size: number, file: CheckpointFile) => encoder.encode(`archive.example/offchannel\n${size}\n${file}\n\n— sig\n`);

interface Counts {
  listings: number;
  polls: number;
}

/** `sink`, counting its checkpoint listings and its `streams()` calls (one per forwarder poll). */
function counting(sink: Sink, counts: Counts): Sink {
  return new Proxy(sink, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => Promise<unknown>;
      if (property === 'checkpoints' || property === 'checkpointFiles') {
        return (...args: unknown[]) => {
          counts.listings++;
          return method.apply(target, args);
        };
      }
      if (property === 'streams') counts.polls++;
      return method.bind(target);
    },
  });
}

/** `sink`, noting per archive checkpoint put which notes of `stream` it held at that moment. */
function archiveOrder(sink: Sink, stream: string, held: Map<number, readonly number[]>): Sink {
  return new Proxy(sink, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => Promise<unknown>;
      if (property !== 'putCheckpoint') return method.bind(target);
      return async (...args: unknown[]) => {
        if (args[0] === ARCHIVE_LOG && args[2] === 'note') held.set(args[1] as number, await target.checkpoints(stream));
        return method.apply(target, args);
      };
    },
  });
}

/** `sink`, whose first put of a witness's cosigned copy fails (an S3 timeout). */
function failingFirstCosigned(sink: Sink): Sink {
  let failed = false;
  return new Proxy(sink, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => Promise<unknown>;
      if (property !== 'putCheckpoint') return method.bind(target);
      return async (...args: unknown[]) => {
        if (!failed && String(args[2]).startsWith('cosigned-')) {
          failed = true;
          throw new Error('injected: the request timed out');
        }
        return method.apply(target, args);
      };
    },
  });
}

async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('checkpoint files the lanes were not told of', () => {
  let work: string;
  let spool: FsSink;
  let target: FsSink;
  let forwarder: Forwarder | undefined;
  const counts: Counts = { listings: 0, polls: 0 };
  const onTarget = (size: number, file: CheckpointFile) => async () => (await target.getCheckpoint(stream, size, file)) !== undefined;
  const seqOnTarget = () => forwarder?.status().targets[0]?.streams[0]?.seq;

  /** Another process's records 1–30 in the spool, with its note at 10 (its note at 30 not signed yet). */
  async function otherWriter(): Promise<StreamHead> {
    const head = await spool.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 30, 'other'));
    await spool.putCheckpoint(stream, 10, 'note', bytesOf(10, 'note'));
    return head;
  }

  beforeEach(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'offchannel-other-writer-'));
    spool = await openFsSink({ dir: path.join(work, 'spool') });
    target = await openFsSink({ dir: path.join(work, 'target') });
    counts.listings = 0;
    counts.polls = 0;
  });

  afterEach(async () => {
    await forwarder?.stop();
    forwarder = undefined;
    await spool.close();
    await target.close();
    await rm(work, { recursive: true, force: true });
  });

  it('a note another process signs after the lane listed its records is copied though no record follows; then an idle stream lists nothing', async () => {
    await otherWriter();
    forwarder = new Forwarder({ spool: counting(spool, counts), targets: [{ name: 't', sink: target }], pollMs: 20 });
    forwarder.start();
    await until(() => seqOnTarget() === 30, 'the records on the target');
    await until(onTarget(10, 'note'), 'note 10 on the target');
    // The other writer's timer signs its note for them now, and the stream goes quiet.
    await spool.putCheckpoint(stream, 30, 'note', bytesOf(30, 'note'));
    await spool.putCheckpoint(stream, 30, 'rfc3161', bytesOf(30, 'rfc3161'));
    await until(onTarget(30, 'note'), 'note 30 on the target');
    await until(onTarget(30, 'rfc3161'), 'token 30 on the target');
    // Every note is known now: idle polls list nothing.
    counts.listings = 0;
    const polls = counts.polls;
    await until(() => counts.polls >= polls + 40, 'forty polls');
    expect(counts.listings).toBe(0);
  }, 60_000);

  it('drain hands the files it lists to the lanes: a note signed after their listing is copied, not timed out on', async () => {
    await otherWriter();
    // Polls far apart: only drain can make the lane learn of the note.
    forwarder = new Forwarder({ spool, targets: [{ name: 't', sink: target }], pollMs: 600_000 });
    forwarder.start();
    await until(() => seqOnTarget() === 30, 'the records on the target');
    await spool.putCheckpoint(stream, 30, 'note', bytesOf(30, 'note'));
    await forwarder.drain({ timeoutMs: 10_000 });
    expect(await onTarget(30, 'note')()).toBe(true);
  }, 60_000);

  it('a cosigned copy whose put failed is still copied after the reconnect, though its note is far below the target\'s window', async () => {
    forwarder = new Forwarder({ spool: counting(spool, counts), targets: [{ name: 't', sink: failingFirstCosigned(target) }], pollMs: 20, minRetryMs: 10 });
    forwarder.start();
    let head = await forwarder.sink.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 10, 'a'));
    await forwarder.sink.putCheckpoint(stream, 10, 'note', bytesOf(10, 'note'));
    await until(onTarget(10, 'note'), 'note 10 on the target');
    // A large batch moves the head past the 1,024 sizes a reconnect looks back on the target.
    head = await forwarder.sink.appendBatch(batchAfter(stream, head, 1100, 'b'));
    await forwarder.sink.putCheckpoint(stream, head.seq, 'note', bytesOf(head.seq, 'note'));
    await until(onTarget(head.seq, 'note'), `note ${head.seq} on the target`);
    // The witness answers for note 10; the first put of its copy fails and the lane reconnects.
    await forwarder.sink.putCheckpoint(stream, 10, 'cosigned-0123abcd', bytesOf(10, 'cosigned-0123abcd'));
    await until(onTarget(10, 'cosigned-0123abcd'), 'the cosigned copy of note 10 on the target');
  }, 60_000);

  it('an archive checkpoint that includes a note another process wrote reaches the target only after that note', async () => {
    const key = generateEd25519NoteKey('archive.example/offchannel');
    const source = { package: '@offchannel/test', version: '0.0.0' };
    const message = (index: number) => ({ kind: 'message' as const, sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' as const }, sender: { id: 'bob' }, direction: 'inbound' as const, native: { id: `m${index}` }, text: `message ${index}` });
    // Another process (`offchannel deliver`, a shard) writes a stream of the spool; its note comes at its close.
    const other = new Recorder({ sink: spool, logger: createRecordingLogger(), checkpoints: { signer: key, everyRecords: 1000, everyMs: 3_600_000 } });
    const writer = other.writer({ channel: 'demo', account: 'other', source });
    await writer.capture(message(0));
    await writer.capture(message(1));
    const held = new Map<number, readonly number[]>();
    // Polls 1 s apart: the lane's own relisting (every 12 polls) comes long after the copier's round.
    forwarder = new Forwarder({ spool, targets: [{ name: 't', sink: archiveOrder(target, 'demo:other', held) }], archiveLogs: [ARCHIVE_LOG], pollMs: 1000 });
    forwarder.start();
    await until(() => seqOnTarget() === 2, 'the other process\'s records on the target');
    await other.close();
    const [note] = await spool.checkpoints('demo:other');
    expect(note).toBe(2);
    // This process's archive log includes it when it opens, and signs.
    const archiveLog = await ArchiveLog.open({ sink: forwarder.sink, signer: key, logger: createRecordingLogger(), everyMs: 3_600_000 });
    try {
      await archiveLog.checkpoint();
      const size = archiveLog.signedSize;
      expect(size).toBe(1);
      await until(async () => (await target.getCheckpoint(ARCHIVE_LOG, size, 'note')) !== undefined, 'the archive checkpoint on the target');
      expect(held.get(size)).toContain(2);
    } finally {
      await archiveLog.close();
    }
  }, 60_000);

  it('a token a crash left uncopied, its note since far below the target\'s window, is found at start and drain waits for it', async () => {
    // As a forwarder left them: notes at every 10 to 110 and at 1,300 on both sides with their
    // tokens, except the token of 110 — its TSA answered after 1,300's, and the process crashed.
    let head: StreamHead = { seq: 0, hash: ZERO_HASH };
    head = await spool.appendBatch(batchAfter(stream, head, 1300, 'h'));
    await target.appendBatch(batchAfter(stream, { seq: 0, hash: ZERO_HASH }, 1300, 'h'));
    for (const size of [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 1300]) {
      for (const sink of [spool, target]) {
        await sink.putCheckpoint(stream, size, 'note', bytesOf(size, 'note'));
        if (size !== 110 || sink === spool) await sink.putCheckpoint(stream, size, 'rfc3161', bytesOf(size, 'rfc3161'));
      }
    }
    const targetCounts: Counts = { listings: 0, polls: 0 };
    forwarder = new Forwarder({ spool: counting(spool, counts), targets: [{ name: 't', sink: counting(target, targetCounts) }], pollMs: 20 });
    forwarder.start();
    await forwarder.drain({ timeoutMs: 20_000 });
    expect(await onTarget(110, 'rfc3161')()).toBe(true);
    expect(head.seq).toBe(1300);
    // Its window, then one wider listing of each side: not one per note.
    expect(targetCounts.listings).toBeLessThanOrEqual(2);
  }, 60_000);
});
