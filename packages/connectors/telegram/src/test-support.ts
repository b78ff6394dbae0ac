/**
 * Shared test wiring (not exported from the package): a recorder on an in-memory sink, a real
 * encrypted state store in a temporary directory, and a reader for the archived records.
 * Closing a rig re-derives every Telegram record it archived from its raw bytes and the records
 * it names (`rederive-telegram.ts`) and throws if one comes out different: every test that uses
 * a rig is also a re-derivation test over its archive. {@link testRigs} closes a file's rigs
 * after each of its tests.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';
import { Recorder, decodeRecord, generateStateKey, openStateStore, parseStateKey, type ArchiveRecord, type Sink, type StateStore } from '@offchannel/core';
import { createMemorySink, createRecordingLogger, type RecordingLogger } from '@offchannel/core/testing';
import { canonicalize } from '@offchannel/core';
import { rederiveTelegramRecord } from './rederive-telegram.ts';

/** `system` records about the stream that most tests do not look at: `records()` leaves them out. */
const STREAM_SIGNALS: ReadonlySet<string> = new Set(['telegram-session', 'difference-fetched']);

export interface TestRig {
  readonly sink: Sink;
  readonly recorder: Recorder;
  readonly state: StateStore;
  readonly logger: RecordingLogger;
  readonly dir: string;
  /** The stream's records, without the session and catch-up signals ({@link STREAM_SIGNALS}) unless `all`. */
  records(stream?: string, options?: { readonly all?: boolean }): Promise<ArchiveRecord[]>;
  blob(sha256: string): Promise<Uint8Array | undefined>;
  /** A second recorder + state over the same (or another) sink and the same state directory: a restart. */
  reopen(sink?: Sink): Promise<TestRig>;
  /** Re-derives every record of every `telegram:` stream; resolves to how many were re-derived. */
  rederive(): Promise<number>;
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
    async records(stream = 'telegram:alice', options = {}) {
      const out: ArchiveRecord[] = [];
      for await (const stored of sink.read(stream)) out.push(decodeRecord(stored.bytes).record);
      return options.all === true ? out : out.filter((record) => !STREAM_SIGNALS.has(record.system?.event ?? ''));
    },
    async blob(sha256) {
      return sink.getBlob(sha256);
    },
    async reopen(next?: Sink) {
      await recorder.close().catch(() => undefined);
      return createTestRig({ sink: next ?? sink, dir, key });
    },
    async rederive() {
      return rederiveAll(sink);
    },
    async close() {
      await recorder.close().catch(() => undefined);
      await rederiveAll(sink);
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
  return rig;
}

/** The rigs a test made: {@link TestRigs.create} makes one, {@link TestRigs.push} takes one made by `reopen()`. */
export class TestRigs {
  readonly #open: TestRig[] = [];

  async create(existing?: Parameters<typeof createTestRig>[0]): Promise<TestRig> {
    return this.push(await createTestRig(existing));
  }

  push(rig: TestRig): TestRig {
    this.#open.push(rig);
    return rig;
  }

  /** Closes (and so re-derives) every rig, in the order they came; throws on the first that fails. */
  async close(): Promise<void> {
    for (const rig of this.#open.splice(0)) await rig.close();
  }
}

/** The rigs of one test file, all closed after each test. Call once, at the top of the file. */
export function testRigs(): TestRigs {
  const rigs = new TestRigs();
  afterEach(() => rigs.close());
  return rigs;
}

/** Re-derives every record of every `telegram:` stream in `sink`; throws on the first difference. */
export async function rederiveAll(sink: Sink): Promise<number> {
  let derived = 0;
  for (const stream of await sink.streams()) {
    if (!stream.startsWith('telegram:')) continue;
    const records: ArchiveRecord[] = [];
    for await (const stored of sink.read(stream)) records.push(decodeRecord(stored.bytes).record);
    const byKey = new Map(records.map((record) => [record.key, record]));
    const session = records.find((record) => record.kind === 'system' && record.system?.event === 'telegram-session');
    if (session === undefined) continue;
    const selfId = Number(session.system?.fields?.['userId']);
    for (const record of records) {
      const result = await rederiveTelegramRecord(record, selfId, { byKey: (key) => byKey.get(key), blob: (sha256) => sink.getBlob(sha256) });
      if (result.status === 'not-mapped') continue;
      if (result.record === undefined || canonicalize(result.record) !== canonicalize(record)) {
        throw new Error(`record ${stream}#${record.seq} (${record.kind}, ${record.key}) does not re-derive from its evidence:\n archived ${canonicalize(record)}\n derived  ${result.record === undefined ? 'nothing' : canonicalize(result.record)}`);
      }
      derived++;
    }
  }
  return derived;
}
