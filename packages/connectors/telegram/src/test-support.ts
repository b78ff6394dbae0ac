/**
 * Shared test wiring (not exported from the package): a recorder on an in-memory sink, a real
 * encrypted state store in a temporary directory, and a reader for the archived records.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder, decodeRecord, generateStateKey, openStateStore, parseStateKey, type ArchiveRecord, type Sink, type StateStore } from '@offchannel/core';
import { createMemorySink, createRecordingLogger, type RecordingLogger } from '@offchannel/core/testing';

export interface TestRig {
  readonly sink: Sink;
  readonly recorder: Recorder;
  readonly state: StateStore;
  readonly logger: RecordingLogger;
  readonly dir: string;
  records(stream?: string): Promise<ArchiveRecord[]>;
  blob(sha256: string): Promise<Uint8Array | undefined>;
  /** A second recorder + state over the same (or another) sink and the same state directory: a restart. */
  reopen(sink?: Sink): Promise<TestRig>;
  close(): Promise<void>;
}

export async function createTestRig(existing?: { sink: Sink; dir?: string; key?: string }): Promise<TestRig> {
  const dir = existing?.dir ?? (await mkdtemp(path.join(tmpdir(), 'offchannel-telegram-')));
  const key = existing?.key ?? generateStateKey();
  const sink = existing?.sink ?? createMemorySink();
  const logger = createRecordingLogger();
  const recorder = new Recorder({ sink, allowVolatileSink: true, logger });
  const state = await openStateStore({ dir: path.join(dir, 'state'), key: parseStateKey(key) });
  const rig: TestRig = {
    sink,
    recorder,
    state,
    logger,
    dir,
    async records(stream = 'telegram:alice') {
      const out: ArchiveRecord[] = [];
      for await (const stored of sink.read(stream)) out.push(decodeRecord(stored.bytes).record);
      return out;
    },
    async blob(sha256) {
      return sink.getBlob(sha256);
    },
    async reopen(next?: Sink) {
      await recorder.close().catch(() => undefined);
      return createTestRig({ sink: next ?? sink, dir, key });
    },
    async close() {
      await recorder.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
  return rig;
}
