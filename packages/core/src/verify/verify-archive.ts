/**
 * Verifies an archive through any {@link Sink}: for every stream, every record's canonical
 * bytes, schema, `stream`, position, contiguous `seq`, `prev` link and unique key, and every
 * blob a record names (present, SHA-256 and size match). With verifier keys it also checks the
 * stream's signed checkpoints (see `checkpoint-check.ts`). Then the sink's own physical audit,
 * if it has one. Needs nothing but read access — not the capture host, not its secrets.
 *
 * What the chain alone cannot show — a stream rewritten with every later `prev` recomputed, or
 * its newest records removed — is what signed checkpoints show. docs/verification.md explains
 * every check and failure code.
 */
import type { X509Certificate } from 'node:crypto';
import { OffchannelError } from '../errors/offchannel-error.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import type { CosignatureVerifier } from '../note/cosignature.ts';
import type { NoteVerifier } from '../note/ed25519-key.ts';
import { decodeRecord } from '../record/encode-record.ts';
import type { ArchiveRecord, BlobRef } from '../record/record.ts';
import { readRecordAt } from '../sink/read-record-at.ts';
import type { Sink, StreamHead } from '../sink/sink.ts';
import { availableParallelism } from 'node:os';
import { blobRefs } from './blob-refs.ts';
import { type ArchiveLogSummary, checkArchiveLogs } from './archive-log-check.ts';
import { type AttestationSummary, type AttestedHead, type VerifiedAttestation, checkAttestations } from './attestation-check.ts';
import { CheckpointCheck, type CheckpointSummary, type VerifiedCheckpoint } from './checkpoint-check.ts';
import { KeyFingerprints } from './key-fingerprints.ts';
import { VerifyPool, verifyStreamParallel } from './parallel-verify.ts';

export type { CheckpointSummary } from './checkpoint-check.ts';

export interface VerificationFailure {
  /** Stable code, e.g. `PREV_MISMATCH`, `SEQ_GAP`, `BLOB_MISSING`, `CHECKPOINT_ROOT_MISMATCH`. */
  readonly code: string;
  /** What is wrong, naming stream, seq, hashes — never record content. */
  readonly message: string;
  readonly stream?: string;
  /** The seq of the record that is missing, altered or out of place (or the checkpoint size). */
  readonly seq?: number;
  /** `critical` for evidence of forgery or a forked log (bad signature, equivocation, rewrite). */
  readonly severity?: 'critical';
}

export interface StreamSummary {
  readonly stream: string;
  /** Records read. */
  readonly records: number;
  /** Seq and hash of the last record that verified. */
  readonly head: StreamHead;
  readonly ok: boolean;
  /** Verified checkpoints, ascending (only when verifier keys were given). */
  readonly checkpoints?: readonly CheckpointSummary[];
  /** Worker threads that verified this stream's segments in parallel (absent: verified on one thread). */
  readonly workers?: number;
  /** A spool's pruned prefix: records 1 to this seq were removed after every forward target held them. */
  readonly pruned?: number;
  /**
   * Incremental verification: per stream, the newest checkpoint an earlier audit verified (see
   * `readVerifiedState`). Needs `verifiers`. For those streams only what came after is read —
   * the records after that checkpoint, the blobs and tiles they name, the checkpoints at its
   * size or later, the segments that hold them — and every newer checkpoint must be provably
   * consistent with it (RFC 9162). Anything that contradicts it fails as critical.
   */
  readonly since?: ReadonlyMap<string, VerifiedCheckpoint>;
}

export interface VerificationReport {
  readonly ok: boolean;
  readonly streams: readonly StreamSummary[];
  /** Distinct blobs whose bytes were hashed. */
  readonly blobsChecked: number;
  readonly blobBytes: number;
  /** In the order found; the first one is the headline. */
  readonly failures: readonly VerificationFailure[];
  /** Findings that do not fail verification (records not yet checkpointed, untrusted TSA…). */
  readonly warnings: readonly VerificationFailure[];
  /** Host attestation chains checked, per host (only when verifier keys were given and the sink stores attestations). */
  readonly attestations?: readonly AttestationSummary[];
  /** The archive logs checked, one per capture host (only under a witness policy, when the archive has any; see docs/witnessing.md). */
  readonly archiveLogs?: readonly ArchiveLogSummary[];
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
  /**
   * Verifier keys of the archive's signer(s). When given, every stream must have valid signed
   * checkpoints that match its records (see docs/verification.md).
   */
  readonly verifiers?: readonly NoteVerifier[];
  /** Checkpoint notes obtained elsewhere (an earlier audit, another copy): checked for equivocation. */
  readonly extraCheckpoints?: readonly Uint8Array[];
  /** Trusted TSA certificates for RFC 3161 tokens. */
  readonly tsaCertificates?: readonly X509Certificate[];
  /** Witness policy (needs `verifiers`): see `CheckpointCheckOptions.witnesses`. */
  readonly witnesses?: readonly CosignatureVerifier[];
  /** Cosignatures needed from `witnesses` (default: all of them). */
  readonly quorum?: number;
  /** Internal: per stream, the checkpoint sizes a witnessed archive checkpoint includes (set by `verifyArchive`). */
  readonly archiveLogIncluded?: ReadonlyMap<string, ReadonlySet<number>>;
  /**
   * Worker threads for streams the sink can hand out in segments (default: one per CPU; 0 or 1
   * verifies on this thread only). Results are identical either way.
   */
  readonly workers?: number;
  /**
   * Incremental verification: per stream, the newest checkpoint an earlier audit verified (see
   * `readVerifiedState`). Needs `verifiers`. For those streams only what came after is read —
   * the records after that checkpoint, the blobs and tiles they name, the checkpoints at its
   * size or later, the segments that hold them — and every newer checkpoint must be provably
   * consistent with it (RFC 9162). Anything that contradicts it fails as critical.
   */
  readonly since?: ReadonlyMap<string, VerifiedCheckpoint>;
  /**
   * Incremental verification of host attestations: per host, the newest attestation an earlier
   * audit verified (see `readVerifiedAttestations`). Only later ones are read; the first must
   * name its hash, and it must still be stored unchanged.
   */
  readonly sinceAttestations?: ReadonlyMap<string, VerifiedAttestation>;
}

type BlobState = { readonly ok: true; readonly size: number } | { readonly ok: false; readonly code: string; readonly detail: string };

interface Context {
  readonly options: VerifyOptions;
  readonly report: (failure: VerificationFailure) => void;
  readonly warn: (warning: VerificationFailure) => void;
  readonly checkBlob: (sha256: string) => Promise<BlobState>;
  /** The worker pool, started on first use (undefined when parallel verification is off or unavailable). */
  readonly pool: () => VerifyPool | undefined;
  /** Stream heads signed by host attestations (verifier keys given). */
  readonly attested: ReadonlyMap<string, readonly AttestedHead[]>;
}

/** Verifies every stream (or `options.streams`) and the sink's audit. Never throws for damaged data. */
export async function verifyArchive(sink: Sink, options: VerifyOptions = {}): Promise<VerificationReport> {
  const failures: VerificationFailure[] = [];
  const warnings: VerificationFailure[] = [];
  const maxFailures = options.maxFailures ?? 100;
  const blobs = new Map<string, BlobState>();
  const totals = { blobsChecked: 0, blobBytes: 0 };
  const report = (failure: VerificationFailure): void => {
    if (failures.length < maxFailures) failures.push(failure);
  };
  const warn = (warning: VerificationFailure): void => {
    if (warnings.length < maxFailures) warnings.push(warning);
  };
  const readBlob = async (sha256: string): Promise<BlobState> => {
    if (options.blobContent === false) {
      const info = await sink.statBlob(sha256);
      return info ? { ok: true, size: info.size } : { ok: false, code: 'BLOB_MISSING', detail: 'is missing' };
    }
    const bytes = await sink.getBlob(sha256);
    if (!bytes) return { ok: false, code: 'BLOB_MISSING', detail: 'is missing' };
    totals.blobsChecked++;
    totals.blobBytes += bytes.length;
    const actual = sha256Hex(bytes);
    return actual === sha256 ? { ok: true, size: bytes.length } : { ok: false, code: 'BLOB_HASH_MISMATCH', detail: `has content hashing to ${actual}` };
  };
  const checkBlob = async (sha256: string): Promise<BlobState> => {
    const known = blobs.get(sha256);
    if (known) return known;
    let state: BlobState;
    try {
      state = await readBlob(sha256);
    } catch (error) {
      state = { ok: false, code: 'BLOB_UNREADABLE', detail: `cannot be read (${describeError(error)})` };
    }
    blobs.set(sha256, state);
    return state;
  };
  let attested: ReadonlyMap<string, readonly AttestedHead[]> = new Map();
  let attestations: readonly AttestationSummary[] | undefined;
  if (options.verifiers && sink.attestationHosts) {
    try {
      const result = await checkAttestations(sink, options.verifiers, report, options.sinceAttestations);
      attested = result.heads;
      attestations = result.hosts;
    } catch (error) {
      report({ code: 'UNREADABLE', message: `the host attestations cannot be read: ${describeError(error)}` });
    }
  }
  let archiveLog: Awaited<ReturnType<typeof checkArchiveLogs>>;
  if (options.verifiers && options.witnesses?.length) {
    try {
      archiveLog = await checkArchiveLogs(sink, { verifiers: options.verifiers, witnesses: options.witnesses, quorum: options.quorum ?? options.witnesses.length, report });
    } catch (error) {
      report({ code: 'UNREADABLE', message: `the archive log cannot be read: ${describeError(error)}` });
    }
  }
  let pool: VerifyPool | undefined;
  let poolTried = false;
  const workers = options.workers ?? availableParallelism();
  const context: Context = {
    options: archiveLog ? { ...options, archiveLogIncluded: archiveLog.included } : options,
    report,
    warn,
    checkBlob,
    attested,
    pool: () => {
      if (!poolTried && workers > 1) pool = VerifyPool.create(workers);
      poolTried = true;
      return pool;
    },
  };

  const summaries: StreamSummary[] = [];
  let streams: readonly string[] = [];
  try {
    const stored = await sink.streams();
    streams = options.streams ?? stored;
    // A stream asked for by name that the archive does not hold fails: it is not "intact".
    for (const stream of options.streams ?? []) {
      if (!stored.includes(stream)) report({ stream, code: 'STREAM_MISSING', message: `stream ${stream} is not in the archive (no records, checkpoints or tiles); check the name against the archive's streams/ directory` });
    }
  } catch (error) {
    report({ code: 'UNREADABLE', message: `the list of streams cannot be read: ${describeError(error)}` });
  }
  try {
    for (const stream of streams) {
      try {
        summaries.push(await verifyStream(sink, stream, context));
      } catch (error) {
        report({ stream, code: 'UNREADABLE', message: `stream ${stream} cannot be read: ${describeError(error)}` });
        summaries.push({ stream, records: 0, head: { seq: 0, hash: ZERO_HASH }, ok: false });
      }
    }
  } finally {
    await pool?.close();
  }
  const selected = options.streams && new Set(options.streams);
  const verified = new Set(streams);
  for (const [stream, heads] of attested) {
    if ((selected && !selected.has(stream)) || verified.has(stream)) continue;
    const largest = heads.at(-1);
    if (largest && largest.size > 0) {
      report({ stream, seq: 1, code: 'ATTESTED_STREAM_MISSING', severity: 'critical', message: `stream ${stream}: attestation ${largest.by} states ${largest.size} records, but the archive holds none of this stream: its records were removed` });
    }
  }
  if (sink.audit) {
    // With selected streams, only findings about them (or about the whole archive) count.
    try {
      const auditOptions = {
        ...(options.streams ? { streams: options.streams } : {}),
        ...(options.since ? { since: new Map([...options.since].map(([name, checkpoint]) => [name, checkpoint.size])) } : {}),
      };
      for await (const { severity, ...finding } of sink.audit(auditOptions)) {
        if (selected && finding.stream !== undefined && !selected.has(finding.stream)) continue;
        if (severity === 'warning') warn(finding);
        else report(finding);
      }
    } catch (error) {
      report({ code: 'UNREADABLE', message: `the archive's physical audit could not finish: ${describeError(error)}` });
    }
  }
  return { ok: failures.length === 0, streams: summaries, failures, warnings, ...totals, ...(attestations ? { attestations } : {}), ...(archiveLog ? { archiveLogs: archiveLog.summaries } : {}) };
}

async function loadCheckpoints(sink: Sink, stream: string, options: VerifyOptions, attested: ReadonlyMap<string, readonly AttestedHead[]>): Promise<CheckpointCheck | undefined> {
  if (!options.verifiers) return undefined;
  const since = options.since?.get(stream);
  const heads = attested.get(stream);
  return CheckpointCheck.load(stream, sink, {
    ...(heads ? { attested: heads } : {}),
    verifiers: options.verifiers,
    ...(since ? { since } : {}),
    ...(options.extraCheckpoints ? { extraCheckpoints: options.extraCheckpoints } : {}),
    ...(options.tsaCertificates ? { tsaCertificates: options.tsaCertificates } : {}),
    ...(options.witnesses?.length ? { witnesses: options.witnesses, ...(options.quorum === undefined ? {} : { quorum: options.quorum }) } : {}),
    ...(options.archiveLogIncluded ? { archiveLogIncluded: options.archiveLogIncluded.get(stream) ?? new Set<number>() } : {}),
  });
}

/** Reports a blob problem of record `seq`, if any; true when the blob is sound. */
async function checkRecordBlob(stream: string, seq: number, field: string, ref: BlobRef, context: Context): Promise<boolean> {
  const state = await context.checkBlob(ref.sha256);
  if (!state.ok) {
    context.report({ stream, seq, code: state.code, message: `stream ${stream} seq ${seq}: blob ${ref.sha256} (${field}) ${state.detail}` });
    return false;
  }
  if (state.size !== ref.size) {
    context.report({ stream, seq, code: 'BLOB_SIZE_MISMATCH', message: `stream ${stream} seq ${seq}: blob ${ref.sha256} (${field}) is ${state.size} bytes, record says ${ref.size}` });
    return false;
  }
  return true;
}

async function verifyStream(sink: Sink, stream: string, context: Context): Promise<StreamSummary> {
  const { options } = context;
  const pruned = await sink.pruned?.(stream);
  if (pruned) return verifyStreamSequential(sink, stream, context, pruned);
  if (sink.readSegments && (options.workers ?? 2) > 1 && !options.since?.has(stream)) {
    const checkpoints = await loadCheckpoints(sink, stream, options, context.attested);
    const blobSound = async (sha256: string, size: number): Promise<boolean> => {
      const state = await context.checkBlob(sha256);
      return state.ok && state.size === size;
    };
    const outcome = await verifyStreamParallel(sink, stream, context.pool, checkpoints, blobSound, (seq) => options.onProgress?.({ stream, seq }));
    if (outcome) {
      let ok = true;
      for (const finding of outcome.findings) {
        if (finding.kind === 'duplicate-key') {
          // The workers send key fingerprints only: the key itself is read back to compare.
          const key = await recordKeyAt(sink, stream, finding.seq);
          if (key === undefined) {
            context.report({ stream, seq: finding.seq, code: 'UNREADABLE', message: `stream ${stream} seq ${finding.seq}: the record could not be read again to compare its idempotency key; verify again` });
            ok = false;
            continue;
          }
          const earlier = await confirmDuplicate(sink, stream, finding.candidates ?? [], key);
          if (earlier === undefined) continue; // only the fingerprints collided
          context.report({ stream, seq: finding.seq, code: 'DUPLICATE_KEY', message: `stream ${stream} seq ${finding.seq}: idempotency key already used by seq ${earlier}` });
          ok = false;
        } else if (!(await checkRecordBlob(stream, finding.seq, finding.field ?? '', { sha256: finding.sha256 ?? '', size: finding.size ?? 0 }, context))) {
          ok = false;
        }
      }
      options.onProgress?.({ stream, seq: outcome.head.seq });
      return { ...(await finishStream(stream, outcome.records, outcome.head, ok, true, checkpoints, context)), workers: outcome.workers };
    }
    // Verified again from the start on this thread, with a check of its own.
    checkpoints?.abandon();
  }
  return verifyStreamSequential(sink, stream, context);
}

async function finishStream(stream: string, records: number, head: StreamHead, ok: boolean, complete: boolean, checkpoints: CheckpointCheck | undefined, context: Context): Promise<StreamSummary> {
  if (!checkpoints) return { stream, records, head, ok };
  const result = await checkpoints.finish(head.seq, complete);
  for (const failure of result.failures) context.report(failure);
  for (const warning of result.warnings) context.warn(warning);
  return { stream, records, head, ok: ok && result.failures.length === 0, checkpoints: result.checkpoints };
}

async function verifyStreamSequential(sink: Sink, stream: string, context: Context, pruned?: StreamHead): Promise<StreamSummary> {
  const { report, options } = context;
  const checkpoints = await loadCheckpoints(sink, stream, options, context.attested);
  const keys = new KeyFingerprints();
  let head: StreamHead = { seq: 0, hash: ZERO_HASH };
  let records = 0;
  let ok = true;
  let complete = true;
  /** A prev mismatch found at `seq`: record seq-1 or seq itself was altered; the next record tells which. */
  let suspect: { seq: number; hash: string } | undefined;
  const chainFailure = (failure: Omit<VerificationFailure, 'stream'>): void => {
    report({ ...failure, stream });
    ok = false;
    complete = false;
  };

  // Incremental: resume the tree at the earlier audit's checkpoint, and the chain at its last
  // record — which must be the leaf that checkpoint signed (read from the stored tiles).
  let since = options.since?.get(stream);
  let fromSeq = 1;
  if (pruned && (!since || since.size < pruned.seq)) {
    // A spool pruned after forwarding: the chain continues from the pruned prefix's last hash,
    // the tree from the stored tiles (the next signed checkpoint checks them). The target —
    // the archive of record — still holds and verifies the pruned records.
    since = undefined;
    context.warn({ stream, seq: pruned.seq, code: 'PRUNED', message: `stream ${stream}: records 1–${pruned.seq} were pruned from this spool after every forward target held them; verify the target (e.g. offchannel verify s3://…) for them` });
    if (checkpoints && !(await checkpoints.resumeAfterPruned(pruned.seq))) {
      report({ stream, seq: pruned.seq, code: 'TILES_MISSING', severity: 'critical', message: `stream ${stream} seq ${pruned.seq}: the spool was pruned through seq ${pruned.seq} but the Merkle tiles that continue its tree are missing; the records after it cannot be checked against signed checkpoints` });
      return { stream, records: 0, head: pruned, ok: false, pruned: pruned.seq };
    }
    head = pruned;
    fromSeq = pruned.seq + 1;
  }
  const restored = since && checkpoints && since.size > 0 ? await checkpoints.resume(since) : undefined;
  if (since && restored) {
    const last = await readRecordAt(sink, stream, since.size);
    if (!last || (await restored.isLastLeaf(last)) !== true) {
      report({ stream, seq: since.size, code: 'SINCE_MISMATCH', severity: 'critical', message: `stream ${stream} seq ${since.size}: the record at the size verified by the earlier audit is ${last ? 'not the one its checkpoint signed' : 'missing'}: the stream was rewritten or truncated since` });
      return { stream, records: 0, head, ok: false };
    }
    head = { seq: since.size, hash: sha256Hex(last) };
    fromSeq = since.size + 1;
  }
  for await (const stored of sink.read(stream, { fromSeq })) {
    records++;
    let record: ArchiveRecord;
    let hash: string;
    try {
      ({ record, hash } = decodeRecord(stored.bytes));
    } catch (error) {
      const code = OffchannelError.isInstance(error) ? error.code : 'UNREADABLE';
      const why = error instanceof Error ? error.message : String(error);
      chainFailure({ seq: stored.seq, code, message: `stream ${stream} seq ${stored.seq}: stored bytes are not a valid record (${why})` });
      break;
    }
    if (suspect) {
      // The previous record's prev did not match. If this record's prev does not match the
      // suspect's hash either, the suspect itself was altered; otherwise its predecessor was.
      const altered = record.prev === suspect.hash ? suspect.seq - 1 : suspect.seq;
      chainFailure({ seq: altered, code: 'PREV_MISMATCH', message: `stream ${stream} seq ${altered}: record altered — its hash no longer matches the prev stored in the record after it` });
      suspect = undefined;
      break;
    }
    if (record.stream !== stream) {
      chainFailure({ seq: stored.seq, code: 'WRONG_STREAM', message: `stream ${stream} seq ${stored.seq}: record belongs to stream ${record.stream}` });
      break;
    }
    const expected = head.seq + 1;
    if (record.seq !== expected) {
      const message =
        record.seq > expected
          ? `stream ${stream} seq ${expected}: record missing or out of place — found seq ${record.seq} where seq ${expected} should be`
          : `stream ${stream} seq ${expected}: records out of order or repeated — found seq ${record.seq} where seq ${expected} should be`;
      chainFailure({ seq: expected, code: record.seq > expected ? 'SEQ_GAP' : 'SEQ_ORDER', message });
      break;
    }
    if (stored.seq !== record.seq) {
      chainFailure({ seq: record.seq, code: 'SEQ_POSITION', message: `stream ${stream} seq ${record.seq}: the record is stored where seq ${stored.seq} belongs (a segment was renamed or moved)` });
      break;
    }
    if (record.prev !== head.hash) {
      suspect = { seq: record.seq, hash };
      head = { seq: record.seq, hash };
      continue;
    }
    const candidates = keys.add(record.key, record.seq);
    const earlier = candidates && (await confirmDuplicate(sink, stream, candidates, record.key));
    if (earlier !== undefined) {
      report({ stream, seq: record.seq, code: 'DUPLICATE_KEY', message: `stream ${stream} seq ${record.seq}: idempotency key already used by seq ${earlier}` });
      ok = false;
    }
    for (const [field, ref] of blobRefs(record)) {
      if (!(await checkRecordBlob(stream, record.seq, field, ref, context))) ok = false;
    }
    checkpoints?.feed(stored.bytes, record.seq);
    head = { seq: record.seq, hash };
    if (record.seq % 1000 === 0) options.onProgress?.({ stream, seq: record.seq });
  }
  if (suspect) {
    const altered = suspect.seq - 1;
    chainFailure({
      seq: altered,
      code: 'PREV_MISMATCH',
      message: `stream ${stream} seq ${altered}: record altered — its hash does not match the prev stored in seq ${suspect.seq} (or seq ${suspect.seq}'s prev was altered)`,
    });
  }
  options.onProgress?.({ stream, seq: head.seq });
  const summary = await finishStream(stream, records, head, ok, complete, checkpoints, context);
  return pruned && fromSeq === pruned.seq + 1 ? { ...summary, pruned: pruned.seq } : summary;
}

/** Our own errors by message and code (their messages name files, streams and seqs only); others by code or name. */
/** The first of `candidates` (earlier seqs whose keys share a fingerprint with `key`) whose record really has `key`. */
async function confirmDuplicate(sink: Sink, stream: string, candidates: readonly number[], key: string): Promise<number | undefined> {
  for (const seq of candidates) {
    // (an earlier record that does not parse was reported when it was read)
    if ((await recordKeyAt(sink, stream, seq)) === key) return seq;
  }
  return undefined;
}

/** The idempotency key of the stored record `seq`, or `undefined` when it cannot be read or parsed. */
async function recordKeyAt(sink: Sink, stream: string, seq: number): Promise<string | undefined> {
  const bytes = await readRecordAt(sink, stream, seq);
  if (!bytes) return undefined;
  try {
    const key = (JSON.parse(Buffer.from(bytes).toString('utf8')) as { key?: unknown }).key;
    return typeof key === 'string' ? key : undefined;
  } catch {
    return undefined;
  }
}

function describeError(error: unknown): string {
  if (OffchannelError.isInstance(error)) return `${error.message} [${error.code}]`;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : String(error);
}

export { blobRefs } from './blob-refs.ts';
