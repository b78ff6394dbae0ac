/**
 * The witness's one operation, c2sp.org/tlog-witness `add-checkpoint`, checked in the spec's
 * order: a well-formed request (else 400), a known origin (404), a signature from a key trusted
 * for that origin (403), old size ≤ checkpoint size (400), old size = the latest size cosigned
 * (409, with that size), a consistency proof from it that verifies (422), the same root when
 * the size did not change (409). Only then is the new head made durable (journal, state file)
 * and the cosignature returned. Checks and update run one at a time per log, so two requests
 * can never both advance from one size (the spec's rollback race).
 *
 * Logs accepted: for each `--accept` key, the log whose origin is the key's name (a witnessed
 * log follows the spec's SHOULD) and offchannel's per-stream logs `<key name>/<stream>`.
 */
import {
  type Cosigner,
  type NoteVerifier,
  NoteError,
  WitnessError,
  openNote,
  parseAddCheckpoint,
  parseCheckpoint,
  parseNote,
  verifyConsistency,
  sameHash,
} from '@offchannel/core';
import type { WitnessState } from './witness-state.ts';

export interface WitnessAnswer {
  readonly status: 200 | 400 | 403 | 404 | 409 | 422;
  readonly body: string;
  readonly contentType: string;
}

export interface WitnessServiceOptions {
  readonly key: Cosigner;
  readonly accept: readonly NoteVerifier[];
  readonly state: WitnessState;
  /** POSIX seconds; injected by tests. */
  readonly now?: () => number;
}

const TEXT = 'text/plain; charset=utf-8';

export class WitnessService {
  readonly #options: WitnessServiceOptions;
  readonly #queues = new Map<string, Promise<unknown>>();

  constructor(options: WitnessServiceOptions) {
    this.#options = options;
  }

  /** Answers one add-checkpoint request body. Never throws for bad input. */
  async addCheckpoint(body: Uint8Array): Promise<WitnessAnswer> {
    let request;
    let checkpoint;
    try {
      request = parseAddCheckpoint(body);
      checkpoint = parseCheckpoint(parseNote(request.note).text);
    } catch (error) {
      if (error instanceof WitnessError || error instanceof NoteError) return answer(400, `${error.message}\n`);
      throw error;
    }
    const trusted = this.#options.accept.filter((key) => checkpoint.origin === key.name || checkpoint.origin.startsWith(`${key.name}/`));
    if (trusted.length === 0) return answer(404, 'unknown log: this witness accepts no key for this origin\n');
    try {
      openNote(request.note, trusted);
    } catch (error) {
      if (error instanceof NoteError) return answer(403, 'no signature from a key this witness trusts for this origin verifies\n');
      throw error;
    }
    if (request.oldSize > checkpoint.size) return answer(400, 'the old size is larger than the checkpoint size\n');
    return this.#serial(checkpoint.origin, async () => {
      const head = this.#options.state.head(checkpoint.origin);
      const latest = head?.size ?? 0;
      if (request.oldSize !== latest) return { status: 409, body: `${latest}\n`, contentType: 'text/x.tlog.size' } as const;
      if (head && request.oldSize === checkpoint.size) {
        if (!sameHash(head.root, checkpoint.root)) {
          await this.#options.state.keepEvidence(checkpoint.origin, checkpoint.size, request.note);
          return { status: 409, body: `${latest}\n`, contentType: 'text/x.tlog.size' } as const;
        }
      } else if (head && !verifyConsistency(head.size, checkpoint.size, head.root, checkpoint.root, request.proof)) {
        // The spec lets a witness keep such a request: signed by the log, it proves misbehaviour
        // (or a broken proof — the note and the witness's cosigned size tell which).
        await this.#options.state.keepEvidence(checkpoint.origin, checkpoint.size, request.note);
        return answer(422, `the consistency proof from size ${head.size} does not verify: this checkpoint is not an extension of the one this witness cosigned\n`);
      }
      if (!head || checkpoint.size > head.size) await this.#options.state.advance({ origin: checkpoint.origin, size: checkpoint.size, root: checkpoint.root });
      const time = (this.#options.now ?? (() => Math.floor(Date.now() / 1000)))();
      return answer(200, this.#options.key.cosign(parseNote(request.note).text, time));
    });
  }

  /** Runs `task` after every earlier task of the same origin. */
  async #serial(origin: string, task: () => Promise<WitnessAnswer>): Promise<WitnessAnswer> {
    const previous = this.#queues.get(origin) ?? Promise.resolve();
    const next = previous.then(task, task);
    const tail = next.catch(() => undefined);
    this.#queues.set(origin, tail);
    void tail.then(() => {
      if (this.#queues.get(origin) === tail) this.#queues.delete(origin);
    });
    return next;
  }
}

function answer(status: WitnessAnswer['status'], body: string): WitnessAnswer {
  return { status, body, contentType: TEXT };
}
