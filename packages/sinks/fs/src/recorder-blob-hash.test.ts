/**
 * The fs sink does not hash a blob the recorder hashed already (hashed-blob.ts in core): the
 * recorder stores a private copy of the caller's bytes, so what is stored is what was hashed,
 * even when the caller changes its own array while the capture is still in flight. Any other
 * array given to putBlob is hashed as before and refused when its name is wrong.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BlobMismatchError, Recorder, sha256Hex } from '@offchannel/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArchiveLayout } from './archive-layout.ts';
import { openFsSink } from './fs-sink.ts';

const source = { package: 't', version: '0' };
const clock = () => new Date('2026-12-06T10:00:00Z');
let work: string;

beforeEach(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'offchannel-recorder-blob-hash-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

function message(index: number, bytes: Uint8Array) {
  return {
    kind: 'message' as const,
    sentAt: '2026-12-06T10:00:00Z',
    conversation: { id: 'c1', type: 'direct' as const },
    sender: { id: 'peer' },
    direction: 'inbound' as const,
    native: { id: `m-${index}` },
    text: `message ${index}`,
    raw: { format: 'test.raw', bytes },
  };
}


describe('blobs the recorder stores in the fs sink', () => {
  it('are stored as they were when captured, though the caller reuses its array at once', async () => {
    const dir = path.join(work, 'archive');
    const sink = await openFsSink({ dir });
    const recorder = new Recorder({ sink, clock });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    // One array refilled for every capture (as a reader reusing its row buffer would): the
    // sink writes small blobs a turn later, on its writer threads.
    const reused = Buffer.alloc(600);
    const expected: Uint8Array[] = [];
    const captures = [];
    for (let index = 0; index < 20; index++) {
      reused.fill(index + 1);
      expected.push(new Uint8Array(reused));
      captures.push(writer.capture(message(index, reused)));
    }
    reused.fill(0xff);
    const results = await Promise.all(captures);
    expect(results.map((result) => result.status)).toEqual(Array(20).fill('recorded'));
    for (const bytes of expected) {
      const sha256 = sha256Hex(bytes);
      const stored = new Uint8Array(await readFile(new ArchiveLayout(dir).blob(sha256)));
      expect(sha256Hex(stored)).toBe(sha256);
      expect(stored).toEqual(bytes);
    }
    await recorder.close();
    await sink.close();
  });

  it('are stored as captured when the caller changes its array right after a capture on a ready stream', async () => {
    const dir = path.join(work, 'archive');
    const sink = await openFsSink({ dir });
    const recorder = new Recorder({ sink, clock });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    // The first capture makes the stream ready: the next puts its blob in the same turn.
    expect((await writer.capture(message(0, new TextEncoder().encode('first')))).status).toBe('recorded');
    const reused = new Uint8Array(600).fill(7);
    const expected = new Uint8Array(reused);
    const capture = writer.capture(message(1, reused));
    reused.fill(9); // before the sink's writer threads copy it
    expect((await capture).status).toBe('recorded');
    const stored = new Uint8Array(await readFile(new ArchiveLayout(dir).blob(sha256Hex(expected))));
    expect(stored).toEqual(expected);
    await recorder.close();
    await sink.close();
  });

  it('are stored as given by Recorder.putBlob and by a direct putBlob, though the caller changes its array at once', async () => {
    const dir = path.join(work, 'archive');
    const sink = await openFsSink({ dir });
    const recorder = new Recorder({ sink, clock });
    const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
    const viaRecorder = new Uint8Array(500).fill(3);
    const viaSink = new Uint8Array(500).fill(4);
    const expected = [new Uint8Array(viaRecorder), new Uint8Array(viaSink)];
    const puts = [writer.putBlob(viaRecorder), sink.putBlob(sha256Hex(viaSink), viaSink)];
    viaRecorder.fill(5);
    viaSink.fill(6);
    await Promise.all(puts);
    for (const bytes of expected) expect(new Uint8Array(await readFile(new ArchiveLayout(dir).blob(sha256Hex(bytes))))).toEqual(bytes);
    await recorder.close();
    await sink.close();
  });

  it('are still hashed by the sink when given by any other caller, and refused under a wrong name', async () => {
    const sink = await openFsSink({ dir: path.join(work, 'archive') });
    const bytes = new TextEncoder().encode('a caller-supplied blob');
    await expect(sink.putBlob(sha256Hex(new TextEncoder().encode('other bytes')), bytes)).rejects.toBeInstanceOf(BlobMismatchError);
    expect(await sink.putBlob(sha256Hex(bytes), bytes)).toEqual({ created: true });
    await sink.close();
  });
});
