/**
 * Internal: legal holds. A hold is a per-version flag in S3 Object Lock: a held version cannot be
 * deleted even after its retention ends, until the hold is lifted. Holding a stream holds every
 * version of its batches, checkpoints and tiles and of every blob its records name; holding a
 * record holds the batch that contains it and the blobs that record names. Every change is
 * itself logged, as a locked JSON object under `legal-holds/` (who changed holds is an
 * administrative action an examiner may ask about).
 */
import { randomBytes } from 'node:crypto';
import { type ArchiveRecord, blobRefs, canonicalBytes } from '@offchannel/core';
import type { ObjectStore, Version } from './object-store.ts';
import { S3SinkError, toSinkError } from './s3-errors.ts';
import type { S3Layout } from './s3-layout.ts';

/** A whole stream, or the record `seq` of it. */
export interface LegalHoldTarget {
  readonly stream: string;
  readonly seq?: number;
}

const decoder = new TextDecoder();

export interface ApplyLegalHold {
  readonly objects: ObjectStore;
  readonly layout: S3Layout;
  /** The stream's batch objects, in seq order. */
  readonly batches: readonly { readonly firstSeq: number; readonly version: Version }[];
  readonly target: LegalHoldTarget;
  readonly on: boolean;
  readonly reason?: string;
  /** Retention of the log entry. */
  readonly retainUntil: Date;
}

export async function applyLegalHold(request: ApplyLegalHold): Promise<{ readonly objects: number }> {
  const { objects, layout, target, on } = request;
  const versions: Version[] = [];
  const blobs = new Set<string>();
  const selected = target.seq === undefined ? request.batches : [await batchOf(request, target.seq)];
  for (const batch of selected) {
    versions.push(...((await objects.versionsOf(batch.version.key))?.versions ?? [batch.version]));
    const bytes = await objects.get(batch.version.key, batch.version.versionId);
    const lines = decoder.decode(bytes ?? new Uint8Array(0)).split('\n');
    lines.forEach((line, index) => {
      if (line === '' || (target.seq !== undefined && batch.firstSeq + index !== target.seq)) return;
      try {
        for (const [, ref] of blobRefs(JSON.parse(line) as ArchiveRecord)) blobs.add(ref.sha256);
      } catch {
        // a damaged line names no blob; verify reports it
      }
    });
  }
  for (const sha256 of blobs) versions.push(...((await objects.versionsOf(layout.blob(sha256)))?.versions ?? []));
  if (target.seq === undefined) {
    for (const prefix of [layout.checkpointsPrefix(target.stream), layout.tilesPrefix(target.stream)]) {
      for await (const entry of objects.keys(prefix)) versions.push(...entry.versions);
    }
  }
  const queue = [...versions];
  await Promise.all(
    Array.from({ length: Math.min(8, queue.length) }, async () => {
      for (let version = queue.shift(); version; version = queue.shift()) await objects.setLegalHold(version.key, version.versionId, on);
    }),
  );
  const at = new Date();
  const entry = {
    format: 'offchannel-legal-hold',
    v: 1,
    at: at.toISOString(),
    stream: target.stream,
    ...(target.seq === undefined ? {} : { seq: target.seq }),
    status: on ? 'ON' : 'OFF',
    ...(request.reason === undefined ? {} : { reason: request.reason.slice(0, 1000) }),
    objects: versions.length,
  };
  const name = `${at.toISOString().replaceAll(':', '').replace('.', '-')}-${randomBytes(6).toString('hex')}.json`;
  try {
    await objects.put(`${layout.holdsPrefix}${name}`, canonicalBytes(entry), { retainUntil: request.retainUntil, ifNoneMatch: true });
  } catch (error) {
    throw toSinkError(error, `log the legal hold change (the holds themselves were ${on ? 'set' : 'lifted'})`, objects.bucket);
  }
  return { objects: versions.length };
}

/** The batch holding record `seq`. */
async function batchOf(request: ApplyLegalHold, seq: number): Promise<{ readonly firstSeq: number; readonly version: Version }> {
  const index = request.batches.findLastIndex((batch) => batch.firstSeq <= seq);
  const batch = request.batches[index];
  const next = request.batches[index + 1];
  if (batch && next) return batch;
  if (batch) {
    const bytes = await request.objects.get(batch.version.key, batch.version.versionId);
    const count = decoder.decode(bytes ?? new Uint8Array(0)).split('\n').length - 1;
    if (seq < batch.firstSeq + count) return batch;
  }
  throw new S3SinkError('S3_NO_SUCH_RECORD', `stream ${request.target.stream} has no record ${seq}; nothing was held.`);
}
