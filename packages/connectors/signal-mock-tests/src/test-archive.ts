/** A real archive (fs sink), a real encrypted state store, and helpers to read records back. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveRecord, type Logger, Recorder, type StateStore, decodeRecord, openStateStore } from '@offchannel/core';
import { type FsSink, openFsSink } from '@offchannel/sink-fs';

export interface TestArchive {
  readonly dir: string;
  readonly sink: FsSink;
  readonly recorder: Recorder;
  readonly state: StateStore;
  records(stream: string): Promise<ArchiveRecord[]>;
  close(): Promise<void>;
}

export async function openTestArchive(logger?: Logger): Promise<TestArchive> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-signal-'));
  const sink = await openFsSink({ dir: path.join(dir, 'archive') });
  const recorder = new Recorder({ sink, ...(logger === undefined ? {} : { logger }) });
  const state = await openStateStore({ dir: path.join(dir, 'state'), key: randomBytes(32) });
  return {
    dir,
    sink,
    recorder,
    state,
    async records(stream) {
      const out: ArchiveRecord[] = [];
      for await (const stored of sink.read(stream)) out.push(decodeRecord(stored.bytes).record);
      return out;
    },
    async close() {
      await recorder.close();
      await sink.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
