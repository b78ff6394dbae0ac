/**
 * Internal: the forwarder's copy of the archive log(s) (`witness/archive-log.ts`) from the spool
 * to every target — per archive checkpoint, in size order: its tiles first (the full ones not yet
 * copied, the partial ones at its size), then its note, then the witnesses' cosigned copies as
 * they appear. A target holds an archive checkpoint only once it holds the tiles that prove it,
 * and only once the target's lanes hold the stream checkpoints it may include: else the target
 * would hold archive-log entries whose notes it lacks, which verify reports as deleted stream
 * checkpoints (`ARCHIVE_LOG_ENTRY_MISSING`, critical) — a false tamper alarm. When an archive
 * checkpoint is first listed, the spool's newest stream checkpoint per stream is read (after the
 * listing: a stream checkpoint is stored before it is appended to the archive log, so this covers
 * every entry); that archive checkpoint waits on each target until the target's lane of every
 * stream has copied a checkpoint at least that size, and later ones wait behind it.
 * What a target holds is listed once per process; a target that is down is retried at the next poll.
 */
import type { Logger } from '../logger/logger.ts';
import { TILE_WIDTH, type TileId, tileCounts, tilePath } from '../merkle/tiles.ts';
import { isArchiveLogName } from '../sink/log-name.ts';
import type { CheckpointFile, Sink } from '../sink/sink.ts';
import type { ForwardTarget } from './forwarder.ts';

type FileEntry = { readonly size: number; readonly file: CheckpointFile };

/** Per stream, the largest checkpoint size a target's lane has copied (0 if none, or diverged). */
export type ForwardedCheckpoint = (target: ForwardTarget, stream: string) => number;

/** Per stream of the spool, the size of its newest stream checkpoint. */
async function newestStreamCheckpoints(spool: Sink): Promise<ReadonlyMap<string, number>> {
  const newest = new Map<string, number>();
  for (const stream of await spool.streams()) {
    if (isArchiveLogName(stream)) continue;
    const size = (await spool.checkpoints(stream)).reduce((max, each) => Math.max(max, each), 0);
    if (size > 0) newest.set(stream, size);
  }
  return newest;
}

async function listFiles(sink: Sink, log: string): Promise<readonly FileEntry[]> {
  return sink.checkpointFiles ? sink.checkpointFiles(log) : (await sink.checkpoints(log)).map((size) => ({ size, file: 'note' as const }));
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
  /** Per log and archive checkpoint size not yet on every target: per stream, the stream checkpoint size a target must hold first. */
  readonly #needs = new Map<string, ReadonlyMap<string, number>>();

  async copy(spool: Sink, targets: readonly ForwardTarget[], logs: readonly string[], logger: Logger, forwarded: ForwardedCheckpoint): Promise<void> {
    for (const log of logs) {
      let files: readonly FileEntry[];
      try {
        files = [...(await listFiles(spool, log))].sort((a, b) => a.size - b.size || (a.file === 'note' ? -1 : b.file === 'note' ? 1 : a.file < b.file ? -1 : 1));
      } catch (error) {
        logger.warn({ stream: log, code: (error as { code?: string }).code }, 'could not list the spool\'s archive log; retrying at the next poll');
        continue;
      }
      const reached: ForwardTarget[] = [];
      for (const target of targets) {
        try {
          await this.#load(target, log);
          reached.push(target);
        } catch (error) {
          logger.warn({ stream: log, code: (error as { code?: string }).code }, 'could not list a forward target\'s archive log; retrying at the next poll');
        }
      }
      const notes = files.filter((entry) => entry.file === 'note');
      const onEvery = (size: number) => reached.length === targets.length && reached.every((target) => this.#copiedTo(target, log).has(`${size}.note`));
      // Read after the listing: every stream checkpoint these archive checkpoints include is in it.
      const fresh = notes.filter((entry) => !onEvery(entry.size) && !this.#needs.has(needKey(log, entry.size)));
      if (fresh.length > 0) {
        try {
          const newest = await newestStreamCheckpoints(spool);
          for (const entry of fresh) this.#needs.set(needKey(log, entry.size), newest);
        } catch (error) {
          logger.warn({ stream: log, code: (error as { code?: string }).code }, 'could not list the spool\'s stream checkpoints; retrying at the next poll');
          continue;
        }
      }
      for (const target of reached) {
        try {
          await this.#copyTo(spool, target, log, files, forwarded);
        } catch (error) {
          logger.warn({ stream: log, code: (error as { code?: string }).code }, 'could not copy the archive log to a forward target; retrying at the next poll');
        }
      }
      for (const entry of notes) if (onEvery(entry.size)) this.#needs.delete(needKey(log, entry.size));
    }
  }

  async #load(target: ForwardTarget, log: string): Promise<void> {
    const key = copiedKey(target, log);
    if (!this.#copied.has(key)) this.#copied.set(key, new Set((await listFiles(target.sink, log)).map((entry) => `${entry.size}.${entry.file}`)));
  }

  #copiedTo(target: ForwardTarget, log: string): Set<string> {
    const copied = this.#copied.get(copiedKey(target, log));
    if (!copied) throw new Error(`the archive log on ${target.name} was not listed`);
    return copied;
  }

  /** True when every stream checkpoint the archive checkpoint of `size` may include is on the target. */
  #ready(target: ForwardTarget, log: string, size: number, forwarded: ForwardedCheckpoint): boolean {
    const need = this.#needs.get(needKey(log, size));
    if (!need) return false;
    for (const [stream, checkpoint] of need) if (forwarded(target, stream) < checkpoint) return false;
    return true;
  }

  async #copyTo(spool: Sink, target: ForwardTarget, log: string, files: readonly FileEntry[], forwarded: ForwardedCheckpoint): Promise<void> {
    const copied = this.#copiedTo(target, log);
    for (const entry of files) {
      const name = `${entry.size}.${entry.file}`;
      if (copied.has(name)) continue;
      if (entry.file === 'note') {
        // In size order: a checkpoint that must wait holds back the later ones (they include it).
        if (!this.#ready(target, log, entry.size, forwarded)) return;
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
    }
  }
}

function copiedKey(target: ForwardTarget, log: string): string {
  return `${target.name}\u0000${log}`;
}

function needKey(log: string, size: number): string {
  return `${log}\u0000${size}`;
}
