/**
 * The capture host's witness client (c2sp.org/tlog-witness `add-checkpoint`).
 *
 * After a stream's checkpoint is signed and stored, the checkpointer hands it here; this
 * client submits it to every configured witness in the background — capture never waits on a
 * witness. Per stream and witness, checkpoints are submitted in signing order, each with the
 * consistency proof from the size the witness last cosigned (learned from its 200 or 409
 * answers; a fresh client starts with "old 0" and is told the size).
 *
 * Answers:
 * - 200: the cosignature is checked against the configured witness key and stored beside the
 *   checkpoint as `checkpoints/<stream>/<size>.cosigned-<witness key id>` (the note with that
 *   witness's line added; the `.note` file itself is write-once and never rewritten);
 * - 409 with a size this client can prove from: resent with that proof. A size beyond ours,
 *   or our own size again (another root at a size the witness cosigned): the log forked;
 * - 422: the witness has cosigned a tree this one does not extend: a fork;
 * - 403 / 404: the witness does not accept this log or key: logged, not retried until restart;
 * - anything else, timeouts, network errors: retried later with backoff.
 * A fork stops signing for the stream (`onFork`), loudly, and is never retried around.
 */
import { WitnessError } from '../errors/witness-errors.ts';
import type { Logger } from '../logger/logger.ts';
import { type CosignatureVerifier, addSignatureLines, checkCosignatures } from '../note/cosignature.ts';
import type { Sink } from '../sink/sink.ts';
import { formatAddCheckpoint, parseConflictSize } from './add-checkpoint.ts';

/** One witness the capture host submits to. */
export interface WitnessEndpoint {
  /** The submission prefix, e.g. `http://127.0.0.1:7380` (`/add-checkpoint` is appended). */
  readonly url: string;
  readonly key: CosignatureVerifier;
}

/** A checkpoint to be witnessed. */
export interface WitnessedCheckpoint {
  readonly stream: string;
  readonly size: number;
  /** The signed note, exactly as stored. */
  readonly note: Uint8Array;
  /** The consistency proof from `from` to `size`, from the stored tiles. */
  proof(from: number): Promise<Uint8Array[]>;
  /** Called once when a witness shows that this log forked; signing must stop. */
  onFork(reason: string): void;
}

export interface WitnessClientOptions {
  readonly witnesses: readonly WitnessEndpoint[];
  readonly sink: Sink;
  readonly logger: Logger;
  /** Per request. Default 10 s. */
  readonly timeoutMs?: number;
  /** First retry delay after a failure; doubles up to 5 minutes. Default 5 s. */
  readonly retryMs?: number;
}

/** File kind of one witness's cosigned copy of a checkpoint note. */
export function cosignedFile(key: CosignatureVerifier): `cosigned-${string}` {
  return `cosigned-${key.keyId.toString(16).padStart(8, '0')}`;
}

const MAX_PENDING = 1000;
const MAX_ANSWER_BYTES = 64 * 1024;

/** Submits checkpoints to witnesses in the background. */
export class WitnessClient {
  readonly #options: WitnessClientOptions;
  readonly #lanes = new Map<string, Lane>();
  #closed = false;

  constructor(options: WitnessClientOptions) {
    for (const witness of options.witnesses) assertWitnessUrl(witness.url);
    this.#options = options;
  }

  /** Queues `checkpoint` for every witness; returns at once. */
  submit(checkpoint: WitnessedCheckpoint): void {
    if (this.#closed) return;
    for (const witness of this.#options.witnesses) {
      const id = `${witness.key.verifierKey} ${checkpoint.stream}`;
      let lane = this.#lanes.get(id);
      if (!lane) {
        lane = new Lane(witness, this.#options);
        this.#lanes.set(id, lane);
      }
      lane.add(checkpoint);
    }
  }

  /** Waits until every queue is empty or waiting for a retry (tests, clean stop). */
  async settled(): Promise<void> {
    await Promise.all([...this.#lanes.values()].map((lane) => lane.settled()));
  }

  /** Stops submitting (pending retries are dropped; cosignatures already stored stay). */
  close(): void {
    this.#closed = true;
    for (const lane of this.#lanes.values()) lane.close();
  }
}

/** One witness × one stream: checkpoints in order, one request at a time. */
class Lane {
  readonly #witness: WitnessEndpoint;
  readonly #options: WitnessClientOptions;
  readonly #queue: WitnessedCheckpoint[] = [];
  /** The size this witness last cosigned for the stream, once known. */
  #known: number | undefined;
  #running: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #delay: number;
  #stopped = false;

  constructor(witness: WitnessEndpoint, options: WitnessClientOptions) {
    this.#witness = witness;
    this.#options = options;
    this.#delay = options.retryMs ?? 5000;
  }

  add(checkpoint: WitnessedCheckpoint): void {
    if (this.#stopped) return;
    this.#queue.push(checkpoint);
    if (this.#queue.length > MAX_PENDING) this.#queue.shift();
    if (!this.#timer) this.#kick();
  }

  async settled(): Promise<void> {
    while (this.#running) await this.#running;
  }

  close(): void {
    this.#stopped = true;
    this.#queue.length = 0;
    clearTimeout(this.#timer);
  }

  #kick(): void {
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
    });
  }

  async #drain(): Promise<void> {
    while (!this.#stopped && this.#queue.length > 0) {
      const checkpoint = this.#queue[0] as WitnessedCheckpoint;
      let outcome: 'done' | 'retry' | 'stop';
      try {
        outcome = await this.#send(checkpoint);
      } catch (error) {
        this.#log('warn', checkpoint, `witness unreachable or failed; retrying later (${(error as Error).name})`);
        outcome = 'retry';
      }
      if (outcome === 'retry') {
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#kick();
        }, this.#delay);
        this.#timer.unref();
        this.#delay = Math.min(this.#delay * 2, 300_000);
        return;
      }
      this.#delay = this.#options.retryMs ?? 5000;
      if (outcome === 'stop') {
        this.close();
        return;
      }
      this.#queue.shift();
    }
  }

  /** One checkpoint to one witness, following 409s; says whether to move on, retry later, or stop. */
  async #send(checkpoint: WitnessedCheckpoint): Promise<'done' | 'retry' | 'stop'> {
    const file = cosignedFile(this.#witness.key);
    if (await this.#options.sink.getCheckpoint(checkpoint.stream, checkpoint.size, file)) {
      this.#known = Math.max(this.#known ?? 0, checkpoint.size);
      return 'done';
    }
    const note = new TextDecoder().decode(checkpoint.note);
    for (let attempt = 0; attempt < 3; attempt++) {
      const old = this.#known ?? 0;
      if (old > checkpoint.size) {
        // The witness cosigned a larger tree of this log than this checkpoint. A newer one of
        // ours will be sent after it; this one can no longer be cosigned.
        return 'done';
      }
      const proof = old === 0 ? [] : await checkpoint.proof(old);
      const answer = await this.#post(formatAddCheckpoint({ oldSize: old, proof, note }));
      if (answer.status === 200) return this.#store(checkpoint, note, answer.body);
      if (answer.status === 409) {
        const size = parseConflictSize(answer.body);
        if (size === undefined) return 'retry';
        if (size === old && old === checkpoint.size) return this.#fork(checkpoint, `the witness cosigned a different tree at size ${size}`);
        if (size > checkpoint.size && this.#queue.at(-1)?.size === checkpoint.size) {
          return this.#fork(checkpoint, `the witness cosigned size ${size}, beyond this log's newest checkpoint (${checkpoint.size}): records or checkpoints were removed`);
        }
        this.#known = size;
        continue;
      }
      if (answer.status === 422) return this.#fork(checkpoint, `the witness has cosigned a tree at size ${old} that this checkpoint does not extend (consistency proof refused)`);
      if (answer.status === 403 || answer.status === 404) {
        this.#log('error', checkpoint, `the witness refuses this log (${answer.status === 404 ? 'unknown origin' : 'untrusted log key'}); add this archive's verifier key to its --accept list. Not retried until restart`);
        return 'stop';
      }
      this.#log('warn', checkpoint, `the witness answered ${answer.status}; retrying later`);
      return 'retry';
    }
    return 'retry';
  }

  async #store(checkpoint: WitnessedCheckpoint, note: string, body: string): Promise<'done' | 'retry'> {
    // The spec lets a witness answer several lines (several keys); keep the one by the configured key.
    const cosigned = body
      .split('\n')
      .filter((line) => line.startsWith(`\u2014 ${this.#witness.key.name} `))
      .map((line) => withLine(note, line))
      .find((candidate) => candidate !== undefined && checkCosignatures(candidate, [this.#witness.key])[0]?.state === 'valid');
    if (cosigned === undefined) {
      this.#log('error', checkpoint, 'the witness answered 200 without a valid cosignature by its configured key; retrying later');
      return 'retry';
    }
    await this.#options.sink.putCheckpoint(checkpoint.stream, checkpoint.size, cosignedFile(this.#witness.key), new TextEncoder().encode(cosigned));
    this.#known = checkpoint.size;
    this.#options.logger.info({ stream: checkpoint.stream, size: checkpoint.size, witness: this.#witness.key.name }, 'checkpoint cosigned');
    return 'done';
  }

  #fork(checkpoint: WitnessedCheckpoint, reason: string): 'stop' {
    const message = `witness ${this.#witness.key.name}: ${reason} — this log forked or was rolled back; signing stops for this stream. Investigate with \`offchannel verify --witness\`; never work around it`;
    this.#options.logger.error({ stream: checkpoint.stream, size: checkpoint.size, witness: this.#witness.key.name }, `FORK: ${message}`);
    checkpoint.onFork(message);
    return 'stop';
  }

  async #post(body: string): Promise<{ status: number; body: string }> {
    const response = await fetch(`${this.#witness.url.replace(/\/+$/, '')}/add-checkpoint`, {
      method: 'POST',
      body,
      redirect: 'manual',
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      signal: AbortSignal.timeout(this.#options.timeoutMs ?? 10_000),
    });
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.length > MAX_ANSWER_BYTES) return { status: 502, body: '' };
    return { status: response.status, body: new TextDecoder().decode(bytes) };
  }

  #log(level: 'warn' | 'error', checkpoint: WitnessedCheckpoint, message: string): void {
    this.#options.logger[level]({ stream: checkpoint.stream, size: checkpoint.size, witness: this.#witness.key.name }, message);
  }
}

/** `note` with `line` added, or undefined when `line` is not a signature line. */
function withLine(note: string, line: string): string | undefined {
  try {
    return addSignatureLines(note, [line]);
  } catch {
    return undefined;
  }
}

/** Witness URLs: https anywhere, http only on a loopback address; no credentials. */
export function assertWitnessUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new WitnessError('WITNESS_REQUEST_MALFORMED', 'a witness url is an http(s) URL, e.g. https://witness.example or http://127.0.0.1:7380');
  }
  const loopback = parsed.hostname === 'localhost' || parsed.hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(parsed.hostname);
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && loopback)) {
    throw new WitnessError('WITNESS_REQUEST_MALFORMED', 'a witness url must be https (plain http only on a loopback address)');
  }
  if (parsed.username || parsed.password || parsed.search || parsed.hash) throw new WitnessError('WITNESS_REQUEST_MALFORMED', 'a witness url carries no credentials, query or fragment');
}
