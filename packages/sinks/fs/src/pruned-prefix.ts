/**
 * The pruned prefix of a spool stream, `streams/<stream>/pruned.json`.
 *
 * A spool (the local archive the recorder acknowledges on, forwarded to S3) may drop sealed
 * segments once every forward target holds them (see `FsSink.prune`). What is dropped is always
 * a prefix of whole sealed segments; this file says where it ends: the last pruned seq and the
 * SHA-256 of that record — the `prev` of the first record still held — so the chain, the head
 * after recovery and verification continue from it. It is written (temp file, fsync, rename,
 * fsync of the directory) BEFORE any segment is removed, so a crash at any point leaves either
 * the old prefix or the new one, with at worst segments already covered by it still on disk
 * (they are skipped, and removed by the next prune).
 *
 * Like every spool file it is protected by the host, not by the storage: the archive of record
 * is the forward target, which never prunes (docs/storage-format.md, "Spool pruning").
 */
import { randomBytes } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ArchiveCorruptError, type StreamHead, canonicalize, isSha256Hex } from '@offchannel/core';
import type { ArchiveLayout } from './archive-layout.ts';
import { ensureDirectory, readIfExists, syncDirectory, syncFile } from './fs-utils.ts';

export const PRUNED_FORMAT = 'offchannel-pruned-prefix';
export const PRUNED_FILE = 'pruned.json';

export interface PrunedPrefix {
  readonly v: 1;
  readonly format: typeof PRUNED_FORMAT;
  readonly stream: string;
  /** The last pruned record: records 1 to `throughSeq` are gone from the spool. */
  readonly throughSeq: number;
  /** SHA-256 (hex) of record `throughSeq` (from its segment's seal). */
  readonly lastHash: string;
  /** Segments and bytes pruned so far, in total. */
  readonly segments: number;
  readonly bytes: number;
  /** When the last prune happened (ISO 8601, the capture host's clock). */
  readonly at: string;
}

export function prunedPath(layout: ArchiveLayout, stream: string): string {
  return path.join(layout.streamDir(stream), PRUNED_FILE);
}

/** The stream's pruned prefix, or `undefined` when nothing was pruned. Throws `ArchiveCorruptError` if the file is damaged. */
export async function readPrunedPrefix(layout: ArchiveLayout, stream: string): Promise<PrunedPrefix | undefined> {
  const file = prunedPath(layout, stream);
  const content = await readIfExists(file, layout.name(file));
  if (!content) return undefined;
  let prefix: PrunedPrefix;
  try {
    prefix = JSON.parse(content.toString('utf8')) as PrunedPrefix;
  } catch {
    throw new ArchiveCorruptError(`streams/${stream}/${PRUNED_FILE} is not JSON`, { stream });
  }
  const valid =
    typeof prefix === 'object' &&
    prefix !== null &&
    prefix.v === 1 &&
    prefix.format === PRUNED_FORMAT &&
    prefix.stream === stream &&
    Number.isSafeInteger(prefix.throughSeq) &&
    prefix.throughSeq > 0 &&
    isSha256Hex(prefix.lastHash) &&
    Number.isSafeInteger(prefix.segments) &&
    Number.isSafeInteger(prefix.bytes) &&
    typeof prefix.at === 'string';
  if (!valid) throw new ArchiveCorruptError(`streams/${stream}/${PRUNED_FILE} is malformed`, { stream });
  return prefix;
}

/** The head at the end of the pruned prefix. */
export function prunedHead(prefix: PrunedPrefix): StreamHead {
  return { seq: prefix.throughSeq, hash: prefix.lastHash };
}

/** Replaces the stream's pruned prefix durably (temp file, fsync, rename, fsync directory). */
export async function writePrunedPrefix(layout: ArchiveLayout, prefix: PrunedPrefix): Promise<void> {
  await ensureDirectory(layout.tmpDir);
  const temp = path.join(layout.tmpDir, `pruned-${randomBytes(8).toString('hex')}.json`);
  await writeFile(temp, `${canonicalize(prefix)}\n`, { mode: 0o444, flag: 'wx' });
  await syncFile(temp);
  await rename(temp, prunedPath(layout, prefix.stream));
  await syncDirectory(layout.streamDir(prefix.stream));
  await syncDirectory(layout.tmpDir);
}
