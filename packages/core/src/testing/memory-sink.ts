/**
 * An in-memory {@link Sink} for tests of connectors and tools. Durability `volatile`: the
 * recorder refuses it unless `allowVolatileSink` is set. It passes the conformance suite,
 * which keeps the suite itself honest.
 */
import { BlobMismatchError, ClosedError, InvalidBatchError, ReadOnlySinkError, SinkConflictError } from '../errors/sink-errors.ts';
import { ZERO_HASH, sha256Hex } from '../hash/sha256.ts';
import { assertStreamName } from '../record/stream-name.ts';
import { isArchiveLogName } from '../sink/log-name.ts';
import { type TileId, tilePath } from '../merkle/tiles.ts';
import type { AttestationId } from '../attest/attestation.ts';
import { assertAppendBatch, assertAttestationId, assertBlobName, assertCheckpointKey, assertTileKey, checkpointRangeAfter } from '../sink/check-inputs.ts';
import {
  type AppendBatch,
  type BlobInfo,
  type CheckpointFile,
  type CheckpointRange,
  SINK_SPEC_VERSION,
  type Sink,
  type SinkGuarantees,
  type StoredRecord,
  type StreamHead,
} from '../sink/sink.ts';

/** The storage behind memory sinks; share one between sinks to simulate reopen and several writers. */
export class MemoryStorage {
  readonly streams = new Map<string, { records: Uint8Array[]; head: StreamHead }>();
  readonly blobs = new Map<string, Uint8Array>();
  readonly checkpoints = new Map<string, Uint8Array>();
  readonly tiles = new Map<string, Uint8Array>();
  /** Attestation notes by `<host>/<day>/<seq:16>`. */
  readonly attestations = new Map<string, Uint8Array>();
}

class MemorySink implements Sink {
  readonly specVersion = SINK_SPEC_VERSION;
  readonly kind = 'memory';
  readonly guarantees: SinkGuarantees = { retention: 'none', durability: 'volatile', exclusiveWriter: 'process' };
  readonly readOnly: boolean;
  private readonly storage: MemoryStorage;
  private closed = false;

  constructor(storage: MemoryStorage, readOnly: boolean) {
    this.storage = storage;
    this.readOnly = readOnly;
  }

  async head(stream: string): Promise<StreamHead> {
    await this.ready();
    assertStreamName(stream);
    return this.storage.streams.get(stream)?.head ?? { seq: 0, hash: ZERO_HASH };
  }

  async appendBatch(batch: AppendBatch): Promise<StreamHead> {
    await this.writable();
    assertAppendBatch(batch);
    // Compare and append in one synchronous step: no other append can interleave.
    const entry = this.storage.streams.get(batch.stream) ?? { records: [], head: { seq: 0, hash: ZERO_HASH } };
    if (batch.firstSeq !== entry.head.seq + 1 || batch.prev !== entry.head.hash) {
      throw new SinkConflictError(batch.stream, `append at seq ${batch.firstSeq} refused: the stream's head is seq ${entry.head.seq}`, {
        expected: { seq: batch.firstSeq - 1, hash: batch.prev },
        actual: entry.head,
      });
    }
    const last = batch.records[batch.records.length - 1] as Uint8Array;
    entry.records.push(...batch.records.map((bytes) => Uint8Array.from(bytes)));
    entry.head = { seq: batch.firstSeq + batch.records.length - 1, hash: sha256Hex(last) };
    this.storage.streams.set(batch.stream, entry);
    return entry.head;
  }

  async *read(stream: string, options?: { readonly fromSeq?: number }): AsyncIterable<StoredRecord> {
    await this.ready();
    assertStreamName(stream);
    const records = [...(this.storage.streams.get(stream)?.records ?? [])];
    for (let index = Math.max(0, (options?.fromSeq ?? 1) - 1); index < records.length; index++) {
      yield { seq: index + 1, bytes: Uint8Array.from(records[index] as Uint8Array) };
    }
  }

  async streams(): Promise<readonly string[]> {
    await this.ready();
    const names = new Set(this.storage.streams.keys());
    for (const key of [...this.storage.checkpoints.keys(), ...this.storage.tiles.keys()]) names.add(key.slice(0, key.indexOf('/')));
    // An archive log's checkpoints and tiles are not a stream's (see sink/log-name.ts).
    return [...names].filter((name) => !isArchiveLogName(name)).sort();
  }

  async putBlob(sha256: string, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    const own = bytes instanceof Uint8Array ? Uint8Array.from(bytes) : bytes; // before any await: the caller may reuse its array
    await this.writable();
    assertBlobName(sha256);
    if (sha256Hex(own) !== sha256) throw new BlobMismatchError(sha256, 'bytes do not hash to this name; nothing was stored');
    if (this.storage.blobs.has(sha256)) return { created: false };
    this.storage.blobs.set(sha256, own);
    return { created: true };
  }

  async getBlob(sha256: string): Promise<Uint8Array | undefined> {
    await this.ready();
    assertBlobName(sha256);
    const bytes = this.storage.blobs.get(sha256);
    return bytes ? Uint8Array.from(bytes) : undefined;
  }

  async statBlob(sha256: string): Promise<BlobInfo | undefined> {
    await this.ready();
    assertBlobName(sha256);
    const bytes = this.storage.blobs.get(sha256);
    return bytes ? { sha256, size: bytes.length } : undefined;
  }

  async putAttestation(id: AttestationId, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    await this.writable();
    assertAttestationId(id);
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new InvalidBatchError('attestation bytes must be a non-empty Uint8Array');
    const key = attestationKey(id);
    const existing = this.storage.attestations.get(key);
    if (existing) {
      if (Buffer.from(existing).equals(bytes)) return { created: false };
      throw new SinkConflictError(`attestations/${id.host}`, `a different attestation ${id.seq} is already stored`);
    }
    this.storage.attestations.set(key, Uint8Array.from(bytes));
    return { created: true };
  }

  async getAttestation(id: AttestationId): Promise<Uint8Array | undefined> {
    await this.ready();
    assertAttestationId(id);
    const bytes = this.storage.attestations.get(attestationKey(id));
    return bytes ? Uint8Array.from(bytes) : undefined;
  }

  async archiveLogs(): Promise<readonly string[]> {
    await this.ready();
    const names = new Set([...this.storage.checkpoints.keys()].map((key) => key.slice(0, key.indexOf('/'))));
    return [...names].filter((name) => isArchiveLogName(name)).sort();
  }

  async attestationHosts(): Promise<readonly string[]> {
    await this.ready();
    return [...new Set([...this.storage.attestations.keys()].map((key) => key.slice(0, key.indexOf('/'))))].sort();
  }

  async attestations(host: string, range?: { readonly fromDay?: string; readonly toDay?: string }): Promise<readonly AttestationId[]> {
    await this.ready();
    assertAttestationId({ host, day: '1970-01-01', seq: 1 });
    return [...this.storage.attestations.keys()]
      .filter((key) => key.startsWith(`${host}/`))
      .sort()
      .map((key) => {
        const [, day = '', seq = ''] = key.split('/');
        return { host, day, seq: Number(seq) };
      })
      .filter((id) => (range?.fromDay === undefined || id.day >= range.fromDay) && (range?.toDay === undefined || id.day <= range.toDay));
  }

  async putCheckpoint(stream: string, size: number, file: CheckpointFile, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    await this.writable();
    assertCheckpointKey(stream, size, file);
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new InvalidBatchError('checkpoint bytes must be a non-empty Uint8Array');
    const key = `${stream}/${size}.${file}`;
    const existing = this.storage.checkpoints.get(key);
    if (existing) {
      if (Buffer.from(existing).equals(bytes)) return { created: false };
      throw new SinkConflictError(stream, `a different ${file} checkpoint for size ${size} is already stored`);
    }
    this.storage.checkpoints.set(key, Uint8Array.from(bytes));
    return { created: true };
  }

  async getCheckpoint(stream: string, size: number, file: CheckpointFile): Promise<Uint8Array | undefined> {
    await this.ready();
    assertCheckpointKey(stream, size, file);
    const bytes = this.storage.checkpoints.get(`${stream}/${size}.${file}`);
    return bytes ? Uint8Array.from(bytes) : undefined;
  }

  async checkpoints(stream: string, range?: CheckpointRange): Promise<readonly number[]> {
    return (await this.checkpointFiles(stream, range)).filter((entry) => entry.file === 'note').map((entry) => entry.size);
  }

  async checkpointFiles(stream: string, range?: CheckpointRange): Promise<readonly { readonly size: number; readonly file: CheckpointFile }[]> {
    await this.ready();
    const after = checkpointRangeAfter(stream, range);
    const prefix = `${stream}/`;
    return [...this.storage.checkpoints.keys()]
      .filter((key) => key.startsWith(prefix))
      .map((key) => {
        const [size, file] = key.slice(prefix.length).split('.') as [string, CheckpointFile];
        return { size: Number(size), file };
      })
      .filter((entry) => entry.size > after)
      .sort((a, b) => a.size - b.size || (a.file < b.file ? -1 : 1));
  }

  async putTile(stream: string, tile: TileId, bytes: Uint8Array): Promise<{ readonly created: boolean }> {
    await this.writable();
    assertTileKey(stream, tile, bytes);
    const key = `${stream}/${tilePath(tile)}`;
    const existing = this.storage.tiles.get(key);
    if (existing) {
      if (Buffer.from(existing).equals(bytes)) return { created: false };
      throw new SinkConflictError(stream, `a different tile ${tilePath(tile)} is already stored`);
    }
    this.storage.tiles.set(key, Uint8Array.from(bytes));
    return { created: true };
  }

  async getTile(stream: string, tile: TileId): Promise<Uint8Array | undefined> {
    await this.ready();
    assertTileKey(stream, tile);
    const bytes = this.storage.tiles.get(`${stream}/${tilePath(tile)}`);
    return bytes ? Uint8Array.from(bytes) : undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.resolve();
  }

  private async ready(): Promise<void> {
    await Promise.resolve();
    if (this.closed) throw new ClosedError('memory sink');
  }

  private async writable(): Promise<void> {
    await this.ready();
    if (this.readOnly) throw new ReadOnlySinkError('memory');
  }
}

/** A sink over `storage` (a fresh one by default). */
export function createMemorySink(storage: MemoryStorage = new MemoryStorage(), options?: { readonly readOnly?: boolean }): Sink {
  return new MemorySink(storage, options?.readOnly ?? false);
}

function attestationKey(id: AttestationId): string {
  return `${id.host}/${id.day}/${String(id.seq).padStart(16, '0')}`;
}
