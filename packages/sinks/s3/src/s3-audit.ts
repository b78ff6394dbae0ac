/**
 * Internal: the physical audit of an archive in a bucket — what the record chain cannot show
 * on its own. The bucket must have versioning and Object Lock enabled; every object's oldest
 * version (the one readers use) must be under COMPLIANCE retention; keys must follow the
 * layout. Extra versions (a writer that lost an append race on a store without conditional
 * writes, or an attempted overwrite) and delete markers (an attempted delete) are reported as
 * warnings: the locked oldest versions are intact. A timestamp token without its checkpoint
 * note means the note was removed.
 */
import { type AuditFinding, type CheckpointFile, isSha256Hex, isStreamName } from '@offchannel/core';
import type { ObjectStore, Version } from './object-store.ts';
import { PROBE_FOLDER } from './object-lock-probe.ts';
import { type S3Layout, parseAttestationName, parseBatchName, parseCheckpointName } from './s3-layout.ts';

type Group = { readonly key: string; readonly versions: readonly Version[]; readonly deleteMarkers: number };

export async function* auditBucket(objects: ObjectStore, layout: S3Layout): AsyncIterable<AuditFinding> {
  yield* auditSettings(objects);
  const notes = new Set<string>();
  const tokens = new Map<string, { stream: string; size: number }>();
  let pending: Promise<AuditFinding[]>[] = [];
  // Under a prefix everything is the archive's; at the bucket root only its own folders are
  // (a bucket may hold other archives under prefixes of their own).
  const roots = layout.prefix === '' ? ['attestations/', 'blobs/', 'checkpoints/', 'legal-holds/', PROBE_FOLDER, 'streams/', 'tiles/'] : [layout.prefix];
  for (const root of roots) for await (const group of objects.groups(root)) {
    const relative = group.key.slice(layout.prefix.length);
    const kind = classify(relative);
    if (kind.type === 'checkpoint') {
      if (kind.file === 'note') notes.add(`${kind.stream}/${kind.size}`);
      else tokens.set(`${kind.stream}/${kind.size}`, { stream: kind.stream, size: kind.size });
    }
    if (kind.type !== 'scratch') pending.push(auditObject(objects, group, relative, kind));
    if (pending.length >= 64) {
      for (const findings of await Promise.all(pending)) yield* findings;
      pending = [];
    }
  }
  for (const findings of await Promise.all(pending)) yield* findings;
  for (const { stream, size } of tokens.values()) {
    if (!notes.has(`${stream}/${size}`)) yield { code: 'CHECKPOINT_NOTE_MISSING', stream, seq: size, message: `stream ${stream}: the checkpoint at size ${size} has a timestamp token or a witness cosignature but its signed note is missing — it was removed` };
  }
}

async function* auditSettings(objects: ObjectStore): AsyncIterable<AuditFinding> {
  const { bucket } = objects;
  const settings = await objects.bucketSettings();
  if (settings.versioning !== 'Enabled') yield { code: 'S3_VERSIONING_DISABLED', message: `bucket ${bucket}: versioning is ${settings.versioning ?? 'off'}, so objects can be overwritten` };
  if (!settings.objectLock) yield { code: 'S3_OBJECT_LOCK_DISABLED', message: `bucket ${bucket}: Object Lock is not enabled, so nothing stops objects from being deleted` };
}

type Kind =
  | { readonly type: 'batch'; readonly stream: string }
  | { readonly type: 'checkpoint'; readonly stream: string; readonly size: number; readonly file: CheckpointFile }
  | { readonly type: 'blob' | 'tile' | 'hold' | 'attestation' | 'scratch' | 'unexpected'; readonly stream?: string };

function classify(relative: string): Kind {
  const [root, first, ...rest] = relative.split('/');
  const name = rest.join('/');
  if (root === 'streams' && first && isStreamName(first) && parseBatchName(name) !== undefined) return { type: 'batch', stream: first };
  if (root === 'checkpoints' && first && isStreamName(first)) {
    const parsed = parseCheckpointName(name);
    if (parsed) return { type: 'checkpoint', stream: first, size: parsed.size, file: parsed.file };
  }
  if (root === 'blobs' && first === 'sha256' && isSha256Hex(name)) return { type: 'blob' };
  if (root === 'tiles' && first && isStreamName(first) && /^\d+\/(x\d{3}\/)*\d{3}(\.p\/\d+)?$/.test(name)) return { type: 'tile', stream: first };
  if (root === 'legal-holds' && first?.endsWith('.json') && rest.length === 0) return { type: 'hold' };
  if (root === 'attestations' && first !== undefined && parseAttestationName([first, ...rest].join('/')) !== undefined) return { type: 'attestation' };
  // Left by `offchannel sink-check` (short retention, deleted when it finishes): not archive content.
  if (`${root ?? ''}/` === PROBE_FOLDER) return { type: 'scratch' };
  return { type: 'unexpected' };
}

async function auditObject(objects: ObjectStore, group: Group, relative: string, kind: Kind): Promise<AuditFinding[]> {
  const findings: AuditFinding[] = [];
  const stream = 'stream' in kind ? kind.stream : undefined;
  const where = { ...(stream === undefined ? {} : { stream }) };
  if (kind.type === 'unexpected') findings.push({ ...where, code: 'UNEXPECTED_FILE', message: `${relative} is not part of the archive layout` });
  const oldest = group.versions.at(-1);
  if (!oldest) {
    findings.push({ ...where, code: 'S3_OBJECT_DELETED', message: `${relative}: every version was deleted (only delete markers remain)` });
    return findings;
  }
  if (group.versions.length > 1) {
    findings.push({ ...where, code: 'S3_EXTRA_VERSION', severity: 'warning', message: `${relative} has ${group.versions.length} versions (a writer lost an append race, or an overwrite was attempted); the oldest is the object and is intact` });
  }
  if (group.deleteMarkers > 0) {
    findings.push({ ...where, code: 'S3_DELETE_MARKER', severity: 'warning', message: `${relative}: someone tried to delete it (${group.deleteMarkers} delete marker${group.deleteMarkers === 1 ? '' : 's'}); the locked version is intact` });
  }
  const lock = await objects.lockState(oldest.key, oldest.versionId);
  if (lock.mode !== 'COMPLIANCE' || lock.retainUntil === undefined) {
    findings.push({ ...where, code: 'S3_NOT_LOCKED', message: `${relative}: the stored version is not under COMPLIANCE retention (mode ${lock.mode ?? 'none'}), so it could be deleted` });
  } else if (lock.retainUntil.getTime() < Date.now() && !lock.legalHold) {
    findings.push({ ...where, code: 'S3_RETENTION_ENDED', severity: 'warning', message: `${relative}: its retention ended on ${lock.retainUntil.toISOString()}; it can now be deleted` });
  }
  return findings;
}
