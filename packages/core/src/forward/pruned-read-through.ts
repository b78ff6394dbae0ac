/**
 * Internal: reads of a pruned spool that continue into the archive of record.
 *
 * A spool that prunes (`archive.spoolPrune` in capture) drops its oldest records once every
 * forward target holds them, and `read` from a seq inside that prefix throws `RECORDS_PRUNED`.
 * Readers that only ever read what is new never go there. Two readers must, rarely: the
 * Recorder rebuilding a lost, damaged or lagging key index (a full read of the stream: without
 * the pruned keys, a replay of an old message would be recorded twice), and the deliverer
 * rebuilding its receipt key index or reading every receipt (day mode). For them, the records up
 * to the spool's pruned head come from the archive of record — the forwarder's first target,
 * which holds them by construction (pruning only drops what every target holds) — and the rest
 * from the spool.
 *
 * What is checked, all of it on this rare path only:
 * - The seam, before anything is returned: the archive's record at the pruned head's seq must
 *   hash (SHA-256 of its bytes, as the forwarder compares) to the pruned head's hash, the `prev`
 *   of the spool's first record.
 * - The prefix, as it is returned: the archive must return every seq from `fromSeq` up to the
 *   pruned head, in order, each record's `prev` the SHA-256 of the record before it (at seq 1,
 *   `ZERO_HASH`; else record `fromSeq - 1` is read too, as the anchor, not returned), and the
 *   record at the pruned head that hash again. The hash chain then ties every record read from
 *   the archive to the pruned head, so the seam check authenticates the whole prefix read, not
 *   only its last record. A record that breaks the chain stops the read before it is returned;
 *   those before it were returned unconfirmed to a read that then fails. A key index rebuilt
 *   by such a read may keep a head at a substituted record; the next start reads on from it,
 *   anchored on it, and fails again — until the archive is repaired, when the head no longer
 *   matches and the index is rebuilt.
 * - The join: the spool's first record after the prefix must carry the pruned head's hash as
 *   its `prev`, and the spool must return every seq after it, in order.
 * A mismatch in the archive is `PRUNED_SEAM_MISMATCH` (fatal: the two copies differ, nothing is
 * guessed); in the spool `ARCHIVE_CORRUPT`. `offchannel verify s3://…` checks the archive's
 * chain and checkpoints in full. An archive that cannot be reached is `PRUNED_READ_UNAVAILABLE`
 * (retryable: nothing is acknowledged or sent; see docs/capture.md).
 *
 * A prune that runs during a read (the forwarder's, between two reads of the spool) is
 * followed: when the spool refuses a seq as pruned (`RECORDS_PRUNED`) or skips seqs, the read
 * goes back to the archive — only if the spool's pruned prefix grew to cover the seq due;
 * otherwise the spool is damaged and the read fails.
 *
 * Cost: one read of the spool's small `pruned.json` per `read` call (readers call `read` at
 * start-up and after a failed append, not per capture); the archive is read only for the
 * pruned seqs actually asked for, plus one record for the seam (once per stream and prefix).
 * Records read from the spool are neither parsed nor hashed, but the first after the prefix.
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { ArchiveCorruptError } from '../errors/sink-errors.ts';
import { readRecordAt } from '../sink/read-record-at.ts';
import type { Sink, StoredRecord, StreamHead } from '../sink/sink.ts';

/** Where the records a spool pruned are read back from. */
export interface ArchiveOfRecord {
  /** The forward target's name, for messages. */
  readonly name: string;
  readonly sink: Sink;
}

/**
 * The archive of record does not continue into the spool where the spool's pruned prefix ends:
 * a record of the prefix is missing, out of order, does not chain to the one before it, or the
 * one at the prefix's last seq has another hash. Fatal: the two copies differ and neither is
 * taken on trust.
 */
export class PrunedSeamError extends OffchannelError {
  readonly stream: string;
  readonly seq: number;

  /** `missing`: the archive lacks records it should hold (most likely another bucket or prefix). */
  constructor(stream: string, archive: string, pruned: StreamHead, problem: string, missing = false) {
    const likely = missing
      ? `Most likely the archive of record is not the one this spool was forwarded to: if archive.url was changed, it now names another bucket or prefix; point it back.`
      : `The two copies differ (another writer, a spool or bucket restored from an older copy, or damage).`;
    super('PRUNED_SEAM_MISMATCH', `stream ${stream}: the spool pruned records 1–${pruned.seq} (the last with hash ${pruned.hash}), but in the archive of record ${archive} ${problem}. ${likely} Run offchannel verify on both; nothing was changed.`, { logSafe: true });
    this.stream = stream;
    this.seq = pruned.seq;
  }
}

/**
 * Records pruned from the spool were needed (to rebuild a key index, to read every delivery
 * receipt, …) and the archive of record could not be read. Retryable: nothing was acknowledged
 * or sent; the read succeeds once the archive answers.
 */
export class PrunedReadUnavailableError extends OffchannelError {
  readonly stream: string;
  readonly prunedThrough: number;

  constructor(stream: string, archive: string, prunedThrough: number, cause: unknown) {
    super('PRUNED_READ_UNAVAILABLE', `stream ${stream}: records 1–${prunedThrough} were pruned from the spool and a read needs them from the archive of record ${archive}, which could not be read. Nothing was acknowledged or sent. Check that ${archive} is reachable from this host and that its credentials are valid; the read succeeds once it answers.`, { cause, disposition: 'retryable', logSafe: true });
    this.stream = stream;
    this.prunedThrough = prunedThrough;
  }
}

const decoder = new TextDecoder();

/** A record's `prev` (undefined if it is not a JSON object with a string one). */
function prevOf(record: Uint8Array): string | undefined {
  try {
    const prev = (JSON.parse(decoder.decode(record)) as { prev?: unknown } | null)?.prev;
    return typeof prev === 'string' ? prev : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `read` for `spool` that reads its pruned prefix from `archive` (see the file comment).
 * `pruned` is not offered beside it: every seq is readable through it.
 */
export function prunedReadThrough(spool: Sink, archive: ArchiveOfRecord): Sink['read'] {
  /** Per stream, the pruned head whose seam was checked (prefixes only grow). */
  const checked = new Map<string, StreamHead>();

  /** A failure to read the archive: retryable unless the archive itself says otherwise. */
  const unavailable = (stream: string, pruned: StreamHead, error: unknown): unknown =>
    OffchannelError.isInstance(error) && error.disposition !== 'retryable' ? error : new PrunedReadUnavailableError(stream, archive.name, pruned.seq, error);

  async function checkSeam(stream: string, pruned: StreamHead): Promise<void> {
    const known = checked.get(stream);
    if (known?.seq === pruned.seq && known.hash === pruned.hash) return;
    let bytes: Uint8Array | undefined;
    try {
      bytes = await readRecordAt(archive.sink, stream, pruned.seq);
    } catch (error) {
      throw unavailable(stream, pruned, error);
    }
    if (!bytes) throw new PrunedSeamError(stream, archive.name, pruned, `there is no record ${pruned.seq}`, true);
    const hash = sha256Hex(bytes);
    if (hash !== pruned.hash) throw new PrunedSeamError(stream, archive.name, pruned, `record ${pruned.seq} has hash ${hash}`);
    checked.set(stream, pruned);
  }

  /**
   * Records `from`–`pruned.seq` from the archive, each seq once, in order and chained to the one
   * before it. `previous` is the hash of record `from - 1` when this read already has it;
   * otherwise that record is read first, as the anchor, and not returned: record `from` is then
   * checked too. Returns the last record's hash.
   */
  async function* fromArchive(stream: string, from: number, pruned: StreamHead, previous: string | undefined): AsyncGenerator<StoredRecord, string | undefined> {
    let next = previous === undefined && from > 1 ? from - 1 : from;
    const start = next;
    let records: AsyncIterator<StoredRecord> | undefined;
    try {
      while (next <= pruned.seq) {
        let item: IteratorResult<StoredRecord>;
        try {
          records ??= archive.sink.read(stream, { fromSeq: start })[Symbol.asyncIterator]();
          item = await records.next();
        } catch (error) {
          throw unavailable(stream, pruned, error);
        }
        if (item.done) throw new PrunedSeamError(stream, archive.name, pruned, `the records end before seq ${next}`, true);
        const stored = item.value;
        if (stored.seq !== next) throw new PrunedSeamError(stream, archive.name, pruned, `seq ${stored.seq} came where ${next} was due`);
        // The chain ties this record to the pruned head, whose hash is checked below.
        if (previous !== undefined && prevOf(stored.bytes) !== previous) throw new PrunedSeamError(stream, archive.name, pruned, `record ${next} does not chain to record ${next - 1} (its prev is not that record's hash)`);
        previous = sha256Hex(stored.bytes);
        // Checked again on the bytes returned now, not only on the seam read before.
        if (next === pruned.seq && previous !== pruned.hash) throw new PrunedSeamError(stream, archive.name, pruned, `record ${pruned.seq} has another hash`);
        if (next >= from) yield stored;
        next++;
      }
      return previous;
    } finally {
      await records?.return?.();
    }
  }

  return async function* read(stream: string, options?: { readonly fromSeq?: number }): AsyncIterable<StoredRecord> {
    // As the fs and memory sinks read it: seq 0 (or less) is the first record.
    let next = Math.max(1, options?.fromSeq ?? 1);
    /** The hash of record `next - 1` when it came from the archive in this read. */
    let previous = next === 1 ? ZERO_HASH : undefined;
    /** Why the spool stopped: thrown unless its pruned prefix now covers `next` (it only grows). */
    let overtaken: Error | undefined;
    for (;;) {
      // Validates the stream name before anything else is touched.
      const pruned = await spool.pruned?.(stream);
      if (overtaken !== undefined && !(pruned && next <= pruned.seq)) throw overtaken;
      overtaken = undefined;
      /** The `prev` the spool's next record must carry: the pruned head's, once records came from the archive. */
      let join: string | undefined;
      if (pruned && next <= pruned.seq) {
        await checkSeam(stream, pruned);
        previous = yield* fromArchive(stream, next, pruned, previous);
        next = pruned.seq + 1;
        join = pruned.hash;
      }
      try {
        for await (const stored of spool.read(stream, { fromSeq: next })) {
          if (stored.seq !== next) {
            // Skipped seqs: a prune overtook this read (the archive serves them), or damage.
            overtaken = new ArchiveCorruptError(`stream ${stream}: the spool returned seq ${stored.seq} where ${next} was due, and its pruned prefix does not cover ${next}`, { stream, seq: next });
            break;
          }
          if (join !== undefined && prevOf(stored.bytes) !== join) {
            throw new ArchiveCorruptError(`stream ${stream}: the spool's record ${next} does not continue its pruned prefix (its prev is not the hash in pruned.json)`, { stream, seq: next });
          }
          join = undefined;
          previous = undefined;
          yield stored;
          next++;
        }
        if (overtaken === undefined) return;
      } catch (error) {
        // The forwarder pruned further after `pruned()` answered: the archive serves those too.
        const through = OffchannelError.hasCode(error, 'RECORDS_PRUNED') ? (error as { readonly prunedThrough?: number }).prunedThrough : undefined;
        if (through === undefined || through < next) throw error;
        overtaken = error as Error;
      }
    }
  };
}
