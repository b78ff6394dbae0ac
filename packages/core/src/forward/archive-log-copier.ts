/**
 * Internal: the forwarder's copy of the archive log(s) (`witness/archive-log.ts`) from the spool
 * to every target — per archive checkpoint, in size order: its tiles first (the full ones not yet
 * copied, the partial ones at its size), then its note, then the witnesses' cosigned copies as
 * they appear. A target holds an archive checkpoint only once it holds the tiles that prove it.
 * What a target holds is listed once per process; a target that is down is retried at the next poll.
 */
import type { Logger } from '../logger/logger.ts';
import { TILE_WIDTH, type TileId, tileCounts, tilePath } from '../merkle/tiles.ts';
import type { CheckpointFile, Sink } from '../sink/sink.ts';
import type { ForwardTarget } from './forwarder.ts';

type FileEntry = { readonly size: number; readonly file: CheckpointFile };

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

  async copy(spool: Sink, targets: readonly ForwardTarget[], logs: readonly string[], logger: Logger): Promise<void> {
    for (const log of logs) {
      let files: readonly FileEntry[];
      try {
        files = [...(await listFiles(spool, log))].sort((a, b) => a.size - b.size || (a.file === 'note' ? -1 : b.file === 'note' ? 1 : a.file < b.file ? -1 : 1));
      } catch (error) {
        logger.warn({ stream: log, code: (error as { code?: string }).code }, 'could not list the spool\'s archive log; retrying at the next poll');
        continue;
      }
      for (const target of targets) {
        try {
          await this.#copyTo(spool, target, log, files);
        } catch (error) {
          logger.warn({ stream: log, code: (error as { code?: string }).code }, 'could not copy the archive log to a forward target; retrying at the next poll');
        }
      }
    }
  }

  async #copyTo(spool: Sink, target: ForwardTarget, log: string, files: readonly FileEntry[]): Promise<void> {
    const key = `${target.name}\u0000${log}`;
    let copied = this.#copied.get(key);
    if (!copied) {
      copied = new Set((await listFiles(target.sink, log)).map((entry) => `${entry.size}.${entry.file}`));
      this.#copied.set(key, copied);
    }
    for (const entry of files) {
      const name = `${entry.size}.${entry.file}`;
      if (copied.has(name)) continue;
      if (entry.file === 'note') {
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
      if (!bytes) continue;
      await target.sink.putCheckpoint(log, entry.size, entry.file, bytes);
      copied.add(name);
    }
  }
}
