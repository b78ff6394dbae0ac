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
 * The seam is checked before anything is returned: the archive's record at the pruned head's
 * seq must hash (SHA-256 of its bytes, as the forwarder compares) to the pruned head's hash, the
 * `prev` of the spool's first record — so the archive's copy of the prefix ends exactly where the
 * spool continues. The archive must also return every seq of the prefix, in order. A mismatch, or
 * a record missing, is `PRUNED_SEAM_MISMATCH` (fatal: the two copies differ, nothing is guessed).
 * The records before the seam are not re-hashed here (the reader gets them as the archive holds
 * them; `offchannel verify s3://…` checks the archive's chain and checkpoints). An archive that cannot be reached is `PRUNED_READ_UNAVAILABLE` (retryable: the
 * recorder rejects the captures, not acknowledged, and the connector runtime retries them with
 * its backoff until the archive answers; see docs/capture.md).
 *
 * Cost: one read of the spool's small `pruned.json` per `read` call (readers call `read` at
 * start-up and after a failed append, not per capture); the archive is read only for the
 * pruned seqs actually asked for, plus one record for the seam (once per stream and prefix).
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { sha256Hex } from '../hash/sha256.ts';
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
 * its record at the prefix's last seq is missing or has another hash. Fatal: the two copies
 * differ (a restored spool, another writer, a damaged archive) and neither is taken on trust.
 */
export class PrunedSeamError extends OffchannelError {
  readonly stream: string;
  readonly seq: number;

  constructor(stream: string, archive: string, pruned: StreamHead, problem: string) {
    super('PRUNED_SEAM_MISMATCH', `stream ${stream}: the spool pruned records 1–${pruned.seq} (the last with hash ${pruned.hash}), but in the archive of record ${archive} ${problem}; the spool and the archive differ. Run offchannel verify on both; nothing was changed.`, { logSafe: true });
    this.stream = stream;
    this.seq = pruned.seq;
  }
}

/**
 * Records pruned from the spool were needed and the archive of record could not be read.
 * Retryable: nothing was acknowledged; the read succeeds once the archive answers.
 */
export class PrunedReadUnavailableError extends OffchannelError {
  readonly stream: string;
  readonly prunedThrough: number;

  constructor(stream: string, archive: string, prunedThrough: number, cause: unknown) {
    super('PRUNED_READ_UNAVAILABLE', `stream ${stream}: records 1–${prunedThrough} were pruned from the spool and must be read from the archive of record ${archive} (a key index is being rebuilt), which could not be read. Nothing was acknowledged; it is retried until ${archive} answers.`, { cause, disposition: 'retryable', logSafe: true });
    this.stream = stream;
    this.prunedThrough = prunedThrough;
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
    if (!bytes) throw new PrunedSeamError(stream, archive.name, pruned, `there is no record ${pruned.seq}`);
    const hash = sha256Hex(bytes);
    if (hash !== pruned.hash) throw new PrunedSeamError(stream, archive.name, pruned, `record ${pruned.seq} has hash ${hash}`);
    checked.set(stream, pruned);
  }

  /** Records `from`–`pruned.seq` from the archive, each seq once and in order. */
  async function* fromArchive(stream: string, from: number, pruned: StreamHead): AsyncGenerator<StoredRecord, void> {
    let next = from;
    let records: AsyncIterator<StoredRecord> | undefined;
    try {
      while (next <= pruned.seq) {
        let item: IteratorResult<StoredRecord>;
        try {
          records ??= archive.sink.read(stream, { fromSeq: from })[Symbol.asyncIterator]();
          item = await records.next();
        } catch (error) {
          throw unavailable(stream, pruned, error);
        }
        if (item.done) throw new PrunedSeamError(stream, archive.name, pruned, `the records end before seq ${next}`);
        const stored = item.value;
        if (stored.seq !== next) throw new PrunedSeamError(stream, archive.name, pruned, `seq ${stored.seq} came where ${next} was due`);
        // Checked again on the bytes returned now, not only on the seam read before.
        if (next === pruned.seq && sha256Hex(stored.bytes) !== pruned.hash) throw new PrunedSeamError(stream, archive.name, pruned, `record ${pruned.seq} has another hash`);
        yield stored;
        next++;
      }
    } finally {
      await records?.return?.();
    }
  }

  return async function* read(stream: string, options?: { readonly fromSeq?: number }): AsyncIterable<StoredRecord> {
    let next = options?.fromSeq ?? 1;
    let prunedMeanwhile: Error | undefined;
    for (;;) {
      // Validates the stream name before anything else is touched.
      const pruned = await spool.pruned?.(stream);
      // A prefix only grows: one that does not reach what the spool just refused is not followed.
      if (prunedMeanwhile !== undefined && !(pruned && next <= pruned.seq)) throw prunedMeanwhile;
      if (pruned && next <= pruned.seq) {
        await checkSeam(stream, pruned);
        yield* fromArchive(stream, next, pruned);
        next = pruned.seq + 1;
      }
      try {
        for await (const stored of spool.read(stream, { fromSeq: next })) {
          yield stored;
          next = stored.seq + 1;
        }
        return;
      } catch (error) {
        // The forwarder pruned further after `pruned()` answered: the archive serves those too.
        const through = OffchannelError.hasCode(error, 'RECORDS_PRUNED') ? (error as { readonly prunedThrough?: number }).prunedThrough : undefined;
        if (through === undefined || through < next) throw error;
        prunedMeanwhile = error as Error;
      }
    }
  };
}
