/**
 * Writes one host's attestation chain: each call signs one note for all the host's streams
 * and stores it write-once as the next seq, naming the SHA-256 of the previous note. On open it
 * continues the chain already in the sink (the newest stored attestation of this host), so a
 * restarted process carries on where the last one stopped.
 */
import { SinkConflictError, SinkUnsuitableError } from '../errors/sink-errors.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import type { NoteSigner } from '../note/ed25519-key.ts';
import { NoteError } from '../errors/note-errors.ts';
import { MAX_NOTE_BYTES, parseNote, signNote } from '../note/signed-note.ts';
import type { Sink } from '../sink/sink.ts';
import { type Logger, noopLogger } from '../logger/logger.ts';
import { type AttestationId, type StreamAttestation, attestationDay, formatAttestation, isHostId, parseAttestation } from './attestation.ts';

/** The newest attestation of a host chain. */
export interface AttestationLink {
  readonly id: AttestationId;
  /** SHA-256 (hex) of its note file. */
  readonly hash: string;
  /** When it was made, ISO 8601 UTC (absent when the stored note cannot be parsed). */
  readonly time?: string;
}

export interface HostAttestorOptions {
  readonly sink: Sink;
  /** The host id (`coverage.host`): `a-z 0-9 . -`, never a person's identifier. */
  readonly host: string;
  /** The archive's checkpoint signing key. */
  readonly signer: NoteSigner;
  /** Default: the system clock. */
  readonly clock?: () => Date;
  /** Told when the clock is behind the previous attestation (the time is then held at it). */
  readonly logger?: Logger;
}

type AttestationSink = Sink & Required<Pick<Sink, 'putAttestation' | 'getAttestation' | 'attestations'>>;

export class HostAttestor {
  readonly host: string;
  readonly #sink: AttestationSink;
  readonly #signer: NoteSigner;
  readonly #clock: () => Date;
  readonly #logger: Logger;
  #last: AttestationLink | undefined;
  /** The clock was behind the previous attestation at the last one (said once per episode). */
  #held = false;

  private constructor(options: HostAttestorOptions, sink: AttestationSink) {
    this.host = options.host;
    this.#sink = sink;
    this.#signer = options.signer;
    this.#clock = options.clock ?? (() => new Date());
    this.#logger = options.logger ?? noopLogger;
  }

  /** Opens the chain of `host`. Throws `SinkUnsuitableError` when the sink cannot store attestations. */
  static async open(options: HostAttestorOptions): Promise<HostAttestor> {
    const { sink } = options;
    const shown = options.host.slice(0, 80);
    if (!isHostId(options.host)) throw new SinkUnsuitableError(`"${shown}" is not a host id: use 1–63 characters of a-z, 0-9, "." and "-" (config coverage.host)`);
    if (!sink.putAttestation || !sink.getAttestation || !sink.attestations) {
      throw new SinkUnsuitableError(`the ${sink.kind} sink does not store host attestations; use an archive directory (or its spool)`);
    }
    const attestor = new HostAttestor(options, sink as AttestationSink);
    await attestor.#reload();
    return attestor;
  }

  /** The newest attestation of the chain, or `undefined` before the first. */
  get last(): AttestationLink | undefined {
    return this.#last;
  }

  /**
   * Signs and stores the next attestation over `streams`. Resolves when it is durable. On a
   * conflict (another process wrote the same seq under this host id) the chain is re-read and
   * the error rethrown: the next call continues after the other writer's attestation.
   */
  async attest(streams: readonly StreamAttestation[]): Promise<AttestationLink> {
    // Never before the previous attestation: a clock set back (a boot before NTP) would file
    // this one under an earlier day, where the next start's look-back (`newestAttestation`)
    // does not find it, and that start would write this seq again under another day — a fork.
    const last = this.#last;
    const floor = last ? Date.parse(last.time ?? `${last.id.day}T00:00:00Z`) : 0;
    const now = Math.floor(this.#clock().getTime() / 1000) * 1000;
    const time = new Date(Math.max(floor, now));
    // Held at the previous attestation's time: after a clock that ran ahead (a bad RTC, a wrong
    // NTP answer) every attestation says that time until the clock passes it — coverage then
    // shows no newer proof of life. Said when it starts and when it ends, never silently.
    if (floor > now !== this.#held) {
      this.#held = floor > now;
      if (this.#held) this.#logger.warn({ host: this.host, heldAt: time.toISOString(), behindMs: floor - now }, 'the clock is behind the previous attestation: attestations keep its time until the clock passes it; check the host clock (NTP)');
      else this.#logger.info({ host: this.host }, 'the clock has passed the previous attestation again; attestations carry the clock time');
    }
    const seq = (last?.id.seq ?? 0) + 1;
    const text = formatAttestation(this.#signer.name, { host: this.host, time: time.toISOString(), seq, prev: last?.hash ?? ZERO_HASH, streams });
    const bytes = new TextEncoder().encode(signNote(text, [this.#signer]));
    if (bytes.length > MAX_NOTE_BYTES) {
      throw new NoteError('NOTE_MALFORMED', `an attestation of ${streams.length} streams is ${bytes.length} bytes, over the ${MAX_NOTE_BYTES}-byte note limit: split the streams over more capture processes (--shard)`);
    }
    const id: AttestationId = { host: this.host, day: attestationDay(time), seq };
    try {
      await this.#sink.putAttestation(id, bytes);
    } catch (error) {
      if (error instanceof SinkConflictError) await this.#reload();
      throw error;
    }
    this.#last = { id, hash: sha256Hex(bytes), time: time.toISOString().replace('.000Z', 'Z') };
    return this.#last;
  }

  async #reload(): Promise<void> {
    const id = await newestAttestation(this.#sink, this.host, this.#clock());
    const bytes = id && (await this.#sink.getAttestation(id));
    this.#last = id && bytes ? { id, hash: sha256Hex(bytes), ...timeOf(bytes) } : undefined;
  }
}

/** The time a stored note states (not verified: it is only echoed in the next run's first records). */
function timeOf(bytes: Uint8Array): { time?: string } {
  try {
    return { time: parseAttestation(parseNote(bytes).text).attestation.time };
  } catch (error) {
    if (error instanceof NoteError) return {};
    throw error;
  }
}

/** Days back from now that {@link newestAttestation} looks, in turn, before it lists every day. */
const LOOK_BACK_DAYS = [1, 8, 62, 732];

/**
 * `host`'s stored attestation with the highest seq, or `undefined`. A host attests every few
 * minutes for years, so the days since yesterday are listed first, then wider spans back from
 * `now`, and all days only when none of those holds one (later days are always included: a clock
 * set back does not hide them). Costs what the recent days hold, not the whole chain.
 */
export async function newestAttestation(sink: Required<Pick<Sink, 'attestations'>>, host: string, now: Date): Promise<AttestationId | undefined> {
  const newest = (ids: readonly AttestationId[]) => ids.reduce<AttestationId | undefined>((found, candidate) => (found === undefined || candidate.seq > found.seq ? candidate : found), undefined);
  for (const days of LOOK_BACK_DAYS) {
    const found = newest(await sink.attestations(host, { fromDay: attestationDay(new Date(now.getTime() - days * 86_400_000)) }));
    if (found) return found;
  }
  return newest(await sink.attestations(host));
}
