/**
 * Verifies an archive through any {@link Sink}: for every stream, every record's canonical
 * bytes, schema, `stream`, contiguous `seq`, `prev` link and unique key, and every blob a
 * record names (present, SHA-256 and size match). Then the sink's own physical audit, if it
 * has one. Needs nothing but read access — not the capture host, not its keys.
 *
 * What the chain alone cannot show: a rewrite of a whole stream from some record onwards with
 * every later `prev` recomputed, or removal of the newest records. Signed checkpoints close
 * both (see docs/threat-model.md).
 */
import { OffchannelError } from '../errors/offchannel-error.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { decodeRecord } from '../record/encode-record.ts';
import type { ArchiveRecord, BlobRef } from '../record/record.ts';
import type { Sink, StreamHead } from '../sink/sink.ts';

export interface VerificationFailure {
  /** Stable code, e.g. `PREV_MISMATCH`, `SEQ_GAP`, `BLOB_MISSING`. */
  readonly code: string;
  /** What is wrong, naming stream, seq, hashes — never record content. */
  readonly message: string;
  readonly stream?: string;
  /** The seq of the record that is missing, altered or out of place. */
  readonly seq?: number;
}

export interface StreamSummary {
  readonly stream: string;
  /** Records read. */
  readonly records: number;
  /** Seq and hash of the last record that verified. */
  readonly head: StreamHead;
  readonly ok: boolean;
}

export interface VerificationReport {
  readonly ok: boolean;
  readonly streams: readonly StreamSummary[];
  /** Distinct blobs whose bytes were hashed. */
  readonly blobsChecked: number;
  readonly blobBytes: number;
  /** In the order found; the first one is the headline. */
  readonly failures: readonly VerificationFailure[];
}

export interface VerifyOptions {
  /** Only these streams (default: all). */
  readonly streams?: readonly string[];
  /** Hash every referenced blob (default true). `false` checks only that each exists with the right size. */
  readonly blobContent?: boolean;
  /** Stop collecting after this many failures (default 100). */
  readonly maxFailures?: number;
  /** Called every 1,000 records and at the end of each stream. */
  readonly onProgress?: (progress: { readonly stream: string; readonly seq: number }) => void;
}

type BlobState = { readonly ok: true; readonly size: number } | { readonly ok: false; readonly code: string; readonly detail: string };

/** Verifies every stream (or `options.streams`) and the sink's audit. Never throws for damaged data. */
export async function verifyArchive(sink: Sink, options: VerifyOptions = {}): Promise<VerificationReport> {
  const failures: VerificationFailure[] = [];
  const maxFailures = options.maxFailures ?? 100;
  const blobs = new Map<string, BlobState>();
  const totals = { blobsChecked: 0, blobBytes: 0 };
  const report = (failure: VerificationFailure): void => {
    if (failures.length < maxFailures) failures.push(failure);
  };
  const checkBlob = async (sha256: string): Promise<BlobState> => {
    const known = blobs.get(sha256);
    if (known) return known;
    let state: BlobState;
    try {
      state = await readBlobState(sha256);
    } catch (error) {
      state = { ok: false, code: 'BLOB_UNREADABLE', detail: `cannot be read (${describeError(error)})` };
    }
    blobs.set(sha256, state);
    return state;
  };
  const readBlobState = async (sha256: string): Promise<BlobState> => {
    let state: BlobState;
    if (options.blobContent === false) {
      const info = await sink.statBlob(sha256);
      state = info ? { ok: true, size: info.size } : { ok: false, code: 'BLOB_MISSING', detail: 'is missing' };
    } else {
      const bytes = await sink.getBlob(sha256);
      if (!bytes) state = { ok: false, code: 'BLOB_MISSING', detail: 'is missing' };
      else {
        totals.blobsChecked++;
        totals.blobBytes += bytes.length;
        const actual = sha256Hex(bytes);
        state = actual === sha256 ? { ok: true, size: bytes.length } : { ok: false, code: 'BLOB_HASH_MISMATCH', detail: `has content hashing to ${actual}` };
      }
    }
    return state;
  };

  const summaries: StreamSummary[] = [];
  let streams: readonly string[] = [];
  try {
    streams = options.streams ?? (await sink.streams());
  } catch (error) {
    report({ code: 'UNREADABLE', message: `the list of streams cannot be read: ${describeError(error)}` });
  }
  for (const stream of streams) {
    try {
      summaries.push(await verifyStream(sink, stream, { report, checkBlob, onProgress: options.onProgress }));
    } catch (error) {
      report({ stream, code: 'UNREADABLE', message: `stream ${stream} cannot be read: ${describeError(error)}` });
      summaries.push({ stream, records: 0, head: { seq: 0, hash: ZERO_HASH }, ok: false });
    }
  }
  if (sink.audit && options.streams === undefined) {
    try {
      for await (const finding of sink.audit()) report(finding);
    } catch (error) {
      report({ code: 'UNREADABLE', message: `the archive's physical audit could not finish: ${describeError(error)}` });
    }
  }
  return { ok: failures.length === 0, streams: summaries, failures, ...totals };
}

interface StreamContext {
  readonly report: (failure: VerificationFailure) => void;
  readonly checkBlob: (sha256: string) => Promise<BlobState>;
  readonly onProgress: VerifyOptions['onProgress'];
}

async function verifyStream(sink: Sink, stream: string, context: StreamContext): Promise<StreamSummary> {
  const { report } = context;
  const keys = new Map<string, number>();
  let head: StreamHead = { seq: 0, hash: ZERO_HASH };
  let records = 0;
  let ok = true;
  /** A prev mismatch found at `seq`: record seq-1 or seq itself was altered; the next record tells which. */
  let suspect: { seq: number; hash: string } | undefined;
  const chainFailure = (failure: Omit<VerificationFailure, 'stream'>): StreamSummary => {
    report({ ...failure, stream });
    return { stream, records, head, ok: false };
  };

  for await (const stored of sink.read(stream)) {
    records++;
    let record: ArchiveRecord;
    let hash: string;
    try {
      ({ record, hash } = decodeRecord(stored.bytes));
    } catch (error) {
      const code = OffchannelError.isInstance(error) ? error.code : 'UNREADABLE';
      const why = error instanceof Error ? error.message : String(error);
      return chainFailure({ seq: stored.seq, code, message: `stream ${stream} seq ${stored.seq}: stored bytes are not a valid record (${why})` });
    }
    if (suspect) {
      // The previous record's prev did not match. If this record's prev does not match the
      // suspect's hash either, the suspect itself was altered; otherwise its predecessor was.
      const altered = record.prev === suspect.hash ? suspect.seq - 1 : suspect.seq;
      return chainFailure({ seq: altered, code: 'PREV_MISMATCH', message: `stream ${stream} seq ${altered}: record altered — its hash no longer matches the prev stored in the record after it` });
    }
    if (record.stream !== stream) {
      return chainFailure({ seq: stored.seq, code: 'WRONG_STREAM', message: `stream ${stream} seq ${stored.seq}: record belongs to stream ${record.stream}` });
    }
    const expected = head.seq + 1;
    if (record.seq !== expected) {
      const message =
        record.seq > expected
          ? `stream ${stream} seq ${expected}: record missing or out of place — found seq ${record.seq} where seq ${expected} should be`
          : `stream ${stream} seq ${expected}: records out of order or repeated — found seq ${record.seq} where seq ${expected} should be`;
      return chainFailure({ seq: expected, code: record.seq > expected ? 'SEQ_GAP' : 'SEQ_ORDER', message });
    }
    if (stored.seq !== record.seq) {
      return chainFailure({
        seq: record.seq,
        code: 'SEQ_POSITION',
        message: `stream ${stream} seq ${record.seq}: the record is stored where seq ${stored.seq} belongs (a segment was renamed or moved)`,
      });
    }
    if (record.prev !== head.hash) {
      suspect = { seq: record.seq, hash };
      head = { seq: record.seq, hash };
      continue;
    }
    const earlier = keys.get(record.key);
    if (earlier !== undefined) {
      report({ stream, seq: record.seq, code: 'DUPLICATE_KEY', message: `stream ${stream} seq ${record.seq}: idempotency key already used by seq ${earlier}` });
      ok = false;
    }
    keys.set(record.key, record.seq);
    for (const [field, ref] of blobRefs(record)) {
      const state = await context.checkBlob(ref.sha256);
      if (!state.ok) {
        report({ stream, seq: record.seq, code: state.code, message: `stream ${stream} seq ${record.seq}: blob ${ref.sha256} (${field}) ${state.detail}` });
        ok = false;
      } else if (state.size !== ref.size) {
        report({ stream, seq: record.seq, code: 'BLOB_SIZE_MISMATCH', message: `stream ${stream} seq ${record.seq}: blob ${ref.sha256} (${field}) is ${state.size} bytes, record says ${ref.size}` });
        ok = false;
      }
    }
    head = { seq: record.seq, hash };
    if (record.seq % 1000 === 0) context.onProgress?.({ stream, seq: record.seq });
  }
  if (suspect) {
    const altered = suspect.seq - 1;
    return chainFailure({
      seq: altered,
      code: 'PREV_MISMATCH',
      message: `stream ${stream} seq ${altered}: record altered — its hash does not match the prev stored in seq ${suspect.seq} (or seq ${suspect.seq}'s prev was altered)`,
    });
  }
  context.onProgress?.({ stream, seq: head.seq });
  return { stream, records, head, ok };
}

function describeError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : String(error);
}

/** Every blob a record names, with the field that names it. */
export function blobRefs(record: ArchiveRecord): [string, BlobRef][] {
  const refs: [string, BlobRef][] = [];
  if (record.raw) refs.push(['raw', record.raw]);
  if (record.textBlob) refs.push(['textBlob', record.textBlob]);
  record.attachments?.forEach((attachment, index) => {
    if (attachment.status === 'stored') refs.push([`attachments[${index}]`, attachment]);
  });
  return refs;
}
