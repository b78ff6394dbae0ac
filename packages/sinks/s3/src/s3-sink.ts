/**
 * The S3 Object Lock sink: every batch, blob, checkpoint and tile is one object, written once
 * with COMPLIANCE retention and integrity checksums, in a bucket that has versioning and Object
 * Lock enabled (the sink refuses any other bucket).
 *
 * Compare-and-append: a batch for `firstSeq` is the object `streams/<stream>/<firstSeq>.jsonl`.
 * It is written with `If-None-Match: *` (stores that enforce conditional writes, such as AWS S3,
 * refuse a second writer outright with 412), then the key's versions are listed: the append
 * succeeded only if the OLDEST version is ours. On stores that ignore `If-None-Match` (Ceph RGW
 * 16) a losing writer's object becomes a newer version of the same key, which every reader
 * ignores, and the loser gets `SINK_CONFLICT`. Of any number of writers appending at one seq,
 * exactly one succeeds; the chain never forks. docs/storage-format.md explains the reasoning.
 */
import { createHash } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import {
  type AppendBatch,
  type AttestationId,
  type AuditFinding,
  BlobMismatchError,
  type BlobInfo,
  type CheckpointFile,
  type CheckpointRange,
  ClosedError,
  InvalidBatchError,
  type Logger,
  ReadOnlySinkError,
  SINK_SPEC_VERSION,
  type Sink,
  SinkConflictError,
  type SinkGuarantees,
  SinkUnavailableError,
  type StoredRecord,
  type StreamHead,
  type TileId,
  assertAppendBatch,
  assertAttestationId,
  assertBlobName,
  assertCheckpointKey,
  checkpointRangeAfter,
  assertStreamName,
  assertTileKey,
  batchLines,
  blobNamesIn,
  isArchiveLogName,
  isHostId,
  isStreamName,
  knownBlobSha256,
  noopLogger,
  redactingLogger,
  sha256Hex,
} from '@offchannel/core';
import { type KeyVersions, ObjectStore, type Version } from './object-store.ts';
import { type ObjectClass, type RetentionOptions, RetentionPolicy } from './retention.ts';
import { type S3ClientOptions, createS3Client } from './s3-client.ts';
import { S3SinkError, isTransient, toSinkError } from './s3-errors.ts';
import { S3Layout, assertBucketName, normalizePrefix, padSeq, parseAttestationName, parseCheckpointName, parseS3Url } from './s3-layout.ts';
import { auditBucket } from './s3-audit.ts';
import { StreamObjects, countLines, splitLines } from './stream-objects.ts';
import { type LegalHoldTarget, applyLegalHold } from './legal-hold.ts';

export interface S3SinkOptions extends S3ClientOptions {
  /** `s3://bucket/prefix`; or give `bucket` (and `prefix`). */
  readonly url?: string;
  readonly bucket?: string;
  /** Key prefix for this archive (several archives can share a bucket). Default: none. */
  readonly prefix?: string;
  /** Open for reading only (auditors): every write rejects, and the bucket's lock settings are reported by `audit()` instead of refused. */
  readonly readOnly?: boolean;
  /** Object Lock retention per class of object. Default: 7 years for everything (see `retention.ts`). */
  readonly retention?: RetentionOptions;
  /** Put a legal hold on new objects: of these streams, or of everything this sink writes. */
  readonly legalHold?: { readonly streams?: readonly string[]; readonly all?: boolean };
  /** Diagnostics (no content is ever logged). */
  readonly logger?: Logger;
}

/** S3's limit for one PUT. */
const MAX_OBJECT_BYTES = 5 * 1024 ** 3;

const GUARANTEES: SinkGuarantees = { retention: 'compliance-lock', durability: 'remote', exclusiveWriter: 'conditional-write' };
const NEWLINE = 0x0a;
/** Most bytes `readSegments` joins into one chunk. */
const CHUNK_BYTES = 1024 * 1024;

/**
 * Opens the sink on a bucket. Throws `S3_NO_SUCH_BUCKET`, `S3_ACCESS_DENIED`,
 * `S3_OBJECT_LOCK_DISABLED` (versioning or Object Lock not enabled — the message says how to
 * fix it), `S3_CONFIG_INVALID` or `SINK_UNAVAILABLE` instead of opening a sink that could not
 * keep its promises.
 */
export async function openS3Sink(options: S3SinkOptions): Promise<S3Sink> {
  const location = options.url === undefined ? { bucket: options.bucket ?? '', prefix: normalizePrefix(options.prefix) } : parseS3Url(options.url);
  assertBucketName(location.bucket);
  for (const stream of options.legalHold?.streams ?? []) assertStreamName(stream);
  const retention = new RetentionPolicy(options.retention);
  const client = createS3Client(options);
  const sink = new S3Sink(client, location.bucket, location.prefix, retention, options);
  try {
    await sink.checkBucket();
  } catch (error) {
    client.destroy();
    throw error;
  }
  return sink;
}

export class S3Sink implements Sink {
  readonly specVersion = SINK_SPEC_VERSION;
  readonly kind = 's3';
  readonly guarantees = GUARANTEES;
  readonly readOnly: boolean;
  readonly bucket: string;
  readonly prefix: string;
  /** The SDK client (for adding middleware, e.g. request inspection in tests). */
  readonly client: S3Client;
  private readonly objects: ObjectStore;
  private readonly batches: StreamObjects;
  private readonly layout: S3Layout;
  private readonly retention: RetentionPolicy;
  private readonly logger: Logger;
  private readonly heldStreams: Set<string>;
  private readonly holdAll: boolean;
  /** Heads known to be current (set after our own successful appends); anything in doubt is re-read. */
  private readonly heads = new Map<string, StreamHead>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly blobPuts = new Map<string, Promise<{ readonly created: boolean }>>();
  /** Blobs this sink put a legal hold on (for appends to held streams). */
  private readonly heldBlobs = new Set<string>();
  private closed = false;

  /** @internal Use {@link openS3Sink}. */
  constructor(client: S3Client, bucket: string, prefix: string, retention: RetentionPolicy, options: S3SinkOptions) {
    this.client = client;
    this.bucket = bucket;
    this.prefix = prefix;
    this.objects = new ObjectStore(client, bucket);
    this.layout = new S3Layout(prefix);
    this.batches = new StreamObjects(this.objects, this.layout);
    this.retention = retention;
    this.readOnly = options.readOnly === true;
    this.logger = redactingLogger(options.logger ?? noopLogger).child({ component: 'sink-s3', bucket });
    this.heldStreams = new Set(options.legalHold?.streams ?? []);
    this.holdAll = options.legalHold?.all === true;
  }

  /** @internal Refuses a bucket without versioning and Object Lock (writers only). */
  async checkBucket(): Promise<void> {
    let settings;
    try {
      settings = await this.objects.bucketSettings();
    } catch (error) {
      throw toSinkError(error, 'open: read the bucket versioning', this.bucket);
    }
    if (this.readOnly) return;
    if (settings.lockError !== undefined) throw toSinkError(settings.lockError, 'open: read the Object Lock configuration', this.bucket);
    if (settings.versioning !== 'Enabled' || !settings.objectLock) {
      throw new S3SinkError(
        'S3_OBJECT_LOCK_DISABLED',
        `bucket "${this.bucket}" does not have ${settings.objectLock ? 'versioning' : 'Object Lock'} enabled, so stored records could be overwritten or deleted. Use a bucket created with Object Lock (aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket), or enable versioning and then Object Lock on this one (aws s3api put-bucket-versioning --versioning-configuration Status=Enabled; aws s3api put-object-lock-configuration --object-lock-configuration ObjectLockEnabled=Enabled). Then check it with: offchannel sink-check s3://${this.bucket}/`,
      );
    }
  }

  async head(stream: string): Promise<StreamHead> {
    this.assertOpen();
    assertStreamName(stream);
    const head = await this.batches.loadHead(stream);
    if (!this.readOnly) this.heads.set(stream, head);
    return head;
  }

  appendBatch(batch: AppendBatch): Promise<StreamHead> {
    return this.exclusive(batch?.stream, async () => {
      this.assertWritable();
      assertAppendBatch(batch);
      return this.append(batch);
    });
  }

  async *read(stream: string, options?: { readonly fromSeq?: number }): AsyncIterable<StoredRecord> {
    this.assertOpen();
    assertStreamName(stream);
    const from = options?.fromSeq ?? 1;
    const batches = await this.batches.listBatches(stream);
    const start = Math.max(0, batches.findLastIndex((batch) => batch.firstSeq <= from));
    for await (const { batch, bytes } of this.batches.fetchAll(batches.slice(start))) {
      let seq = batch.firstSeq;
      for (const line of splitLines(bytes)) {
        if (seq >= from) yield { seq, bytes: line };
        seq++;
      }
    }
  }

  async *readSegments(stream: string): AsyncIterable<{ readonly firstSeq: number; readonly bytes: Uint8Array }> {
    this.assertOpen();
    assertStreamName(stream);
    let chunk: { firstSeq: number; next: number; parts: Uint8Array[]; size: number } | undefined;
    const flush = () => {
      const out = chunk ? { firstSeq: chunk.firstSeq, bytes: chunk.parts.length === 1 ? (chunk.parts[0] as Uint8Array) : Buffer.concat(chunk.parts) } : undefined;
      chunk = undefined;
      return out;
    };
    for await (const { batch, bytes } of this.batches.fetchAll(await this.batches.listBatches(stream))) {
      const whole = bytes.length > 0 && bytes[bytes.length - 1] === NEWLINE;
      const lines = countLines(bytes);
      // Join contiguous whole batches into bigger chunks; anything odd goes alone (the verifier names it).
      if (chunk && (!whole || chunk.next !== batch.firstSeq || chunk.size + bytes.length > CHUNK_BYTES)) {
        const out = flush();
        if (out) yield out;
      }
      if (!chunk) chunk = { firstSeq: batch.firstSeq, next: batch.firstSeq, parts: [], size: 0 };
      chunk.parts.push(bytes);
      chunk.size += bytes.length;
      chunk.next = batch.firstSeq + lines;
      if (!whole) {
        const out = flush();
        if (out) yield out;
      }
    }
    const out = flush();
    if (out) yield out;
  }

  async streams(): Promise<readonly string[]> {
    this.assertOpen();
    const names = new Set<string>();
    for (const root of [this.layout.streamsPrefix, this.layout.checkpointsRoot, this.layout.tilesRoot]) {
      for (const name of await this.objects.children(root)) if (isStreamName(name)) names.add(name);
    }
    return [...names].sort();
  }

  async putBlob(sha256: string, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    this.assertWritable();
    assertBlobName(sha256);
    if (!(bytes instanceof Uint8Array)) throw new BlobMismatchError(sha256, 'bytes must be a Uint8Array');
    if (knownBlobSha256(bytes) !== sha256) {
      // Not the recorder's own hashed copy (hashed-blob.ts in core): copied, then hashed, because
      // the upload starts after a listing request and the caller may change its array meanwhile.
      bytes = new Uint8Array(bytes);
      if (sha256Hex(bytes) !== sha256) throw new BlobMismatchError(sha256, 'the bytes do not hash to this name; nothing was stored');
    }
    // The same blob stored twice at once through this sink (an attachment in two streams) is
    // uploaded once: on stores without conditional writes a second upload is a second version.
    const running = this.blobPuts.get(sha256);
    if (running) {
      await running;
      return { created: false };
    }
    const put = this.storeBlob(sha256, bytes);
    this.blobPuts.set(sha256, put);
    try {
      return await put;
    } finally {
      this.blobPuts.delete(sha256);
    }
  }

  private async storeBlob(sha256: string, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    const key = this.layout.blob(sha256);
    const mismatch = () => new BlobMismatchError(sha256, 'an object with other content is stored under this name — the archive is damaged; run offchannel verify');
    const result = await this.putOnce(key, bytes, 'blobs', undefined, this.holdAll, mismatch);
    // A blob stored earlier may be locked for less time than a record written now needs.
    if (!result.created) await this.extendRetention(key, result.version, this.retention.until('blobs'));
    return { created: result.created };
  }

  async getBlob(sha256: string): Promise<Uint8Array | undefined> {
    this.assertOpen();
    assertBlobName(sha256);
    return this.getOnce(this.layout.blob(sha256));
  }

  async statBlob(sha256: string): Promise<BlobInfo | undefined> {
    this.assertOpen();
    assertBlobName(sha256);
    const versions = await this.objects.versionsOf(this.layout.blob(sha256));
    return versions ? { sha256, size: versions.oldest.size } : undefined;
  }

  async putCheckpoint(stream: string, size: number, file: CheckpointFile, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    this.assertWritable();
    assertCheckpointKey(stream, size, file);
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new InvalidBatchError('checkpoint bytes must be a non-empty Uint8Array');
    const conflict = () => new SinkConflictError(stream, `a different ${file} checkpoint for size ${size} is already stored`);
    const { created } = await this.putOnce(this.layout.checkpoint(stream, size, file), bytes, 'checkpoints', stream, this.holds(stream), conflict);
    return { created };
  }

  async getCheckpoint(stream: string, size: number, file: CheckpointFile): Promise<Uint8Array | undefined> {
    this.assertOpen();
    assertCheckpointKey(stream, size, file);
    return this.getOnce(this.layout.checkpoint(stream, size, file));
  }

  async checkpoints(stream: string, range?: CheckpointRange): Promise<readonly number[]> {
    return (await this.checkpointFiles(stream, range)).filter((entry) => entry.file === 'note').map((entry) => entry.size);
  }

  /** With `range.after`, the listing starts after that size's keys: one request for recent ones. */
  async checkpointFiles(stream: string, range?: CheckpointRange): Promise<readonly { readonly size: number; readonly file: CheckpointFile }[]> {
    this.assertOpen();
    const after = checkpointRangeAfter(stream, range);
    const prefix = this.layout.checkpointsPrefix(stream);
    const files: { size: number; file: CheckpointFile }[] = [];
    // Keys are `<size:16>.<file>`: every key of a size ≤ after sorts before `<after:16>/`.
    const start = after > 0 ? { after: `${prefix}${padSeq(after)}/` } : {};
    for await (const entry of this.objects.keys(prefix, start)) {
      const parsed = parseCheckpointName(entry.key.slice(prefix.length));
      if (parsed && parsed.size > after) files.push(parsed);
    }
    return files.sort((a, b) => a.size - b.size || (a.file < b.file ? -1 : 1));
  }

  async putTile(stream: string, tile: TileId, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    this.assertWritable();
    assertTileKey(stream, tile, bytes);
    const conflict = () => new SinkConflictError(stream, `a different Merkle tile ${tile.level}/${tile.index} (width ${tile.width}) is already stored`);
    const { created } = await this.putOnce(this.layout.tile(stream, tile), bytes, 'tiles', stream, this.holds(stream), conflict);
    return { created };
  }

  async getTile(stream: string, tile: TileId): Promise<Uint8Array | undefined> {
    this.assertOpen();
    assertTileKey(stream, tile);
    return this.getOnce(this.layout.tile(stream, tile));
  }

  /** Host attestations: write-once objects under Object Lock, like checkpoints (see `Sink.putAttestation`). */
  async putAttestation(id: AttestationId, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    this.assertWritable();
    assertAttestationId(id);
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new InvalidBatchError('attestation bytes must be a non-empty Uint8Array');
    const conflict = () => new SinkConflictError(`attestations/${id.host}`, `a different attestation ${id.seq} is already stored`);
    const { created } = await this.putOnce(this.layout.attestation(id), bytes, 'checkpoints', undefined, this.holdAll, conflict);
    return { created };
  }

  async getAttestation(id: AttestationId): Promise<Uint8Array | undefined> {
    this.assertOpen();
    assertAttestationId(id);
    return this.getOnce(this.layout.attestation(id));
  }

  async archiveLogs(): Promise<readonly string[]> {
    this.assertOpen();
    return (await this.objects.children(this.layout.checkpointsRoot)).filter((name) => isArchiveLogName(name)).sort();
  }

  async attestationHosts(): Promise<readonly string[]> {
    this.assertOpen();
    return (await this.objects.children(this.layout.attestationsRoot)).filter((host) => isHostId(host)).sort();
  }

  async attestations(host: string, range?: { readonly fromDay?: string; readonly toDay?: string }): Promise<readonly AttestationId[]> {
    this.assertOpen();
    assertAttestationId({ host, day: '1970-01-01', seq: 1 });
    const prefix = `${this.layout.attestationsRoot}${host}/`;
    const ids: AttestationId[] = [];
    // Days sort as text: start the listing at the first day asked for instead of the host's first.
    const after = range?.fromDay === undefined ? undefined : `${prefix}${range.fromDay}`;
    for await (const entry of this.objects.keys(prefix, after === undefined ? {} : { after })) {
      const id = parseAttestationName(entry.key.slice(this.layout.attestationsRoot.length));
      if (!id || id.host !== host) continue;
      if (range?.toDay !== undefined && id.day > range.toDay) break;
      if (range?.fromDay !== undefined && id.day < range.fromDay) continue;
      ids.push(id);
    }
    return ids.sort((a, b) => (a.day < b.day ? -1 : a.day > b.day ? 1 : a.seq - b.seq));
  }

  /** Object Lock and layout checks of everything under the prefix (see `s3-audit.ts`). */
  audit(): AsyncIterable<AuditFinding> {
    this.assertOpen();
    return auditBucket(this.objects, this.layout);
  }

  /**
   * Puts a legal hold on (or lifts it from) every stored version of a stream — its batches,
   * checkpoints, tiles and the blobs its records name — or of the one batch holding `seq`.
   * A hold keeps objects even after their retention ends, until it is lifted. Each change is
   * logged as a locked JSON object under `legal-holds/`. Lifting a hold leaves held what
   * another hold in force still covers (`kept`): a stream held as a whole, a blob shared with
   * another held stream. With `on` for a whole stream, this sink also holds the stream's new
   * objects, and the blobs they name, from now on.
   */
  async setLegalHold(target: LegalHoldTarget, on: boolean, options: { readonly reason?: string } = {}): Promise<{ readonly objects: number; readonly kept: number }> {
    this.assertWritable();
    assertStreamName(target.stream);
    if (target.seq !== undefined && (!Number.isSafeInteger(target.seq) || target.seq < 1)) throw new InvalidBatchError('seq must be a positive integer');
    const result = await applyLegalHold({
      objects: this.objects,
      layout: this.layout,
      batchesOf: (stream) => this.batches.listBatches(stream),
      target,
      on,
      ...(options.reason === undefined ? {} : { reason: options.reason }),
      retainUntil: this.retention.until('checkpoints'),
    });
    if (target.seq === undefined) {
      if (on) this.heldStreams.add(target.stream);
      else this.heldStreams.delete(target.stream);
    }
    this.logger.info({ stream: target.stream, seq: target.seq, on, objects: result.objects }, 'legal hold changed');
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.queues.values(), ...this.blobPuts.values()]);
    this.client.destroy();
  }

  private async append(batch: AppendBatch): Promise<StreamHead> {
    const { stream, firstSeq, records } = batch;
    const continues = (head: StreamHead) => head.seq + 1 === firstSeq && head.hash === batch.prev;
    let head = this.heads.get(stream);
    if (!head || !continues(head)) {
      head = await this.batches.loadHead(stream);
      this.heads.set(stream, head);
    }
    if (!continues(head)) {
      throw new SinkConflictError(stream, `append at seq ${firstSeq} refused: the stream's head is seq ${head.seq}`, { expected: { seq: firstSeq - 1, hash: batch.prev }, actual: head });
    }
    const body = batchLines(batch);
    if (body.length > MAX_OBJECT_BYTES) throw new InvalidBatchError(`the batch is ${body.length} bytes; an S3 object holds at most 5 GiB — split it`);
    // Blobs the records name are held before the records exist, like the records themselves.
    if (this.holds(stream) && !this.holdAll) await this.holdBlobsOf(records);
    // Until this append settles, the head is whatever the store says.
    this.heads.delete(stream);
    const key = this.layout.batch(stream, firstSeq);
    const action = `append to ${stream} at seq ${firstSeq}`;
    const list = async (what: string): Promise<KeyVersions | undefined> => {
      try {
        return await this.objects.versionsOf(key);
      } catch (error) {
        if (!isTransient(error)) {
          const mapped = toSinkError(error, 'list its versions', this.bucket);
          const code = mapped.code === 'S3_ACCESS_DENIED' || mapped.code === 'S3_NO_SUCH_BUCKET' ? mapped.code : 'S3_REQUEST_FAILED';
          throw new S3SinkError(code, `${action}: ${what}, but listing its versions failed: ${mapped.message}`, { cause: error });
        }
        throw new SinkUnavailableError(`${action}: ${what}, but whether it won could not be checked (${(error as Error).message}); it is not acknowledged and may still appear — the stream's head is re-read before its next append`, { cause: error });
      }
    };
    let versionId: string | undefined;
    let stored: KeyVersions | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        versionId = (await this.objects.put(key, body, { retainUntil: this.retention.until('records', stream), legalHold: this.holds(stream), ifNoneMatch: true })).versionId;
        break;
      } catch (error) {
        const mapped = toSinkError(error, action, this.bucket);
        // A refusal (4xx) stored nothing. Anything else may or may not have stored it: find out.
        if (!isTransient(error)) throw mapped;
        stored = await list('the answer to the upload was lost');
        if (stored) break;
        // Not there (yet): send the same bytes again — if the first upload lands later, it is a
        // newer version of identical content. Give up only after a few tries.
        if (attempt >= 2) throw new SinkUnavailableError(`${action}: the store did not answer (${mapped.message}); the batch is not acknowledged and may still appear`, { cause: error });
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
      }
    }
    stored ??= await list('the batch was stored');
    if (!stored) throw new SinkUnavailableError(`${action}: the store acknowledged the batch but does not list it`);
    if (!(await this.batches.isOurs(stored.oldest, versionId, body))) {
      this.logger.warn({ stream, seq: firstSeq, versions: stored.versions.length }, 'append lost to another writer');
      throw new SinkConflictError(stream, `append at seq ${firstSeq} refused: another writer appended at that seq first`, { expected: { seq: firstSeq - 1, hash: batch.prev } });
    }
    const last = records[records.length - 1] as Uint8Array;
    const next = { seq: firstSeq + records.length - 1, hash: sha256Hex(last) };
    this.heads.set(stream, next);
    this.logger.debug({ stream, firstSeq, records: records.length, versionId: stored.oldest.versionId }, 'batch stored and locked');
    return next;
  }

  /**
   * Write-once: stores `bytes` under `key` unless an object is there; an existing object must
   * hold the same bytes (else `conflict()`). Resolves with the version that is the object.
   */
  private async putOnce(key: string, bytes: Uint8Array, kind: ObjectClass, stream: string | undefined, legalHold: boolean, conflict: () => Error): Promise<{ created: boolean; version: Version }> {
    const existing = await this.objects.versionsOf(key);
    if (existing) {
      // A blob is named by its SHA-256 (verification re-hashes it): a matching size and MD5 ETag
      // is enough to know it is there, without downloading it again.
      const known = kind === 'blobs' && existing.oldest.size === bytes.length && existing.oldest.etag === createHash('md5').update(bytes).digest('hex');
      if (!known && !(await this.batches.isOurs(existing.oldest, undefined, bytes))) throw conflict();
      return { created: false, version: existing.oldest };
    }
    let versionId: string | undefined;
    let failure: Error | undefined;
    try {
      versionId = (await this.objects.put(key, bytes, { retainUntil: this.retention.until(kind, stream), legalHold, ifNoneMatch: true })).versionId;
    } catch (error) {
      const mapped = toSinkError(error, `store ${key}`, this.bucket);
      if (!isTransient(error)) throw mapped;
      failure = mapped;
    }
    const stored = await this.objects.versionsOf(key);
    if (!stored) throw failure ?? new SinkUnavailableError(`store ${key}: the store acknowledged the object but does not list it`);
    if (versionId !== undefined && stored.oldest.versionId === versionId) return { created: true, version: stored.oldest };
    if (!(await this.batches.isOurs(stored.oldest, undefined, bytes))) throw conflict();
    return { created: false, version: stored.oldest };
  }

  private async getOnce(key: string): Promise<Uint8Array | undefined> {
    const versions = await this.objects.versionsOf(key);
    return versions ? this.objects.get(key, versions.oldest.versionId) : undefined;
  }

  private async extendRetention(key: string, version: Version, until: Date): Promise<void> {
    const lock = await this.objects.lockState(key, version.versionId);
    if (lock.mode === 'COMPLIANCE' && lock.retainUntil !== undefined && lock.retainUntil >= until) return;
    await this.objects.extendRetention(key, version.versionId, until);
    this.logger.info({ key }, 'retention of an existing object extended for a new reference');
  }

  /** Puts the legal hold on every version of every blob `records` name (for held streams). */
  private async holdBlobsOf(records: readonly Uint8Array[]): Promise<void> {
    const names = new Set<string>();
    for (const bytes of records) for (const sha256 of blobNamesIn(bytes)) if (!this.heldBlobs.has(sha256)) names.add(sha256);
    for (const sha256 of names) {
      for (const version of (await this.objects.versionsOf(this.layout.blob(sha256)))?.versions ?? []) await this.objects.setLegalHold(version.key, version.versionId, true);
      if (this.heldBlobs.size >= 100_000) this.heldBlobs.clear();
      this.heldBlobs.add(sha256);
    }
  }

  private holds(stream: string): boolean {
    return this.holdAll || this.heldStreams.has(stream);
  }

  /** Runs `task` after every earlier task of `stream` on this sink settled. */
  private exclusive<T>(stream: string, task: () => Promise<T>): Promise<T> {
    const key = typeof stream === 'string' ? stream : '';
    const previous = this.queues.get(key) ?? Promise.resolve();
    const run = previous.then(task, task);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(key, settled);
    void settled.then(() => {
      if (this.queues.get(key) === settled) this.queues.delete(key);
    });
    return run;
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('the S3 sink');
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.readOnly) throw new ReadOnlySinkError('S3');
  }
}
