/**
 * The Sink contract: where records, blobs and checkpoints are stored.
 *
 * A sink is deliberately dumb and strict. It does not interpret records; it stores their
 * canonical bytes in order, never overwrites anything, and refuses any append that does not
 * continue exactly from the head it holds. Everything that makes the archive trustworthy
 * rests on the invariants below, so every sink — ours and vendors' — must pass the
 * conformance suite in `@offchannel/core/testing`:
 *
 * ```ts
 * import { it } from 'vitest';
 * import { runSinkConformance } from '@offchannel/core/testing';
 * runSinkConformance({ test: it, createFixture: async () => myFixture() });
 * ```
 *
 * Terms: a *stream* is `<channel>:<account>` (validated by `assertStreamName`); a stream's
 * records are numbered `seq` 1, 2, 3…; its *head* is the last record's seq and the SHA-256 of
 * that record's bytes (seq 0 and 64 zeros for an empty stream).
 */

import type { AttestationId } from '../attest/attestation.ts';
import type { TileId } from '../merkle/tiles.ts';

/** Version of this contract. A sink declares it; the recorder refuses any other value. */
export const SINK_SPEC_VERSION = 1;

/** The last record of a stream: its seq and the SHA-256 (hex) of its stored bytes. */
export interface StreamHead {
  /** 0 for an empty stream. */
  readonly seq: number;
  /** 64 zeros for an empty stream. */
  readonly hash: string;
}

/**
 * Records to append to one stream, in order: `records[i]` has seq `firstSeq + i`.
 */
export interface AppendBatch {
  readonly stream: string;
  /** MUST equal the sink's `head.seq + 1`. */
  readonly firstSeq: number;
  /** MUST equal the sink's `head.hash`: the hash the first record's `prev` field carries. */
  readonly prev: string;
  /**
   * Canonical record bytes, without line terminators. Each MUST be 1–65,535 bytes and MUST NOT
   * contain the byte 0x0A (canonical JSON never does), because stores frame records as lines.
   * Each MUST be a JSON object whose `seq` is its position and whose `prev` is the SHA-256 of
   * the record before it (the first one's `prev` is `batch.prev`). Sinks do not re-check this
   * on every append (it would double the hashing cost); a sink MAY rely on it when it
   * recovers after a crash, and the verifier always checks it.
   */
  readonly records: readonly Uint8Array[];
  /**
   * Optional: the same records framed as stores keep them — each record followed by 0x0A, one
   * after the other — in one buffer, so that a sink storing line-framed records (segment files,
   * batch objects) writes it as it is instead of copying every record again (`batchLines`).
   * When present, every `records[i]` MUST be a view of `lines` at its place in it, so the two
   * forms cannot differ: `assertAppendBatch` checks this from the views' offsets (never reading
   * the bytes twice) and rejects anything else with `InvalidBatchError`. A sink that does not
   * know it ignores it — `records` always holds the whole batch. The recorder sets it; batches
   * built from `read()` (the forwarder's) do not. A sink that keeps bytes in memory after the
   * append resolves copies them (the caller owns the buffer).
   */
  readonly lines?: Uint8Array;
}

/** One stored record as read back. */
export interface StoredRecord {
  /**
   * The seq the sink's own layout assigns to these bytes (e.g. segment start + line index).
   * The verifier compares it with the seq inside the record; they differ only if stored
   * data was damaged.
   */
  readonly seq: number;
  /** Exactly the bytes that were appended. */
  readonly bytes: Uint8Array;
}

/** Size and hash of a stored blob. */
export interface BlobInfo {
  readonly sha256: string;
  readonly size: number;
}

/** Kinds of files stored beside a checkpoint. */
export type CheckpointFile =
  /** C2SP signed note (tlog-checkpoint). */
  | 'note'
  /** RFC 3161 timestamp token over the note. */
  | 'rfc3161'
  /**
   * The note again with one witness's cosignature added (c2sp.org/tlog-cosignature), named
   * by the witness key's id (8 hex digits). Write-once like the others: the note file itself is
   * never rewritten, and each witness's answer is its own object.
   */
  | `cosigned-${string}`;

/**
 * Which checkpoint sizes to list (`Sink.checkpoints`, `Sink.checkpointFiles`). `after`: only
 * sizes greater than it — a non-negative safe integer (0, or no range: every size).
 */
export interface CheckpointRange {
  readonly after?: number;
}

/** A problem found by a sink's own physical checks (see {@link Sink.audit}). */
export interface AuditFinding {
  readonly code: string;
  readonly message: string;
  readonly stream?: string;
  readonly seq?: number;
  /**
   * `warning` for findings that do not put any record in doubt (e.g. a superseded object
   * version left by a lost append race); verification reports them without failing.
   * Default: the finding fails verification.
   */
  readonly severity?: 'warning';
}

/**
 * What a sink promises. The recorder checks these when it mounts a sink and refuses sinks
 * that promise less than it was configured to require.
 */
export interface SinkGuarantees {
  /**
   * How acknowledged bytes are protected from being rewritten or deleted:
   * - `compliance-lock` — by the storage system itself, even against its administrators,
   *   until a retention date (S3 Object Lock in COMPLIANCE mode): WORM in the SEC 17a-4(f) sense;
   * - `append-only` — by the sink's own discipline and file permissions; tampering is
   *   *detectable* (hash chain, seals, checkpoints) but an administrator can still do it;
   * - `none` — nothing (in-memory test sinks).
   */
  readonly retention: 'compliance-lock' | 'append-only' | 'none';
  /**
   * What a resolved write means:
   * - `fsync` — on stable local storage (data and metadata synced);
   * - `remote` — acknowledged by a remote store that promises durability (e.g. S3 PUT 200);
   * - `volatile` — in memory only. The recorder refuses volatile sinks unless told otherwise.
   */
  readonly durability: 'fsync' | 'remote' | 'volatile';
  /**
   * How two writers on one stream are prevented from both succeeding:
   * - `lock` — an OS-level lock held by the writing process (one host);
   * - `conditional-write` — the store's atomic create-if-absent (works across hosts);
   * - `process` — only within one process (in-memory sinks).
   */
  readonly exclusiveWriter: 'lock' | 'conditional-write' | 'process';
}

/**
 * A store for streams of records, content-addressed blobs and checkpoints.
 *
 * Invariants (the conformance suite checks each one):
 * - Nothing is ever overwritten or deleted through this interface.
 * - Every promise resolves only after the data is durable to the degree
 *   `guarantees.durability` states; a rejected write has written nothing that a later read
 *   returns as a record.
 * - Every method that takes a stream name MUST reject an invalid one (see
 *   `assertStreamName`) with `InvalidStreamNameError` before touching storage — stream names
 *   become paths and object keys, so this is the path-traversal guard.
 * - After {@link Sink.close}, every method rejects with `ClosedError`; `close()` itself may be
 *   called any number of times.
 */
export interface Sink {
  /** MUST be {@link SINK_SPEC_VERSION}. */
  readonly specVersion: typeof SINK_SPEC_VERSION;
  /** Short name of the implementation, e.g. `fs`, `s3`, `memory`. */
  readonly kind: string;
  readonly guarantees: SinkGuarantees;
  /** True when opened for reading only: every write rejects. */
  readonly readOnly: boolean;

  /**
   * The stream's head: `{seq: 0, hash: 64 zeros}` when the stream has no records.
   * A writable sink MAY take exclusive ownership of the stream here (lock it, discard a torn
   * never-acknowledged tail) and MUST reject with `SinkConflictError` if another writer owns it.
   */
  head(stream: string): Promise<StreamHead>;

  /**
   * Compare-and-append. MUST reject with `SinkConflictError`, writing nothing, unless
   * `batch.firstSeq === head.seq + 1` and `batch.prev === head.hash` at the moment of the
   * write — so of any number of concurrent appends based on the same head, from this or any
   * other process or host, exactly one succeeds. MUST reject a malformed batch with
   * `InvalidBatchError`. MUST be durable before it resolves. Resolves with the new head,
   * whose `hash` is the SHA-256 of the last record's bytes.
   *
   * A remote sink that cannot learn whether a write it sent was stored (the connection broke
   * after sending) MUST settle that before answering if it can, and otherwise reject with
   * `SinkUnavailableError`: the batch is then *not acknowledged* but may still appear, whole,
   * at that seq — a later `head()` tells. (The recorder re-reads the head and indexes the keys
   * it finds, so a redelivered capture is then reported as a duplicate, never recorded twice.)
   */
  appendBatch(batch: AppendBatch): Promise<StreamHead>;

  /**
   * The stream's records in seq order, starting at `fromSeq` (default 1), exactly as appended.
   * Records of an append still in progress are never returned partially; a writable sink MUST
   * NOT return records of its own appends that have not resolved (they may yet be rolled back —
   * the forwarder copies what this returns). Damaged stored data is returned as stored (the
   * verifier reports it) rather than skipped.
   */
  read(stream: string, options?: { readonly fromSeq?: number }): AsyncIterable<StoredRecord>;

  /**
   * Optional bulk read for fast verification: the stream's records as large chunks (e.g. whole
   * segments), each chunk whole records each followed by a newline (0x0A), the first with seq
   * `firstSeq`. Damaged data is returned as stored. Sinks without it are read with `read()`.
   * A chunk's bytes may be a view of a buffer the sink uses again for the next chunk (so that
   * memory stays small): they are valid only until the iterator is advanced; copy to keep them.
   */
  readSegments?(stream: string): AsyncIterable<{ readonly firstSeq: number; readonly bytes: Uint8Array }>;

  /**
   * Optional, for spools that prune (see `PrunableSpool`): the head at the end of the pruned
   * prefix — its seq is the last record pruned, its hash that record's SHA-256, the `prev` of
   * the first record still held — or `undefined` when nothing was pruned. `read` from a seq at
   * or below it rejects with `RecordsPrunedError`; `readSegments` starts after it. Sinks of
   * record (S3, an archive directory) never prune and need not implement it.
   */
  pruned?(stream: string): Promise<StreamHead | undefined>;

  /**
   * Names of all streams that hold any data — records, checkpoints or tiles — sorted. A stream
   * whose records are gone but whose checkpoints remain MUST be listed: verification reads the
   * list, and must see the stream to report that its signed records were removed.
   */
  streams(): Promise<readonly string[]>;

  /**
   * Stores a blob under its SHA-256. MUST reject with `BlobMismatchError` if `sha256` is not
   * 64 lowercase hex characters or is not the hash of `bytes`. Idempotent: storing the same
   * bytes again resolves with `{created: false}`. MUST be durable before it resolves.
   */
  putBlob(sha256: string, bytes: Uint8Array): Promise<{ readonly created: boolean }>;

  /** The blob's bytes, or `undefined` if absent. */
  getBlob(sha256: string): Promise<Uint8Array | undefined>;

  /** The blob's size, or `undefined` if absent. Cheaper than {@link Sink.getBlob}. */
  statBlob(sha256: string): Promise<BlobInfo | undefined>;

  /**
   * Stores a checkpoint file for `stream` at tree size `size` (write-once). Storing identical
   * bytes again resolves with `{created: false}`; different bytes MUST reject with
   * `SinkConflictError`.
   */
  putCheckpoint(stream: string, size: number, file: CheckpointFile, bytes: Uint8Array): Promise<{ readonly created: boolean }>;

  /**
   * Optional: names of the archive logs (`archive-log`, `archive-log.s<k>of<n>`; see
   * `sink/log-name.ts`) that have checkpoints, sorted. Their checkpoints and tiles are stored
   * through the checkpoint and tile methods like a stream's; `streams()` never lists them.
   */
  archiveLogs?(): Promise<readonly string[]>;

  /** A stored checkpoint file, or `undefined`. */
  getCheckpoint(stream: string, size: number, file: CheckpointFile): Promise<Uint8Array | undefined>;

  /**
   * Tree sizes that have a `note` checkpoint for `stream`, ascending. With `range.after`, only
   * sizes above it: a stream signs a checkpoint every minute or so for years, and callers that
   * run often (the forwarder, a recorder opening a stream) want only the recent ones. A sink
   * SHOULD make such a listing cost what it returns (S3: start the listing after the key of
   * `after`); one that cannot, or that predates the option and ignores it, still works: callers
   * drop what is at or below `after` themselves (`sink/checkpoint-range.ts`).
   */
  checkpoints(stream: string, range?: CheckpointRange): Promise<readonly number[]>;

  /**
   * Optional: every checkpoint file stored for `stream` (notes, timestamp tokens, cosigned
   * copies), by size then file; with `range.after`, only sizes above it (as `checkpoints`).
   * Lets the forwarder find tokens a target is missing without one read per size.
   */
  checkpointFiles?(stream: string, range?: CheckpointRange): Promise<readonly { readonly size: number; readonly file: CheckpointFile }[]>;

  /**
   * Stores a Merkle tile of `stream`'s log (derived data that makes proofs fast; the
   * verifier recomputes and compares it). Write-once: identical bytes again resolve with
   * `{created: false}`, different bytes MUST reject with `SinkConflictError`. MUST reject a tile
   * whose bytes are not `width × 32` long with `InvalidBatchError`.
   */
  putTile(stream: string, tile: TileId, bytes: Uint8Array): Promise<{ readonly created: boolean }>;

  /** A stored tile, or `undefined`. */
  getTile(stream: string, tile: TileId): Promise<Uint8Array | undefined>;

  /**
   * Optional (all four or none): host attestations, one signed note per capture host and
   * interval (see `attest/attestation.ts`), stored as `attestations/<host>/<day>/<seq>.note`.
   * Write-once like checkpoints: identical bytes again resolve with `{created: false}`,
   * different bytes MUST reject with `SinkConflictError`. MUST reject an invalid id (host, day,
   * seq; see `assertAttestationId`) with `InvalidBatchError` before touching storage. MUST be
   * durable before it resolves.
   */
  putAttestation?(id: AttestationId, bytes: Uint8Array): Promise<{ readonly created: boolean }>;

  /** A stored attestation note, or `undefined`. */
  getAttestation?(id: AttestationId): Promise<Uint8Array | undefined>;

  /** Host ids that have stored attestations, sorted. */
  attestationHosts?(): Promise<readonly string[]>;

  /** `host`'s stored attestations, by day then seq, limited to days in `fromDay`–`toDay` (inclusive). */
  attestations?(host: string, range?: { readonly fromDay?: string; readonly toDay?: string }): Promise<readonly AttestationId[]>;

  /**
   * Optional physical self-check (segment seals, file modes, object-lock settings) beyond
   * what the record chain shows. Yields one finding per problem; yields nothing when sound.
   * With `streams`, a sink may limit its checks to those streams and what is archive-wide
   * (verification keeps only findings for those streams or for no stream). With `since`
   * (incremental verification: stream → records an earlier audit verified), a sink may skip
   * re-checking what holds only those records (an fs sink: sealed segments that end at or
   * before them).
   */
  audit?(options?: { readonly streams?: readonly string[]; readonly since?: ReadonlyMap<string, number> }): AsyncIterable<AuditFinding>;

  /** Flushes nothing (every write is already durable), releases locks and handles. Idempotent. */
  close(): Promise<void>;
}
