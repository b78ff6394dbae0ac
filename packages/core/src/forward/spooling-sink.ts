/**
 * Internal: the spool as the recorder's sink. Every call goes to the spool unchanged; after a
 * durable append or checkpoint, `changed(stream, change)` is called so the forwarder copies it at
 * once instead of at its next poll — and, for a checkpoint file, without listing the spool's.
 *
 * A spool that prunes: without `archive`, its `pruned` head is passed through, so readers take
 * their documented partial path (the recorder indexes keys from after the prefix). With
 * `archive` (the forwarder's first target), `read` continues into it for the pruned prefix
 * (`pruned-read-through.ts`) and the sink offers no `pruned`: every seq is readable, so the
 * recorder rebuilds a lost key index completely and the deliverer its receipt keys, on their
 * normal path. Their Merkle state still comes from the spool's tiles (pruning keeps every tile
 * and the newest checkpoint's record); when those cannot be used, the read from seq 1 rebuilds
 * it from the same records. `readSegments` is not offered then either (the spool's starts after
 * its prefix); readers fall back to `read`. `getBlob` likewise continues into the archive for a
 * blob the spool pruned (a receipt's seq list in a pruned record's `raw`), its bytes checked
 * against its name. `statBlob` stays the spool's: the recorder asks it whether the spool holds
 * a blob a capture names, and only the spool's answer may let it skip storing the blob.
 */
import { BlobMismatchError } from '../errors/sink-errors.ts';
import { sha256Hex } from '../hash/sha256.ts';
import type { CheckpointFile, CheckpointRange, Sink } from '../sink/sink.ts';
import { type ArchiveOfRecord, prunedReadThrough } from './pruned-read-through.ts';

/** What was stored: records up to `seq`, or one checkpoint file. */
export type SpoolChange = { readonly seq: number } | { readonly size: number; readonly file: CheckpointFile };

export function spoolingSink(spool: Sink, changed: (stream: string, change: SpoolChange) => void, archive?: ArchiveOfRecord): Sink {
  const readThrough = archive && spool.pruned ? prunedReadThrough(spool, archive) : undefined;
  const sink: Sink = {
    specVersion: spool.specVersion,
    kind: spool.kind,
    guarantees: spool.guarantees,
    readOnly: spool.readOnly,
    head: (stream) => spool.head(stream),
    appendBatch: async (batch) => {
      const head = await spool.appendBatch(batch);
      changed(batch.stream, { seq: head.seq });
      return head;
    },
    read: readThrough ?? ((stream, options) => spool.read(stream, options)),
    streams: () => spool.streams(),
    putBlob: (sha256, bytes) => spool.putBlob(sha256, bytes),
    getBlob: readThrough && archive ? (sha256) => blobThrough(spool, archive, sha256) : (sha256) => spool.getBlob(sha256),
    statBlob: (sha256) => spool.statBlob(sha256),
    putCheckpoint: async (stream, size, file, bytes) => {
      const result = await spool.putCheckpoint(stream, size, file, bytes);
      changed(stream, { size, file });
      return result;
    },
    getCheckpoint: (stream, size, file) => spool.getCheckpoint(stream, size, file),
    checkpoints: (stream, range) => spool.checkpoints(stream, range),
    putTile: (stream, tile, bytes) => spool.putTile(stream, tile, bytes),
    getTile: (stream, tile) => spool.getTile(stream, tile),
    close: () => spool.close(),
  };
  return {
    ...sink,
    ...(spool.pruned && !readThrough ? { pruned: (stream: string) => (spool.pruned as NonNullable<Sink['pruned']>).call(spool, stream) } : {}),
    ...(spool.readSegments && !readThrough ? { readSegments: (stream: string) => (spool.readSegments as NonNullable<Sink['readSegments']>).call(spool, stream) } : {}),
    ...(spool.audit ? { audit: () => (spool.audit as NonNullable<Sink['audit']>).call(spool) } : {}),
    ...(spool.putAttestation && spool.getAttestation && spool.attestationHosts && spool.attestations
      ? {
          putAttestation: spool.putAttestation.bind(spool),
          getAttestation: spool.getAttestation.bind(spool),
          attestationHosts: spool.attestationHosts.bind(spool),
          attestations: spool.attestations.bind(spool),
        }
      : {}),
    ...(spool.checkpointFiles ? { checkpointFiles: (stream: string, range?: CheckpointRange) => (spool.checkpointFiles as NonNullable<Sink['checkpointFiles']>).call(spool, stream, range) } : {}),
  };
}

/** The blob from the spool, else from the archive of record (pruned from the spool), checked. */
async function blobThrough(spool: Sink, archive: ArchiveOfRecord, sha256: string): Promise<Uint8Array | undefined> {
  const held = await spool.getBlob(sha256);
  if (held) return held;
  const bytes = await archive.sink.getBlob(sha256);
  // The sink contract does not promise that a blob read back hashes to its name: checked here.
  if (bytes && sha256Hex(bytes) !== sha256) throw new BlobMismatchError(sha256, `the archive of record ${archive.name} returned bytes that hash differently; run offchannel verify on it`);
  return bytes;
}
