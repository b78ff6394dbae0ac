/**
 * Internal: legal holds. A hold is a per-version flag in S3 Object Lock: a held version cannot be
 * deleted even after its retention ends, until the hold is lifted. Holding a stream holds every
 * version of its batches, checkpoints and tiles and of every blob its records name; holding a
 * record holds the batch that contains it and the blobs that record names.
 *
 * Every change is logged, as a locked JSON object under `legal-holds/` (who changed holds is an
 * administrative action an examiner may ask about), and the log is also what makes lifting safe:
 * the holds still in force are replayed from it, and a version one of them still needs (a
 * stream held as a whole, a blob shared with another held stream) keeps its hold.
 */
import { randomBytes } from 'node:crypto';
import { blobNamesIn, canonicalBytes } from '@offchannel/core';
import type { ObjectStore, Version } from './object-store.ts';
import { S3SinkError, toSinkError } from './s3-errors.ts';
import type { S3Layout } from './s3-layout.ts';
import { countLines, splitLines } from './stream-objects.ts';

/** A whole stream, or the record `seq` of it. */
export interface LegalHoldTarget {
  readonly stream: string;
  readonly seq?: number;
}

/** A stream's batch objects, in seq order. */
export type BatchList = readonly { readonly firstSeq: number; readonly version: Version }[];

export interface ApplyLegalHold {
  readonly objects: ObjectStore;
  readonly layout: S3Layout;
  readonly batchesOf: (stream: string) => Promise<BatchList>;
  readonly target: LegalHoldTarget;
  readonly on: boolean;
  readonly reason?: string;
  /** Retention of the log entry. */
  readonly retainUntil: Date;
}

const decoder = new TextDecoder();
const targetKey = (target: LegalHoldTarget) => `${target.stream}#${target.seq ?? '*'}`;
const versionKey = (version: Version) => `${version.key}\u0000${version.versionId}`;

/** Sets or lifts the hold; resolves with how many versions changed and how many other holds kept. */
export async function applyLegalHold(request: ApplyLegalHold): Promise<{ readonly objects: number; readonly kept: number }> {
  const { objects, layout, target, on } = request;
  let versions = await versionsHeldBy(request, target);
  let kept = 0;
  if (!on) {
    // What the holds still in force need stays held.
    const needed = new Set<string>();
    for (const other of await activeHolds(objects, layout)) {
      if (targetKey(other) === targetKey(target)) continue;
      for (const version of await versionsHeldBy(request, other, true)) needed.add(versionKey(version));
    }
    const before = versions.length;
    versions = versions.filter((version) => !needed.has(versionKey(version)));
    kept = before - versions.length;
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
    ...(kept > 0 ? { kept } : {}),
  };
  const name = `${at.toISOString().replaceAll(':', '').replace('.', '-')}-${randomBytes(6).toString('hex')}.json`;
  try {
    await objects.put(`${layout.holdsPrefix}${name}`, canonicalBytes(entry), { retainUntil: request.retainUntil, ifNoneMatch: true });
  } catch (error) {
    throw toSinkError(error, `log the legal hold change (the holds themselves were ${on ? 'set' : 'lifted'})`, objects.bucket);
  }
  return { objects: versions.length, kept };
}

/** The holds in force: the log replayed in time order (ON adds a target, OFF removes it). */
async function activeHolds(objects: ObjectStore, layout: S3Layout): Promise<LegalHoldTarget[]> {
  const entries: { at: string; name: string; target: LegalHoldTarget; on: boolean }[] = [];
  for await (const entry of objects.keys(layout.holdsPrefix)) {
    const bytes = await objects.get(entry.key, entry.oldest.versionId);
    try {
      const parsed = JSON.parse(decoder.decode(bytes ?? new Uint8Array(0))) as { at?: unknown; stream?: unknown; seq?: unknown; status?: unknown };
      if (typeof parsed.at !== 'string' || typeof parsed.stream !== 'string' || (parsed.status !== 'ON' && parsed.status !== 'OFF')) continue;
      entries.push({ at: parsed.at, name: entry.key, target: { stream: parsed.stream, ...(typeof parsed.seq === 'number' ? { seq: parsed.seq } : {}) }, on: parsed.status === 'ON' });
    } catch {
      // not a log entry: ignored (the audit reports keys that do not belong)
    }
  }
  entries.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.name < b.name ? -1 : 1));
  const active = new Map<string, LegalHoldTarget>();
  for (const entry of entries) {
    if (entry.on) active.set(targetKey(entry.target), entry.target);
    else active.delete(targetKey(entry.target));
  }
  return [...active.values()];
}

/** Every version a hold on `target` covers. With `lenient`, a record that no longer exists covers nothing. */
async function versionsHeldBy(request: ApplyLegalHold, target: LegalHoldTarget, lenient = false): Promise<Version[]> {
  const { objects, layout } = request;
  const batches = await request.batchesOf(target.stream);
  let selected: BatchList = batches;
  if (target.seq !== undefined) {
    const batch = await batchOf(objects, batches, target, lenient);
    selected = batch ? [batch] : [];
  }
  const versions: Version[] = [];
  const blobs = new Set<string>();
  for (const batch of selected) {
    versions.push(...((await objects.versionsOf(batch.version.key))?.versions ?? [batch.version]));
    const lines = splitLines((await objects.get(batch.version.key, batch.version.versionId)) ?? new Uint8Array(0));
    lines.forEach((line, index) => {
      if (target.seq === undefined || batch.firstSeq + index === target.seq) for (const sha256 of blobNamesIn(line)) blobs.add(sha256);
    });
  }
  for (const sha256 of blobs) versions.push(...((await objects.versionsOf(layout.blob(sha256)))?.versions ?? []));
  if (target.seq === undefined) {
    for (const prefix of [layout.checkpointsPrefix(target.stream), layout.tilesPrefix(target.stream)]) {
      for await (const entry of objects.keys(prefix)) versions.push(...entry.versions);
    }
  }
  return versions;
}

/** The batch holding record `target.seq`. */
async function batchOf(objects: ObjectStore, batches: BatchList, target: LegalHoldTarget, lenient: boolean): Promise<BatchList[number] | undefined> {
  const seq = target.seq as number;
  const index = batches.findLastIndex((batch) => batch.firstSeq <= seq);
  const batch = batches[index];
  if (batch && batches[index + 1]) return batch;
  if (batch) {
    const count = countLines((await objects.get(batch.version.key, batch.version.versionId)) ?? new Uint8Array(0));
    if (seq < batch.firstSeq + count) return batch;
  }
  if (lenient) return undefined;
  throw new S3SinkError('S3_NO_SUCH_RECORD', `stream ${target.stream} has no record ${seq}; nothing was held.`);
}
