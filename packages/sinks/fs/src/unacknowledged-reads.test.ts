/**
 * Records of an append that has not resolved — written, not yet synced, and perhaps about to be
 * rolled back — must not leak out of the writer's own sink: not to a reader, not to a cached
 * read position, not to the forwarder copying the spool to S3.
 */
import { type FileHandle, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Forwarder, ZERO_HASH, sha256Hex } from '@offchannel/core';
import { chainAfter, createMemorySink } from '@offchannel/core/testing';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { openFsSink } from './fs-sink.ts';

const stream = 'demo:alice';
let dir: string;
let restore: (() => void) | undefined;

/**
 * Makes the next durable write go through and then, after `during`, fail with EIO: what an
 * O_DSYNC write whose sync fails looks like (its bytes are in the file, not acknowledged).
 */
async function failNextSync(during: () => Promise<void>): Promise<void> {
  const probe: FileHandle = await open(path.join(path.dirname(dir), 'probe'), 'w');
  type Write = (this: FileHandle, ...args: unknown[]) => Promise<{ bytesWritten: number }>;
  const prototype = Object.getPrototypeOf(probe) as { write: Write };
  await probe.close();
  const real = prototype.write;
  prototype.write = async function (this: FileHandle, ...args: unknown[]) {
    prototype.write = real;
    await real.apply(this, args);
    await during();
    throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
  };
  restore = () => {
    prototype.write = real;
  };
}

beforeEach(async () => {
  dir = path.join(await mkdtemp(path.join(tmpdir(), 'offchannel-unacked-')), 'archive');
});
afterEach(async () => {
  restore?.();
  restore = undefined;
  await rm(path.dirname(dir), { recursive: true, force: true });
});

it('a read during an append that then fails sees none of it, and later reads return the right records', async () => {
  const sink = await openFsSink({ dir });
  const head = await sink.appendBatch(chainAfter(stream, { seq: 0, hash: ZERO_HASH }, ['a', 'b']));
  const seen: number[] = [];
  await failNextSync(async () => {
    for await (const stored of sink.read(stream, { fromSeq: 1 })) seen.push(stored.seq);
  });
  await expect(sink.appendBatch(chainAfter(stream, head, ['short', 'short']))).rejects.toMatchObject({ code: 'EIO' });
  expect(seen).toEqual([1, 2]);
  const replacement = chainAfter(stream, head, ['a much longer replacement record 3', 'a much longer replacement record 4', 'record 5']);
  await sink.appendBatch(replacement);
  const read = [];
  for await (const stored of sink.read(stream, { fromSeq: 5 })) read.push(stored);
  expect(read.map((stored) => stored.seq)).toEqual([5]);
  expect(Buffer.from(read[0]?.bytes ?? []).equals(replacement.records[2] as Uint8Array)).toBe(true);
  await sink.close();
});

it('the forwarder never copies records of an append the spool has not acknowledged', async () => {
  const spool = await openFsSink({ dir });
  const target = createMemorySink();
  const forwarder = new Forwarder({ spool, targets: [{ name: 'remote', sink: target }], pollMs: 20, minRetryMs: 10 });
  forwarder.start();
  const head = await forwarder.sink.appendBatch(chainAfter(stream, { seq: 0, hash: ZERO_HASH }, ['r1', 'r2']));
  await forwarder.drain({ timeoutMs: 5000 });
  await failNextSync(async () => {
    forwarder.notify(stream);
    await new Promise((resolve) => setTimeout(resolve, 200)); // the forwarder has every chance to look
  });
  await expect(forwarder.sink.appendBatch(chainAfter(stream, head, ['UNACKED-3']))).rejects.toMatchObject({ code: 'EIO' });
  expect((await target.head(stream)).seq).toBe(2);
  await forwarder.sink.appendBatch(chainAfter(stream, head, ['retried-3', 'r4']));
  await forwarder.drain({ timeoutMs: 5000 });
  const copied: Uint8Array[] = [];
  for await (const stored of target.read(stream)) copied.push(stored.bytes);
  const original: Uint8Array[] = [];
  for await (const stored of spool.read(stream)) original.push(stored.bytes);
  expect(copied.map((bytes) => sha256Hex(bytes))).toEqual(original.map((bytes) => sha256Hex(bytes)));
  await forwarder.stop();
  await spool.close();
});
