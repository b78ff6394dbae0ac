import { access, mkdir, readdir, rm, constants } from 'node:fs/promises';
import path from 'node:path';
import type { X509Certificate } from 'node:crypto';
import { type Logger, type NoteVerifier, type CheckpointSummary, type Sink, type VerificationReport, type VerifiedCheckpoint, noopLogger, openNote, parseCheckpoint, verifyArchive } from '@offchannel/core';
import { exportEml } from './eml/export-eml.ts';
import { ExportError } from './export-error.ts';
import { type ExportJob, relative } from './export-job.ts';
import { exportHtml } from './html/export-html.ts';
import { ArchiveIndex } from './index-db/archive-index.ts';
import { extendKeptIndex } from './index-db/kept-index.ts';
import { createExportTempDir } from './export-temp-dir.ts';
import { parseTimeBound } from './index-db/sortable-time.ts';
import { exportJsonl } from './jsonl/export-jsonl.ts';
import { exportRsmf } from './rsmf/export-rsmf.ts';
import type { CheckpointRef } from './rsmf/rsmf-slice.ts';
import { type WrittenFile, writeFileDurably } from './written-file.ts';

export const EXPORT_FORMATS = ['rsmf', 'eml', 'jsonl', 'html'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportOptions {
  /** The archive, opened read-only. */
  readonly sink: Sink;
  /** Output directory: created if missing; MUST be empty if it exists. */
  readonly out: string;
  readonly formats: readonly ExportFormat[];
  /**
   * The archive signer's verifier keys. With them, every stream must carry valid signed
   * checkpoints and JSONL lines carry inclusion proofs; without them the export checks the
   * hash chain and blobs only, and says so in every human-readable file.
   */
  readonly verifiers?: readonly NoteVerifier[];
  readonly tsaCertificates?: readonly X509Certificate[];
  /** Only these streams (default all). */
  readonly streams?: readonly string[];
  /** Only conversations with this platform id (or `<stream>|<id>` index key). */
  readonly conversations?: readonly string[];
  /**
   * Time bounds on each record's platform time (capture time when it has none): a date
   * `2026-11-20` (a whole UTC day: `to` includes it) or an ISO date-time with offset (`from`
   * inclusive, `to` exclusive). Edits, deletions and reactions of a selected message are shown
   * with it even when they happened later.
   */
  readonly from?: string;
  readonly to?: string;
  /** EML layout: one file per record (default) or one transcript per conversation per day. */
  readonly emlMode?: 'message' | 'day';
  /**
   * Incremental verification (needs `verifiers`): per stream, the newest signed checkpoint an
   * earlier verification of this archive passed (core's `since`, as `offchannel verify --since`).
   * Only what came after it is verified; anything that contradicts it fails the export.
   */
  readonly since?: ReadonlyMap<string, VerifiedCheckpoint>;
  /**
   * EML only: per stream, the first seq whose e-mails are wanted. Record mode writes only the
   * files of records from that seq on; day mode only the transcripts of days that hold such a
   * record (or a message such a record edits, deletes or reacts to). Every file written is byte
   * for byte the one the full export writes: the context (threading, parties, titles, folded
   * edits) still comes from the whole index. For `@offchannel/delivery`, which sends only what
   * is new; streams not named are exported whole.
   */
  readonly emlFromSeq?: ReadonlyMap<string, number>;
  /**
   * A working index kept between exports of this archive (a file; see index-db/kept-index.ts):
   * each export adds only the records after the ones it holds, instead of indexing every
   * record of the selected streams in a temporary file. For `@offchannel/delivery`.
   */
  readonly keptIndex?: string;
  /** Called with the verification once it passed, before anything is written. */
  readonly onVerified?: (report: VerificationReport) => void;
  /** `X-RSMF-Generator` and footers, e.g. `offchannel 0.1.0`. */
  readonly generator?: string;
  /** Clock for `exportedAt` in `export-summary.json`. Default: system time. */
  readonly clock?: () => Date;
  readonly logger?: Logger;
  /**
   * Aborting stops the export with `EXPORT_ABORTED` at the next step; its working files are
   * removed. Without a signal, the export removes its working files on SIGINT / SIGTERM itself
   * (and the process then terminates as it would have).
   */
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: { readonly phase: string; readonly done: number; readonly total?: number }) => void;
  /**
   * A spool pruned after forwarding (capture's delivery targets read one): a stream whose first
   * records were pruned is exported from the first record the spool still holds, its chain
   * verified from the pruned prefix (verification warns `PRUNED`). Without it such a stream
   * is refused (`RECORDS_PRUNED`): an export is normally of the whole archive of record.
   */
  readonly prunedSpool?: boolean;
}

export interface ExportResult {
  readonly out: string;
  readonly verification: VerificationReport;
  readonly conversations: number;
  /** Per format: events (rsmf, html), files (eml) or lines (jsonl) written. */
  readonly counts: Readonly<Partial<Record<ExportFormat, number>>>;
  /** Every file written, relative to `out`, with size and SHA-256 (also in `SHA256SUMS`). */
  readonly files: readonly { readonly path: string; readonly size: number; readonly sha256: string }[];
}

/**
 * Exports a verified archive. Verification runs first, over the selected streams; if it fails,
 * nothing is written and `ExportError('EXPORT_UNVERIFIED')` names the first failure — evidence
 * that does not verify is never exported silently. Then the selected conversations are written
 * in each format, followed by `export-summary.json` (selection, verification, counts, files)
 * and `SHA256SUMS` (check the whole export with `sha256sum -c SHA256SUMS`).
 */
export async function exportArchive(options: ExportOptions): Promise<ExportResult> {
  const logger = options.logger ?? noopLogger;
  const formats = [...new Set(options.formats)];
  if (formats.length === 0) throw new ExportError('EXPORT_OPTIONS', `choose at least one format: ${EXPORT_FORMATS.join(', ')}`);
  for (const format of formats) if (!EXPORT_FORMATS.includes(format)) throw new ExportError('EXPORT_OPTIONS', `unknown format "${format as string}"; use ${EXPORT_FORMATS.join(', ')}`);
  const from = options.from === undefined ? undefined : parseTimeBound(options.from, false);
  const to = options.to === undefined ? undefined : parseTimeBound(options.to, true);
  if (options.from !== undefined && from === undefined) throw new ExportError('EXPORT_OPTIONS', '--from must be a date (2026-11-20) or an ISO 8601 date-time with offset (2026-11-20T09:00:00Z)');
  if (options.to !== undefined && to === undefined) throw new ExportError('EXPORT_OPTIONS', '--to must be a date (2026-11-20) or an ISO 8601 date-time with offset (2026-11-20T17:00:00Z)');
  if (from !== undefined && to !== undefined && from >= to) throw new ExportError('EXPORT_OPTIONS', '--from must be before --to');

  const verifiers = options.verifiers && options.verifiers.length > 0 ? options.verifiers : undefined;
  const all = await options.sink.streams();
  const streams = options.streams ?? all;
  for (const stream of streams) if (!all.includes(stream)) throw new ExportError('EXPORT_OPTIONS', `the archive has no stream "${stream}"; it has: ${all.join(', ') || 'none'}`);
  const out = path.resolve(options.out);
  await prepareOutput(out);
  const temp = await createExportTempDir(out, options.signal === undefined).catch((error: unknown) => {
    throw new ExportError('EXPORT_OUTPUT', `cannot create the export's working directory beside ${out} (${(error as { code?: string }).code ?? 'unknown error'}); choose an --out whose parent directory you can write to`, { cause: error });
  });
  try {
    return await verifyAndExport(options, { out, temp: temp.path, formats, streams, verifiers, from, to, logger });
  } finally {
    await temp.remove();
  }
}

interface Plan {
  readonly out: string;
  readonly temp: string;
  readonly formats: readonly ExportFormat[];
  readonly streams: readonly string[];
  readonly verifiers: readonly NoteVerifier[] | undefined;
  readonly from: string | undefined;
  readonly to: string | undefined;
  readonly logger: Logger;
}

async function verifyAndExport(options: ExportOptions, plan: Plan): Promise<ExportResult> {
  const { out, formats, streams, verifiers, from, to, logger } = plan;
  const stopIfAborted = (): void => {
    if (options.signal?.aborted) throw new ExportError('EXPORT_ABORTED', `the export was interrupted; the files already written in ${out} are incomplete (delete the directory), the working files were removed`);
  };
  const report = (phase: string, done: number, total?: number): void => options.onProgress?.({ phase, done, ...(total === undefined ? {} : { total }) });
  const progress = (phase: string, done: number, total?: number): void => {
    stopIfAborted();
    report(phase, done, total);
  };
  progress('verify', 0);
  const verification = await verifyArchive(options.sink, {
    streams,
    ...(verifiers ? { verifiers } : {}),
    ...(options.tsaCertificates ? { tsaCertificates: options.tsaCertificates } : {}),
    ...(options.since && verifiers ? { since: options.since } : {}),
    onProgress: ({ seq }) => {
      report('verify', seq);
    },
  });
  stopIfAborted();
  if (!verification.ok) {
    const first = verification.failures[0];
    throw new ExportError('EXPORT_UNVERIFIED', `the archive does not verify, so nothing was exported: ${first?.code ?? 'FAILED'}: ${first?.message ?? 'unknown failure'} (${verification.failures.length} failure${verification.failures.length === 1 ? '' : 's'}; run offchannel verify for all)`);
  }
  options.onVerified?.(verification);

  const checkpoints = new Map<string, CheckpointRef>();
  for (const summary of verification.streams) {
    const latest = newestCheckpoint(summary);
    if (latest && verifiers) checkpoints.set(summary.stream, { size: latest.size, root: latest.root, signedBy: latest.signedBy, note: await verifiedNote(options.sink, summary.stream, latest, verifiers) });
  }
  const verificationLines = (stream: string): string[] => {
    const summary = verification.streams.find((item) => item.stream === stream);
    const checkpoint = summary ? newestCheckpoint(summary) : undefined;
    // Incremental verification reads only the records after `since`; the chain it extends is
    // the whole stream's, so the line says what a full verification would (same bytes).
    const records = summary && verifiers && options.since?.has(stream) ? summary.head.seq - (summary.pruned ?? 0) : (summary?.records ?? 0);
    return [
      `Verified before export: hash chain of ${records} records and every referenced blob intact.`,
      verifiers
        ? checkpoint
          ? `Signed checkpoint: size ${checkpoint.size}, root ${checkpoint.root}, signed by ${checkpoint.signedBy}${checkpoint.timestamp ? `, RFC 3161 time ${checkpoint.timestamp.genTime}${checkpoint.timestamp.trusted ? ' (trusted TSA)' : ' (TSA not trusted)'}` : ''}.`
          : 'No signed checkpoint covers this stream yet.'
        : 'Signed checkpoints NOT checked: no verifier key was given to the export.',
    ];
  };

  // Built from exactly what was verified: every record re-read is checked against the verified
  // chain and head (archive-index.ts), every blob against its hash (verified-blob.ts).
  progress('index', 0);
  const heads = new Map(verification.streams.map((summary) => [summary.stream, summary.head] as const));
  // Every stream the spool pruned — also one verified from a checkpoint above its prefix (`since`),
  // whose verification did not meet the prefix: the index starts after it all the same.
  const pruned = new Set<string>();
  if (options.prunedSpool === true) {
    for (const summary of verification.streams) if (summary.pruned !== undefined || ((await options.sink.pruned?.(summary.stream))?.seq ?? 0) > 0) pruned.add(summary.stream);
  }
  const index = options.keptIndex
    ? await extendKeptIndex(options.keptIndex, options.sink, heads, pruned)
    : await ArchiveIndex.build(
        options.sink,
        heads,
        plan.temp,
        (done) => {
          progress('index', done);
        },
        {},
        pruned,
      );
  const files: WrittenFile[] = [];
  const counts: Partial<Record<ExportFormat, number>> = {};
  try {
    const wanted = options.conversations;
    // A kept index may also hold streams this export did not select.
    const conversations = index.conversations().filter((conversation) => streams.includes(conversation.stream) && (!wanted || wanted.some((item) => item === conversation.id || item === conversation.key)));
    if (wanted && conversations.length === 0) throw new ExportError('EXPORT_OPTIONS', `no conversation matches ${wanted.map((item) => `"${item}"`).join(', ')} in the selected streams`);
    const job: ExportJob = {
      sink: options.sink,
      index,
      out,
      temp: plan.temp,
      conversations,
      range: { ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }) },
      checkpoints,
      verificationLines,
      generator: options.generator ?? 'offchannel',
      emlMode: options.emlMode ?? 'message',
      emlFromSeq: options.emlFromSeq ?? new Map(),
      written: (file) => {
        files.push(file);
      },
      progress,
    };
    for (const format of formats) {
      logger.info({ format, conversations: conversations.length }, 'exporting');
      counts[format] = format === 'rsmf' ? await exportRsmf(job) : format === 'eml' ? await exportEml(job) : format === 'jsonl' ? await exportJsonl(job) : await exportHtml(job);
    }
    const listed = files.map((file) => ({ path: relative(job, file.path), size: file.size, sha256: file.sha256 })).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const summary = {
      format: 'offchannel-export',
      v: 1,
      generator: job.generator,
      exportedAt: (options.clock ?? (() => new Date()))().toISOString(),
      selection: { streams, conversations: conversations.map((conversation) => ({ stream: conversation.stream, id: conversation.id ?? null, title: conversation.title ?? null })), from: options.from ?? null, to: options.to ?? null, formats, emlMode: job.emlMode },
      verification: { ok: verification.ok, signedCheckpointsChecked: verifiers !== undefined, streams: verification.streams.map((item) => ({ stream: item.stream, records: item.records, head: item.head, checkpoint: checkpoints.get(item.stream) ?? null })), warnings: verification.warnings.map((warning) => ({ code: warning.code, message: warning.message })) },
      counts,
      files: listed,
    };
    const summaryFile = await writeFileDurably(path.join(out, 'export-summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    const all = [...listed, { path: 'export-summary.json', size: summaryFile.size, sha256: summaryFile.sha256 }];
    await writeFileDurably(path.join(out, 'SHA256SUMS'), all.map((file) => `${file.sha256}  ${file.path}\n`).join(''));
    return { out, verification, conversations: conversations.length, counts, files: all };
  } finally {
    await index.close();
  }
}

/**
 * The stream's newest verified checkpoint as stored in the archive. An incremental verification
 * also lists the checkpoint it resumed from (`since`, source `given`, "signed by an earlier
 * audit"); the archive's own checkpoint of that size, verified again, is the one named.
 */
function newestCheckpoint(summary: VerificationReport['streams'][number]): CheckpointSummary | undefined {
  return summary.checkpoints?.findLast((checkpoint) => checkpoint.source === 'archive') ?? summary.checkpoints?.at(-1);
}

/** The newest verified checkpoint's note, read again and checked: signed by a given key, same size and root. */
async function verifiedNote(sink: Sink, stream: string, checkpoint: { readonly size: number; readonly root: string }, verifiers: readonly NoteVerifier[]): Promise<string> {
  const changed = (why: string, cause?: unknown): ExportError =>
    new ExportError('EXPORT_UNVERIFIED', `the signed checkpoint ${checkpoint.size} of stream ${stream} changed between verification and export (${why}); nothing was exported. Run offchannel verify`, cause === undefined ? undefined : { cause });
  const bytes = await sink.getCheckpoint(stream, checkpoint.size, 'note');
  if (!bytes) throw changed('it is gone');
  const note = Buffer.from(bytes).toString('utf8');
  let opened;
  let parsed;
  try {
    opened = openNote(note, verifiers);
    parsed = parseCheckpoint(opened.text);
  } catch (error) {
    throw changed('it no longer verifies', error);
  }
  if (opened.verified.length === 0 || parsed.size !== checkpoint.size || Buffer.from(parsed.root).toString('hex') !== checkpoint.root) throw changed('it no longer names the verified size and root');
  return note;
}

async function prepareOutput(out: string): Promise<void> {
  try {
    await mkdir(out, { recursive: true });
    const entries = await readdir(out);
    if (entries.length > 0) throw new ExportError('EXPORT_OUTPUT', `output directory ${out} is not empty; choose a new directory (exports never overwrite files)`);
    await access(out, constants.W_OK);
    const probe = path.join(out, '.offchannel-write-test');
    await writeFileDurably(probe, '');
    await rm(probe);
  } catch (error) {
    if (error instanceof ExportError) throw error;
    const code = (error as { code?: string }).code ?? 'unknown error';
    throw new ExportError('EXPORT_OUTPUT', `cannot write to output directory ${out} (${code}); choose a directory you can write to`, { cause: error });
  }
}
