/**
 * A live fixture chat.db for tests and the demo: created from a real macOS layout in WAL mode
 * and mutated by a separate writer process while the relay runs. Each scripted event returns
 * the GUIDs it created and the idempotency `key` of the record the relay should write for it,
 * so callers can wait for exactly that record ({@link waitForKeys}).
 *
 * ```ts
 * const db = await createChatDbFixture(dir, { schema: 'macos26' });
 * const connector = createIMessageConnector({ account: 'alice', chatDb: db.path, attachmentsDir: db.attachmentsDir });
 * const hello = await db.receive({ from: '+15550100', text: 'hello' });
 * await waitForKeys(ctx.lookup, [hello.key]);
 * await db.close();
 * ```
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { OffchannelError } from '@offchannel/core';
import { keys, TAPBACKS } from '../map-chat-db-row.ts';
import type { ChatDbSchema } from './chat-db-schema.ts';
import type { WriterOp, WriterResult } from './chat-db-writer.ts';

/** Options for {@link createChatDbFixture}. */
export interface ChatDbFixtureOptions {
  /** Database layout: `macos26` (default) or the older `macos12` (no edit/unsend columns). */
  readonly schema?: ChatDbSchema;
  /** The Mac user's own address, written as `destination_caller_id`. Default `me@firm.example`. */
  readonly self?: string;
  /** Open an existing fixture in `dir` instead of creating one. */
  readonly reopen?: boolean;
}

/** A scripted event: the GUIDs it created and the key of the record it should produce. */
export interface FixtureEvent {
  readonly key: string;
  readonly guid: string;
  readonly chat?: string;
  readonly attachment?: string;
}

/** A fixture chat.db and the writer process that changes it. */
export interface ChatDbFixture {
  /** Path of chat.db: pass as the connector's `chatDb`. */
  readonly path: string;
  /** Where attachment files land: pass as the connector's `attachmentsDir`. */
  readonly attachmentsDir: string;
  readonly schema: ChatDbSchema;
  /** An incoming message from `from` (a phone number or email), in a DM unless `chat` names a group. */
  /**
   * An incoming message from `from` (a phone number or email), in a DM unless `chat` names a
   * group. `bodyOnly`: `text` NULL, content only in attributedBody (as on recent macOS);
   * `emptyText`: `text` is the empty string, content only in attributedBody (real Macs write
   * this too); `body`: these exact attributedBody bytes (hostile-input tests); `mention`: the
   * text from its first `@` is a confirmed mention of that handle.
   */
  receive(message: { from: string; text: string; chat?: string; service?: 'iMessage' | 'SMS' | 'RCS'; bodyOnly?: boolean; emptyText?: boolean; body?: Uint8Array; replyTo?: string; mention?: string }): Promise<FixtureEvent>;
  /** An outgoing message to `to`, or to the group `chat`. */
  send(message: { to?: string; chat?: string; text: string; service?: 'iMessage' | 'SMS' | 'RCS'; bodyOnly?: boolean }): Promise<FixtureEvent>;
  /** Edits a message (row update + `ec` history); resolves with the edit record's key. */
  edit(guid: string, text: string): Promise<FixtureEvent>;
  /** Unsends a message the macOS 26 way (`legacy`: by `date_retracted`). */
  unsend(guid: string, options?: { legacy?: boolean }): Promise<FixtureEvent>;
  /** A tapback from `from` (or from me) on `target`. */
  tapback(tapback: { target: string; from?: string; chat?: string; value: (typeof TAPBACKS)[number]; remove?: boolean }): Promise<FixtureEvent>;
  /**
   * An incoming attachment whose transfer is still running; complete it with {@link completeTransfer}.
   * `filename`: the row's `attachment.filename` as stored (hostile-input tests); by default
   * `~/Library/Messages/Attachments/<xx>/00/<guid>/<name>`, as Messages writes it.
   */
  receiveAttachment(message: { from: string; name: string; mime: string; text?: string; filename?: string }): Promise<FixtureEvent & { readonly attachment: string }>;
  /** Writes the file and marks the transfer complete; resolves with the attachment record's key. */
  completeTransfer(event: { guid: string; attachment: string }, bytes: Uint8Array): Promise<FixtureEvent>;
  /** A new group chat with a name and members. */
  createGroup(group: { name: string; members: string[] }): Promise<FixtureEvent & { readonly chat: string }>;
  /** Renames a group (a membership `title` record). */
  renameGroup(chat: string, name: string, by: string): Promise<FixtureEvent>;
  /** Marks an outgoing message delivered (a receipt record for direct chats). */
  delivered(guid: string): Promise<FixtureEvent>;
  /** Checkpoints the WAL into chat.db and truncates it (file watches on the WAL go silent after this). */
  checkpoint(): Promise<void>;
  /** Stops the writer process. */
  close(): Promise<void>;
}

/** Creates (or with `reopen`, opens) a fixture chat.db in `dir` and starts its writer process. */
export async function createChatDbFixture(dir: string, options: ChatDbFixtureOptions = {}): Promise<ChatDbFixture> {
  const schema = options.schema ?? 'macos26';
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, 'chat.db');
  const attachmentsDir = path.join(dir, 'Attachments');
  const writer = new WriterProcess();
  await writer.call({ op: 'init', path: file, schema, self: options.self ?? 'me@firm.example', attachmentsDir, create: !options.reopen });
  const call = (op: WriterOp): Promise<WriterResult> => writer.call(op);
  const event = (key: string, result: WriterResult): FixtureEvent => ({ key, guid: result.guid ?? '', ...(result.chat ? { chat: result.chat } : {}), ...(result.attachment ? { attachment: result.attachment } : {}) });
  return {
    path: file,
    attachmentsDir,
    schema,
    receive: async (m) =>
      withKey(await call({ op: 'message', fromMe: false, peer: m.from, text: m.text, ...optional(m, ['chat', 'service', 'bodyOnly', 'emptyText', 'replyTo', 'mention']), ...(m.body ? { bodyBase64: Buffer.from(m.body).toString('base64') } : {}) }), keys.row),
    send: async (m) => withKey(await call({ op: 'message', fromMe: true, text: m.text, ...(m.to ? { peer: m.to } : {}), ...optional(m, ['chat', 'service', 'bodyOnly']) }), keys.row),
    edit: async (guid, text) => {
      const result = await call({ op: 'edit', guid, text });
      return event(keys.edit(guid, 0, result.version ?? 1), result);
    },
    unsend: async (guid, o = {}) => event(keys.unsend(guid, o.legacy ? 'all' : 0), await call({ op: 'unsend', guid, legacy: o.legacy ?? false })),
    tapback: async (t) => {
      const type = (t.remove ? 3000 : 2000) + TAPBACKS.indexOf(t.value);
      return withKey(await call({ op: 'tapback', target: t.target, type, fromMe: t.from === undefined, ...(t.from ? { peer: t.from } : {}), ...(t.chat ? { chat: t.chat } : {}) }), keys.row);
    },
    receiveAttachment: async (m) => {
      const result = await call({ op: 'message', fromMe: false, peer: m.from, text: m.text ?? '', attachment: { name: m.name, mime: m.mime, ...(m.filename === undefined ? {} : { filename: m.filename }) } });
      return { ...withKey(result, keys.row), attachment: result.attachment ?? '' };
    },
    completeTransfer: async (e, bytes) => event(keys.attachment(e.guid, e.attachment), await call({ op: 'complete-transfer', attachment: e.attachment, base64: Buffer.from(bytes).toString('base64') })),
    createGroup: async (g) => {
      const result = await call({ op: 'group', name: g.name, members: g.members });
      return { key: keys.chat(result.chat ?? ''), guid: result.chat ?? '', chat: result.chat ?? '' };
    },
    renameGroup: async (chat, name, by) => withKey(await call({ op: 'rename', chat, name, peer: by }), keys.row),
    delivered: async (guid) => event(keys.receipt(guid, 'delivered'), await call({ op: 'delivered', guid })),
    checkpoint: async () => {
      await call({ op: 'checkpoint' });
    },
    close: () => writer.close(),
  };

  function withKey(result: WriterResult, key: (guid: string) => string): FixtureEvent {
    return event(key(result.guid ?? ''), result);
  }
}

/**
 * Resolves once every key is archived (`lookup` is `ctx.lookup` or a stream writer's), with
 * their seqs; rejects after `timeoutMs` naming how many are still missing.
 */
export async function waitForKeys(lookup: (key: string) => Promise<number | undefined>, wanted: readonly string[], options: { timeoutMs?: number; intervalMs?: number } = {}): Promise<number[]> {
  const deadline = Date.now() + (options.timeoutMs ?? 5000);
  for (;;) {
    const seqs = await Promise.all(wanted.map((key) => lookup(key)));
    if (seqs.every((seq) => seq !== undefined)) return seqs;
    if (Date.now() > deadline) throw new OffchannelError('FIXTURE_TIMEOUT', `${seqs.filter((seq) => seq === undefined).length} of ${wanted.length} expected records were not captured in time`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}

function optional<T extends object, K extends keyof T>(value: T, names: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const name of names) if (value[name] !== undefined) out[name] = value[name];
  return out;
}

/** The child process and its request/answer bookkeeping. */
class WriterProcess {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #waiting = new Map<number, { resolve: (result: WriterResult) => void; reject: (error: Error) => void }>();
  #next = 1;
  #exited: Promise<void>;

  constructor() {
    this.#child = spawn(process.execPath, [writerScript()], { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      const answer = JSON.parse(line) as { id: number; result?: WriterResult; error?: string };
      const waiting = this.#waiting.get(answer.id);
      this.#waiting.delete(answer.id);
      if (answer.error !== undefined) waiting?.reject(new OffchannelError('FIXTURE_WRITE_FAILED', `fixture writer: ${answer.error}`));
      else waiting?.resolve(answer.result ?? {});
    });
    let stderr = '';
    this.#child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    this.#exited = new Promise((resolve) => {
      this.#child.on('exit', () => {
        for (const waiting of this.#waiting.values()) waiting.reject(new OffchannelError('FIXTURE_WRITE_FAILED', `fixture writer exited: ${stderr.slice(0, 500)}`));
        this.#waiting.clear();
        resolve();
      });
    });
  }

  call(request: object): Promise<WriterResult> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#child.stdin.write(`${JSON.stringify({ id, ...request })}\n`);
    });
  }

  async close(): Promise<void> {
    this.#child.stdin.end();
    await this.#exited;
  }
}

/** The writer script beside this module: `.ts` when run from source, `.js` when built. */
function writerScript(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = ['fixture-writer-process.ts', 'fixture-writer-process.js', 'testing/fixture-writer-process.js'].map((name) => path.join(here, name));
  const found = candidates.find((candidate) => existsSync(candidate));
  if (found === undefined) throw new OffchannelError('FIXTURE_WRITER_MISSING', 'fixture-writer-process script not found beside @offchannel/imessage/testing; rebuild the package');
  return found;
}
