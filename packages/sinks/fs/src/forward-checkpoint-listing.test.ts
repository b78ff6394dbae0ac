/**
 * The forwarder's cost must not grow with a stream's history of checkpoints (one a minute, never
 * removed: 525,600 a year). Real fs sinks as spool and target, wrapped to count every checkpoint
 * listing and the entries it returns: with 2,000 checkpoints in history, a lane's start lists
 * only the recent ones, and copying batch after batch (and idle polls) lists none at all — new
 * checkpoint files are learnt from the spooling sink. Every note, token and cosigned copy still
 * reaches the target.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type CheckpointFile, Forwarder, type Sink, type StreamHead, ZERO_HASH } from '@offchannel/core';
import { batchAfter } from '@offchannel/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FsSink, openFsSink } from './fs-sink.ts';

const stream = 'demo:alice';
/** Records per checkpoint, and checkpoints in the history written before the forwarder starts. */
const EVERY = 10;
const HISTORY = 2000;
const encoder = new TextEncoder();
const bytesOf = (size: number, file: CheckpointFile) => encoder.encode(`archive.example/offchannel\n${size}\n${file}\n\n— sig\n`);

interface Counts {
  listings: number;
  entries: number;
  polls: number;
}

/** `sink`, counting its checkpoint listings (and what they return) and its `streams()` calls (one per forwarder poll). */
function counting(sink: Sink, counts: Counts): Sink {
  return new Proxy(sink, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => Promise<unknown>;
      if (property === 'checkpoints' || property === 'checkpointFiles') {
        return async (...args: unknown[]) => {
          const listed = (await method.apply(target, args)) as readonly unknown[];
          counts.listings++;
          counts.entries += listed.length;
          return listed;
        };
      }
      if (property === 'streams') counts.polls++;
      return method.bind(target);
    },
  });
}

function reset(counts: Counts): void {
  counts.listings = 0;
  counts.entries = 0;
}

async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Appends `checkpoints × EVERY` records and a note at every EVERY-th; tokens for the newest 100, one cosigned copy. */
async function writeHistory(sink: Sink, checkpoints: number): Promise<StreamHead> {
  let head: StreamHead = { seq: 0, hash: ZERO_HASH };
  while (head.seq < checkpoints * EVERY) head = await sink.appendBatch(batchAfter(stream, head, Math.min(5000, checkpoints * EVERY - head.seq), `h${head.seq}`));
  for (let size = EVERY; size <= head.seq; size += EVERY) {
    await sink.putCheckpoint(stream, size, 'note', bytesOf(size, 'note'));
    if (size > head.seq - 100 * EVERY) await sink.putCheckpoint(stream, size, 'rfc3161', bytesOf(size, 'rfc3161'));
  }
  await sink.putCheckpoint(stream, head.seq, 'cosigned-0123abcd', bytesOf(head.seq, 'cosigned-0123abcd'));
  return head;
}

describe('forwarding with a long history of checkpoints', () => {
  let work: string;
  let spool: FsSink;
  let target: FsSink;
  let head: StreamHead;
  const spoolCounts: Counts = { listings: 0, entries: 0, polls: 0 };
  const targetCounts: Counts = { listings: 0, entries: 0, polls: 0 };
  let forwarder: Forwarder;

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'offchannel-ckpt-listing-'));
    spool = await openFsSink({ dir: path.join(work, 'spool') });
    target = await openFsSink({ dir: path.join(work, 'target') });
    // The same history in both, as an earlier forwarder left it.
    head = await writeHistory(spool, HISTORY);
    await writeHistory(target, HISTORY);
  }, 300_000);

  afterAll(async () => {
    await forwarder?.stop();
    await spool?.close();
    await target?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('starts from the recent checkpoints only, then lists none per batch or poll; every note, token and cosigned copy arrives', async () => {
    forwarder = new Forwarder({ spool: counting(spool, spoolCounts), targets: [{ name: 't', sink: counting(target, targetCounts) }], pollMs: 20 });
    forwarder.start();
    // Connected: the head is set last, after both listings.
    await until(() => forwarder.status().targets[0]?.streams[0]?.seq === head.seq, 'the lane to connect');
    expect(forwarder.status().targets[0]?.streams[0]?.checkpoint).toBe(head.seq);
    const total = (await target.checkpointFiles(stream)).length;
    expect(total).toBe(HISTORY + 100 + 1);
    // Start-up: one ranged listing of each side, of the newest ~100 checkpoints (1,024 sizes), not of 2,101 files.
    expect(targetCounts.listings).toBe(1);
    expect(spoolCounts.listings).toBe(1);
    expect(targetCounts.entries).toBeLessThan(250);
    expect(spoolCounts.entries).toBeLessThan(250);

    // Steady state: 60 batches through the spooling sink, each with its note and token, some with a cosigned copy.
    reset(spoolCounts);
    reset(targetCounts);
    for (let round = 0; round < 60; round++) {
      head = await forwarder.sink.appendBatch(batchAfter(stream, head, EVERY, `s${round}`));
      await forwarder.sink.putCheckpoint(stream, head.seq, 'note', bytesOf(head.seq, 'note'));
      await forwarder.sink.putCheckpoint(stream, head.seq, 'rfc3161', bytesOf(head.seq, 'rfc3161'));
      if (round % 10 === 0) await forwarder.sink.putCheckpoint(stream, head.seq, 'cosigned-0123abcd', bytesOf(head.seq, 'cosigned-0123abcd'));
      const size = head.seq;
      await until(async () => (await target.getCheckpoint(stream, size, 'note')) !== undefined, `checkpoint ${size} on the target`);
    }
    // And idle polls (each one wakes the lane).
    const polls = spoolCounts.polls;
    await until(() => spoolCounts.polls >= polls + 20, 'twenty polls');
    await until(async () => (await target.getCheckpoint(stream, head.seq, 'rfc3161')) !== undefined, 'the last token on the target');
    expect(spoolCounts.listings).toBe(0);
    expect(targetCounts.listings).toBe(0);

    // Nothing was skipped: the target holds every file the spool holds.
    expect(await target.checkpointFiles(stream)).toEqual(await spool.checkpointFiles(stream));
    expect((await target.checkpointFiles(stream)).length).toBe(HISTORY + 100 + 1 + 60 * 2 + 6);
  }, 300_000);

  it('a stream another process appends to: its checkpoints are listed from where the lane stands, at most every 12 polls', async () => {
    reset(spoolCounts);
    reset(targetCounts);
    const before = spoolCounts.polls;
    // Written to the spool itself, not through the forwarder's spooling sink: no notification.
    for (let round = 0; round < 3; round++) {
      head = await spool.appendBatch(batchAfter(stream, head, EVERY, `o${round}`));
      await spool.putCheckpoint(stream, head.seq, 'note', bytesOf(head.seq, 'note'));
      await spool.putCheckpoint(stream, head.seq, 'rfc3161', bytesOf(head.seq, 'rfc3161'));
    }
    await until(async () => (await target.getCheckpoint(stream, head.seq, 'rfc3161')) !== undefined, 'the other process\'s checkpoints on the target');
    expect(spoolCounts.listings).toBeGreaterThanOrEqual(1);
    expect(spoolCounts.listings).toBeLessThanOrEqual(1 + Math.ceil((spoolCounts.polls - before) / 12));
    // From the oldest note whose cosigned copies may still come (the last hour's), not from the start.
    expect(spoolCounts.entries / spoolCounts.listings).toBeLessThan(250);
    expect(targetCounts.listings).toBe(0);
    expect(await target.checkpointFiles(stream)).toEqual(await spool.checkpointFiles(stream));
  }, 120_000);
});
