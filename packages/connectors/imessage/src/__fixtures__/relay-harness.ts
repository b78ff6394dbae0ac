/**
 * Runs the real iMessage connector against a fixture chat.db into an in-memory archive, with
 * a real encrypted state store, so tests can stop and restart it on the same archive and state.
 * The harness owns what it starts and opens: {@link RelayHarness.dispose} stops every relay and
 * closes every chat.db (both idempotent, so a test may stop or close them itself first).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Recorder, SinkUnavailableError, createConnectorContext, openStateStore, parseStateKey, generateStateKey, type ArchiveRecord, type ConnectorContext, type Sink, type StateStore } from '@offchannel/core';
import { MemoryStorage, createMemorySink, createRecordingLogger, type RecordingLogger } from '@offchannel/core/testing';
import { createIMessageConnector, type IMessageConnector, type IMessageConnectorOptions } from '../index.ts';
import { createChatDbFixture, type ChatDbFixture, type ChatDbFixtureOptions } from '../testing/index.ts';
import { rederiveAll, type Rederived } from './rederive.ts';

export interface RunningRelay {
  readonly connector: IMessageConnector;
  readonly ctx: ConnectorContext;
  stop(): Promise<void>;
}

export class RelayHarness {
  readonly storage = new MemoryStorage();
  readonly sink = createMemorySink(this.storage);
  /** While true, every append to the archive fails (an outage of the WORM store). */
  failAppends = false;
  /** The sink the recorder writes to: {@link sink}, failing appends while {@link failAppends}. */
  readonly flakySink: Sink = new Proxy(this.sink, {
    get: (target, name, receiver) => {
      if (name === 'appendBatch' && this.failAppends) return () => Promise.reject(new SinkUnavailableError('test outage'));
      const value: unknown = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  readonly logger: RecordingLogger = createRecordingLogger();
  readonly dir: string;
  #state: StateStore | undefined;
  readonly #relays: RunningRelay[] = [];
  readonly #chatDbs: ChatDbFixture[] = [];
  readonly #key = parseStateKey(generateStateKey());

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async create(): Promise<RelayHarness> {
    return new RelayHarness(await mkdtemp(path.join(tmpdir(), 'offchannel-imessage-')));
  }

  /** The encrypted state store the relay keeps its cursor in (shared across restarts). */
  async stateStore(): Promise<StateStore> {
    this.#state ??= await openStateStore({ dir: path.join(this.dir, 'state'), key: this.#key });
    return this.#state;
  }

  /** A fixture chat.db (and its writer process) in `<dir>/<name>`, closed at {@link dispose}. */
  async chatDb(name = 'mac', options: ChatDbFixtureOptions = {}): Promise<ChatDbFixture> {
    const db = await createChatDbFixture(path.join(this.dir, name), options);
    this.#chatDbs.push(db);
    return db;
  }

  /** Starts the relay on `db`; {@link dispose} stops it if the test has not. */
  async start(db: ChatDbFixture, options: Partial<IMessageConnectorOptions> = {}): Promise<RunningRelay> {
    const state = await this.stateStore();
    const recorder = new Recorder({ sink: this.flakySink, allowVolatileSink: true });
    const connector = createIMessageConnector({ account: 'alice@firm.example', chatDb: db.path, attachmentsDir: db.attachmentsDir, pollMs: 100, ...options });
    const controller = new AbortController();
    const ctx = createConnectorContext({ recorder, connector, state, logger: this.logger, signal: controller.signal });
    await connector.start(ctx);
    const running: RunningRelay = {
      connector,
      ctx,
      stop: async () => {
        await connector.stop();
        controller.abort();
        await recorder.close();
      },
    };
    this.#relays.push(running);
    return running;
  }

  /** Every record of the iMessage stream, decoded. */
  async records(): Promise<ArchiveRecord[]> {
    const out: ArchiveRecord[] = [];
    for await (const stored of this.sink.read('imessage:alice@firm.example')) out.push(JSON.parse(new TextDecoder().decode(stored.bytes)) as ArchiveRecord);
    return out;
  }

  async byKey(key: string): Promise<ArchiveRecord> {
    const found = (await this.records()).filter((record) => record.key === key);
    if (found.length !== 1) throw new Error(`expected one record with key ${key}, found ${found.length}`);
    return found[0] as ArchiveRecord;
  }

  /** The raw blob of a record, parsed. */
  async raw(record: ArchiveRecord): Promise<Record<string, unknown>> {
    const bytes = await this.sink.getBlob(record.raw?.sha256 ?? '');
    return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  }

  /**
   * Re-derives every record in the archive from its raw evidence with the exported mapping
   * (see rederive.ts); throws on the first record that differs.
   */
  async rederive(): Promise<Rederived> {
    return rederiveAll(await this.records(), (sha256) => this.sink.getBlob(sha256), 'alice@firm.example');
  }

  /**
   * Stops every relay it started, closes every chat.db it opened, checks that every record
   * re-derives (unless told not to), then removes the folder.
   */
  async dispose(options: { readonly rederive?: boolean } = {}): Promise<void> {
    try {
      for (const relay of this.#relays.splice(0)) await relay.stop();
      for (const db of this.#chatDbs.splice(0)) await db.close();
      if (options.rederive !== false) await this.rederive();
    } finally {
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}
