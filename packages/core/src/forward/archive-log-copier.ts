/**
 * Internal: the forwarder's copy of the archive log(s) (`witness/archive-log.ts`) from the spool
 * to every target — per archive checkpoint, in size order: its tiles first (the full ones not yet
 * copied, the partial ones at its size), then its note, then the witnesses' cosigned copies as
 * they appear. A target holds an archive checkpoint only once it holds the tiles that prove it,
 * and only once the target's lanes hold the stream checkpoints it may include: else the target
 * would hold archive-log entries whose notes it lacks, which verify reports as deleted stream
 * checkpoints (`ARCHIVE_LOG_ENTRY_MISSING`, critical) — a false tamper alarm. When a target's
 * next archive checkpoint is first considered, the spool's newest stream checkpoint per stream
 * is read (after the listing: a stream checkpoint is stored before it is appended to the
 * archive log, so this covers every entry); the archive checkpoint waits on that target until
 * the target's lane of every stream has copied a checkpoint at least that size, and later ones
 * wait behind it. Only the archive checkpoint a target waits for keeps a snapshot (memory: one
 * per target, however long it is down); the next one gets its own when its turn comes.
 * What a target holds is listed once per process; a target that is down is retried at the next poll.
 *
 * The spool's archive log is listed once per process too: after that the copier learns of new
 * archive checkpoint files from the spooling sink (the archive log is written through it), and
 * keeps only what some target still lacks — a poll costs what is new, not the log's history.
 * The spool's newest stream checkpoints come from the stream lanes, which know them the same
 * way; a stream no lane has listed yet is listed from the spool. The lanes do not know notes
 * another process wrote since they listed (a shard, `offchannel deliver`), and an archive log
 * includes those when it opens (`ArchiveLog`'s restore). So each log's archive checkpoints are
 * waited on with a real listing of every stream, ranged above what the lanes know, until one
 * signed by this process's archive log (told by the spooling sink: signed after its restore)
 * has been: later ones include only checkpoints this process signed, which the lanes know. What
 * such a listing finds is handed to the lanes, which copy it.
 */
import type { Logger } from '../logger/logger.ts';
import { TILE_WIDTH, type TileId, tileCounts, tilePath } from '../merkle/tiles.ts';
import { checkpointFilesAfter, checkpointsAfter } from '../sink/checkpoint-range.ts';
import { isArchiveLogName } from '../sink/log-name.ts';
import type { CheckpointFile, Sink } from '../sink/sink.ts';
import type { ForwardTarget } from './forwarder.ts';

type FileEntry = { readonly size: number; readonly file: CheckpointFile };

/** Per stream, the largest checkpoint size a target's lane has copied (0 if none, or diverged). */
export type ForwardedCheckpoint = (target: ForwardTarget, stream: string) => number;

/**
 * Per stream, the spool's newest checkpoint as its lanes know it, or `undefined` when none has
 * listed it yet; `found` tells the lanes of a newer note a listing found.
 */
export interface SpoolNewest {
  (stream: string): number | undefined;
  found?: (stream: string, size: number) => void;
}

/**
 * Per stream of the spool, the size of its newest stream checkpoint: from the lanes, or with
 * `list` from a listing ranged above what they know (notes another process wrote).
 */
async function newestStreamCheckpoints(spool: Sink, known: SpoolNewest, list: boolean): Promise<ReadonlyMap<string, number>> {
  const newest = new Map<string, number>();
  for (const stream of await spool.streams()) {
    if (isArchiveLogName(stream)) continue;
    const lanes = known(stream);
    let size = lanes ?? 0;
    if (lanes === undefined || list) {
      const listed = await checkpointsAfter(spool, stream, lanes ?? 0);
      for (const each of listed) size = Math.max(size, each);
      if (lanes !== undefined) for (const each of listed) known.found?.(stream, each);
    }
    if (size > 0) newest.set(stream, size);
  }
  return newest;
}

/** The tiles of a tree of `size` leaves: every full tile and the partial ones at that size. */
function tilesOf(size: number): TileId[] {
  const tiles: TileId[] = [];
  for (let level = 0; TILE_WIDTH ** level <= size; level++) {
    const { full, partialWidth } = tileCounts(size, level);
    for (let index = 0; index < full; index++) tiles.push({ level, index, width: TILE_WIDTH });
    if (partialWidth > 0) tiles.push({ level, index: full, width: partialWidth });
  }
  return tiles;
}

export class ArchiveLogCopier {
  /** Per target and log: `<size>.<file>` and `tile <path>` of what the target holds. */
  readonly #copied = new Map<string, Set<string>>();
  /** Per target and log: the archive checkpoint it waits for, and per stream the checkpoint size its lane must have copied first. */
  readonly #waiting = new Map<string, { readonly size: number; readonly need: ReadonlyMap<string, number> }>();
  /** Per log: the spool's files that some target may still lack, by `<size>.<file>` (after the first listing). */
  readonly #inSpool = new Map<string, Map<string, FileEntry>>();
  /** Per log: files the spooling sink told of before the first listing. */
  readonly #heard = new Map<string, Map<string, FileEntry>>();
  /** Per log: the smallest archive checkpoint this process signed (the spooling sink told of it). */
  readonly #ownFrom = new Map<string, number>();
  /** Logs whose archive checkpoints are waited on by the lanes' knowledge alone (see the top). */
  readonly #settled = new Set<string>();

  /** An archive checkpoint file the spooling sink stored in the spool. */
  heard(log: string, entry: FileEntry): void {
    if (entry.file === 'note') this.#ownFrom.set(log, Math.min(this.#ownFrom.get(log) ?? entry.size, entry.size));
    const files = this.#inSpool.get(log) ?? this.#heard.get(log) ?? new Map<string, FileEntry>();
    if (!this.#inSpool.has(log)) this.#heard.set(log, files);
    files.set(`${entry.size}.${entry.file}`, { size: entry.size, file: entry.file });
  }

  async copy(spool: Sink, targets: readonly ForwardTarget[], logs: readonly string[], logger: Logger, forwarded: ForwardedCheckpoint, spoolNewest: SpoolNewest = () => undefined): Promise<void> {
    for (const log of logs) {
      let pending: Map<string, FileEntry>;
      try {
        pending = await this.#spoolFiles(spool, log);
      } catch (error) {
        logger.warn({ stream: log, code: (error as { code?: string }).code }, 'could not list the spool\'s archive log; retrying at the next poll');
        continue;
      }
      const files = [...pending.values()].sort((a, b) => a.size - b.size || (a.file === 'note' ? -1 : b.file === 'note' ? 1 : a.file < b.file ? -1 : 1));
      // Read after the listing, at most once per round: it covers every entry of what was listed.
      let snapshot: Promise<ReadonlyMap<string, number>> | undefined;
      const list = !this.#settled.has(log);
      const newest = async (size: number) => {
        const found = await (snapshot ??= newestStreamCheckpoints(spool, spoolNewest, list));
        // Listed for an archive checkpoint this process signed: the later ones need no listing.
        const own = this.#ownFrom.get(log);
        if (list && own !== undefined && size >= own) this.#settled.add(log);
        return found;
      };
      for (const target of targets) {
        try {
          await this.#copyTo(spool, target, log, files, { forwarded, newest });
        } catch (error) {
          logger.warn({ stream: log, code: (error as { code?: string }).code }, 'could not copy the archive log to a forward target; retrying at the next poll');
        }
      }
      // What every target holds is not looked at again.
      for (const [name] of pending) if (targets.every((target) => this.#copied.get(`${target.name}\u0000${log}`)?.has(name))) pending.delete(name);
    }
  }

  /** The spool's files of `log` some target may lack: listed once, then as the spooling sink tells. */
  async #spoolFiles(spool: Sink, log: string): Promise<Map<string, FileEntry>> {
    let files = this.#inSpool.get(log);
    if (files) return files;
    files = new Map((await checkpointFilesAfter(spool, log, 0)).map((entry) => [`${entry.size}.${entry.file}`, entry]));
    for (const [name, entry] of this.#heard.get(log) ?? []) files.set(name, entry);
    this.#heard.delete(log);
    this.#inSpool.set(log, files);
    return files;
  }

  /** True once the target's lanes hold every stream checkpoint the archive checkpoint of `size` may include. */
  async #ready(key: string, target: ForwardTarget, size: number, streams: Streams): Promise<boolean> {
    let waiting = this.#waiting.get(key);
    if (waiting?.size !== size) {
      waiting = { size, need: await streams.newest(size) };
      this.#waiting.set(key, waiting);
    }
    for (const [stream, checkpoint] of waiting.need) if (streams.forwarded(target, stream) < checkpoint) return false;
    return true;
  }

  async #copyTo(spool: Sink, target: ForwardTarget, log: string, files: readonly FileEntry[], streams: Streams): Promise<void> {
    const key = `${target.name}\u0000${log}`;
    let copied = this.#copied.get(key);
    if (!copied) {
      copied = new Set((await checkpointFilesAfter(target.sink, log, 0)).map((entry) => `${entry.size}.${entry.file}`));
      this.#copied.set(key, copied);
    }
    for (const entry of files) {
      const name = `${entry.size}.${entry.file}`;
      if (copied.has(name)) continue;
      if (entry.file === 'note') {
        // In size order: a checkpoint that must wait holds back the later ones (they include it).
        if (!(await this.#ready(key, target, entry.size, streams))) return;
        for (const tile of tilesOf(entry.size)) {
          const id = `tile ${tilePath(tile)}`;
          if (copied.has(id)) continue;
          const bytes = await spool.getTile(log, tile);
          if (!bytes) throw new Error(`the spool lacks archive-log tile ${tilePath(tile)}`);
          await target.sink.putTile(log, tile, bytes);
          if (tile.width === TILE_WIDTH) copied.add(id);
        }
      } else if (!copied.has(`${entry.size}.note`)) {
        continue;
      }
      const bytes = await spool.getCheckpoint(log, entry.size, entry.file);
      if (!bytes && entry.file === 'note') return;
      if (!bytes) continue;
      await target.sink.putCheckpoint(log, entry.size, entry.file, bytes);
      copied.add(name);
      if (entry.file === 'note') this.#waiting.delete(key);
    }
  }
}

/** What a target's lanes hold, and the spool's newest stream checkpoints (read once per round). */
interface Streams {
  readonly forwarded: ForwardedCheckpoint;
  readonly newest: (size: number) => Promise<ReadonlyMap<string, number>>;
}
