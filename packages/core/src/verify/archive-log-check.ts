/**
 * Verification of the archive log (`witness/archive-log.ts`, docs/witnessing.md) under a
 * witness policy:
 *
 * - every archive checkpoint is signed by a given key, its origin that key's name;
 * - the archive log's tiles reproduce every archive checkpoint's root: one tree, never forked
 *   or altered (`ARCHIVE_LOG_INCONSISTENT`, `ARCHIVE_LOG_TILES_MISSING`);
 * - the newest archive checkpoint carries `quorum` valid cosignatures (`ARCHIVE_LOG_QUORUM`);
 * - every entry is a stream checkpoint note still in the archive that verifies
 *   (`ARCHIVE_LOG_ENTRY_MISSING`: a stream checkpoint the witnesses saw was deleted).
 *
 * It returns, per stream, the checkpoint sizes included in a witnessed archive checkpoint:
 * the stream checks (`checkpoint-check.ts`) count those as witnessed, so a stream's newest
 * checkpoint needs either its own cosignatures (per-stream witnessing, older archives) or an
 * inclusion here.
 */
import { leafHash, sameHash } from '../merkle/merkle-hash.ts';
import { CompactRange } from '../merkle/merkle-proofs.ts';
import { checkpointOrigin, parseCheckpoint } from '../note/checkpoint.ts';
import { type CosignatureVerifier, checkCosignatures } from '../note/cosignature.ts';
import type { NoteVerifier } from '../note/ed25519-key.ts';
import { openNote, parseNote } from '../note/signed-note.ts';
import { ARCHIVE_LOG } from '../sink/log-name.ts';
import type { Sink } from '../sink/sink.ts';
import { archiveLogOrigin, forEachLeaf } from '../witness/archive-log.ts';
import { cosignedFile } from '../witness/witness-client.ts';
import type { VerificationFailure } from './verify-archive.ts';

export interface ArchiveLogSummary {
  readonly log: string;
  /** Entries (stream checkpoints) in the newest archive checkpoint. */
  readonly size: number;
  /** Size of the newest archive checkpoint with the quorum (0: none). */
  readonly witnessedSize: number;
  /** Valid cosignatures on that checkpoint, by witness name. */
  readonly witnesses: readonly string[];
}

export interface ArchiveLogCheck {
  readonly summary: ArchiveLogSummary;
  /** Per stream, the checkpoint sizes included in the newest witnessed archive checkpoint. */
  readonly included: ReadonlyMap<string, ReadonlySet<number>>;
}

export interface ArchiveLogCheckOptions {
  readonly verifiers: readonly NoteVerifier[];
  readonly witnesses: readonly CosignatureVerifier[];
  readonly quorum: number;
  readonly report: (failure: VerificationFailure) => void;
}

/** Stream checkpoint notes by leaf hash (hex): what archive-log entries must be. */
type StreamNotes = ReadonlyMap<string, { readonly stream: string; readonly size: number }>;

/**
 * Checks every archive log of the archive (one per capture host: `archive-log`, or one per
 * shard); undefined when it has none. `included` merges them: each host's log includes its own
 * streams' checkpoints.
 */
export async function checkArchiveLogs(sink: Sink, options: ArchiveLogCheckOptions): Promise<{ readonly summaries: readonly ArchiveLogSummary[]; readonly included: ReadonlyMap<string, ReadonlySet<number>> } | undefined> {
  const logs = sink.archiveLogs ? await sink.archiveLogs() : (await sink.checkpoints(ARCHIVE_LOG)).length > 0 ? [ARCHIVE_LOG] : [];
  if (logs.length === 0) return undefined;
  const notes = await streamNotes(sink, options.verifiers);
  const summaries: ArchiveLogSummary[] = [];
  const included = new Map<string, Set<number>>();
  for (const log of logs) {
    const checked = await checkArchiveLog(sink, { ...options, log }, notes);
    if (!checked) continue;
    summaries.push(checked.summary);
    for (const [stream, sizes] of checked.included) included.set(stream, new Set([...(included.get(stream) ?? []), ...sizes]));
  }
  return { summaries, included };
}

/** Every stored stream checkpoint that a given key signed, by leaf hash. */
async function streamNotes(sink: Sink, verifiers: readonly NoteVerifier[]): Promise<StreamNotes> {
  const notes = new Map<string, { stream: string; size: number }>();
  for (const stream of await sink.streams()) {
    for (const size of await sink.checkpoints(stream)) {
      const note = await sink.getCheckpoint(stream, size, 'note');
      if (note && isStreamCheckpoint(note, stream, size, verifiers)) notes.set(hex(leafHash(note)), { stream, size });
    }
  }
  return notes;
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

/** Checks archive log `options.log` (default `archive-log`); undefined when the archive has none. */
export async function checkArchiveLog(sink: Sink, options: ArchiveLogCheckOptions & { readonly log?: string }, known?: StreamNotes): Promise<ArchiveLogCheck | undefined> {
  const log = options.log ?? ARCHIVE_LOG;
  const sizes = await sink.checkpoints(log);
  if (sizes.length === 0) return undefined;
  const fail = (code: string, seq: number, message: string, critical = true): void => {
    options.report({ stream: log, seq, code, message: `archive log ${log}: ${message}`, ...(critical ? { severity: 'critical' as const } : {}) });
  };
  const checkpoints: { size: number; root: Uint8Array; witnesses: string[] }[] = [];
  for (const size of sizes) {
    const note = await sink.getCheckpoint(log, size, 'note');
    if (!note) continue;
    let root: Uint8Array;
    try {
      const opened = openNote(note, options.verifiers);
      const checkpoint = parseCheckpoint(opened.text);
      if (!opened.verified.some((signature) => checkpoint.origin === archiveLogOrigin(signature.name, log))) throw new Error(`its origin "${checkpoint.origin}" is not the archive log's`);
      if (checkpoint.size !== size) throw new Error(`its text says size ${checkpoint.size}`);
      root = checkpoint.root;
    } catch (error) {
      fail('ARCHIVE_LOG_CHECKPOINT_INVALID', size, `the archive checkpoint at size ${size} does not verify with the given keys (${(error as Error).message})`);
      continue;
    }
    const witnesses: string[] = [];
    for (const witness of options.witnesses) {
      const copy = await sink.getCheckpoint(log, size, cosignedFile(witness));
      if (!copy) continue;
      const sameText = parseNote(copy).text === parseNote(note).text;
      const state = checkCosignatures(copy, [witness])[0]?.state;
      if (sameText && state === 'valid') witnesses.push(witness.name);
      else fail('ARCHIVE_LOG_COSIGNATURE_INVALID', size, `the copy cosigned by witness ${witness.name} at size ${size} is ${sameText ? 'not validly cosigned' : 'of another checkpoint: the archive checkpoint was replaced after it was witnessed (a fork)'}`);
    }
    checkpoints.push({ size, root, witnesses });
  }
  const newest = checkpoints.at(-1);
  if (!newest) return { summary: { log, size: 0, witnessedSize: 0, witnesses: [] }, included: new Map() };

  // One pass over the level-0 tiles of the newest checkpoint, one tile in memory at a time: they
  // reproduce every checkpoint's root (one tree), and each entry is looked up as it goes by.
  // Read once, so the entries checked are the very leaves that reproduced the roots.
  const notes = known ?? (await streamNotes(sink, options.verifiers));
  // What counts as witnessed: the entries below the largest consistent checkpoint with the
  // quorum. Entries wait in `pending` until such a checkpoint is reached and found consistent;
  // none are kept past the largest checkpoint with the quorum.
  const quorate = checkpoints.filter((checkpoint) => checkpoint.witnesses.length >= options.quorum);
  const lastQuorate = quorate.at(-1)?.size ?? 0;
  const included = new Map<string, Set<number>>();
  let pending: { readonly stream: string; readonly size: number }[] = [];
  let witnessed: (typeof checkpoints)[number] | undefined;
  const consistent: typeof checkpoints = [];
  /** The first ten missing entries, reported once the tiles are known whole (then the rest counted). */
  const missingEntries: { readonly index: number; readonly leaf: string }[] = [];
  let missing = 0;
  const range = new CompactRange();
  let next = 0;
  const whole = await forEachLeaf(newest.size, (tile) => sink.getTile(log, tile), (leaf, index) => {
    const entry = notes.get(hex(leaf));
    if (!entry) {
      if (missing++ < 10) missingEntries.push({ index, leaf: hex(leaf) });
    } else if (index < lastQuorate) pending.push(entry);
    range.append(leaf);
    while (checkpoints[next]?.size === range.size) {
      const checkpoint = checkpoints[next] as (typeof checkpoints)[number];
      if (sameHash(range.root(), checkpoint.root)) {
        consistent.push(checkpoint);
        if (checkpoint.witnesses.length >= options.quorum) {
          witnessed = checkpoint;
          for (const { stream, size } of pending) {
            const sizes = included.get(stream) ?? new Set<number>();
            sizes.add(size);
            included.set(stream, sizes);
          }
          pending = [];
        }
      } else fail('ARCHIVE_LOG_INCONSISTENT', checkpoint.size, `the archive checkpoint at size ${checkpoint.size} is not a prefix of the one at size ${newest.size}: the archive log was forked or altered`);
      next++;
    }
  });
  if (!whole) {
    fail('ARCHIVE_LOG_TILES_MISSING', newest.size, `the level-0 tiles of the archive checkpoint at size ${newest.size} are missing or the wrong size: its entries cannot be checked`);
    return { summary: { log, size: newest.size, witnessedSize: 0, witnesses: [] }, included: new Map() };
  }
  if (newest.witnesses.length < options.quorum) {
    const absent = options.witnesses.map((witness) => witness.name).filter((name) => !newest.witnesses.includes(name));
    fail('ARCHIVE_LOG_QUORUM', newest.size, `the newest archive checkpoint (size ${newest.size}) has ${newest.witnesses.length} valid witness cosignature${newest.witnesses.length === 1 ? '' : 's'}, the policy needs ${options.quorum} (missing: ${absent.join(', ')})`, false);
  }
  // Every entry is a stream checkpoint still in the archive, signed by a given key.
  for (const { index, leaf } of missingEntries) fail('ARCHIVE_LOG_ENTRY_MISSING', index + 1, `entry ${index + 1} (leaf ${leaf}) is a stream checkpoint that is no longer in the archive, or no longer verifies: it was deleted or replaced — the records after the previous checkpoint of that stream may have been rewritten`);
  if (missing > 10) fail('ARCHIVE_LOG_ENTRY_MISSING', 0, `${missing - 10} more entries are missing`);
  return { summary: { log, size: newest.size, witnessedSize: witnessed?.size ?? 0, witnesses: witnessed?.witnesses ?? [] }, included };
}

function isStreamCheckpoint(note: Uint8Array, stream: string, size: number, verifiers: readonly NoteVerifier[]): boolean {
  try {
    const opened = openNote(note, verifiers);
    const checkpoint = parseCheckpoint(opened.text);
    return checkpoint.size === size && opened.verified.some((signature) => checkpoint.origin === checkpointOrigin(signature.name, stream));
  } catch {
    return false;
  }
}
