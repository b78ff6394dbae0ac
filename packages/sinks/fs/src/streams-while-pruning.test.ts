/**
 * `streams()` lists each stream's segments, then looks at their sizes; a pruning pass may remove
 * an old sealed segment in between (the forwarder asks for the streams while it prunes). A
 * segment gone by then is skipped, never an error.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder } from '@offchannel/core';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { openFsSink } from './fs-sink.ts';
import type * as Segments from './segments.ts';

const phantom = vi.hoisted(() => ({ on: false }));

vi.mock('./segments.ts', async (importOriginal) => {
  const real = await importOriginal<typeof Segments>();
  return {
    ...real,
    // As if a pruning pass removed the oldest segment right after it was listed.
    listSegments: async (...args: Parameters<typeof real.listSegments>) => {
      const segments = await real.listSegments(...args);
      const first = segments[0];
      if (!phantom.on || first === undefined) return segments;
      const gone = { ...first, firstSeq: 0, path: first.path.replace(/\d{16}\.jsonl$/, '0000000000000000.jsonl'), sealPath: first.sealPath.replace(/\d{16}\.seal\.json$/, '0000000000000000.seal.json') };
      return [gone, ...segments];
    },
  };
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-streams-prune-'));
});
afterEach(async () => {
  phantom.on = false;
  await rm(dir, { recursive: true, force: true });
});

it('skips a segment removed between listing and looking at it', async () => {
  const sink = await openFsSink({ dir });
  const recorder = new Recorder({ sink });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: 'test', version: '0' } });
  await writer.capture({ kind: 'message', sentAt: '2026-11-21T10:00:00Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'b' }, direction: 'inbound', native: { id: 'm1' }, text: 'hello' });
  phantom.on = true;
  expect(await sink.streams()).toEqual(['demo:alice']);
  phantom.on = false;
  await recorder.close();
  await sink.close();
});
