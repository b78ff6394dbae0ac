/**
 * Listing a stream's recent checkpoints without paying for its whole history. A stream signs a
 * checkpoint about once a minute for years and none is ever removed, so listing all of them
 * costs more every day (a readdir of 525,600 names takes about 0.6 s; on S3, 526 list requests).
 * These helpers pass `after` (`Sink.checkpoints`) and drop what is at or below it themselves,
 * so a sink that ignores the range (written before it existed) gives the same answer, only slower.
 */
import type { CheckpointFile, Sink } from './sink.ts';

export interface CheckpointFileEntry {
  readonly size: number;
  readonly file: CheckpointFile;
}

/** The first window below the top that {@link recentCheckpointFiles} looks in (sizes). */
const FIRST_WINDOW = 1024;

/**
 * `stream`'s checkpoint files of sizes above `after` (all with 0), by size then file. A sink
 * without `checkpointFiles` is listed by its notes only.
 */
export async function checkpointFilesAfter(sink: Sink, stream: string, after: number): Promise<readonly CheckpointFileEntry[]> {
  const range = after > 0 ? { after } : undefined;
  const files = sink.checkpointFiles ? await sink.checkpointFiles(stream, range) : (await sink.checkpoints(stream, range)).map((size) => ({ size, file: 'note' as const }));
  return after > 0 ? files.filter((entry) => entry.size > after) : files;
}

/** `stream`'s note sizes above `after` (all with 0), ascending. */
export async function checkpointsAfter(sink: Sink, stream: string, after: number): Promise<readonly number[]> {
  const sizes = await sink.checkpoints(stream, after > 0 ? { after } : undefined);
  return after > 0 ? sizes.filter((size) => size > after) : sizes;
}

/**
 * The checkpoint files of `stream` with sizes in (`after`, `top`], for the smallest window
 * below `top` that holds a note: windows of 1,024 sizes, then 16 times wider each time, until
 * one holds a note or reaches 0. On a sink that lists ranges the cost is that of the recent
 * checkpoints, not of the history. Every file in (`after`, `top`] is returned, so a caller
 * also learns which tokens and cosigned copies the recent notes have.
 */
export async function recentCheckpointFiles(sink: Sink, stream: string, top: number): Promise<{ readonly after: number; readonly files: readonly CheckpointFileEntry[] }> {
  for (let window = FIRST_WINDOW; ; window *= 16) {
    const after = Math.max(0, top - window);
    const listed = sink.checkpointFiles
      ? await sink.checkpointFiles(stream, after > 0 ? { after } : undefined)
      : (await sink.checkpoints(stream, after > 0 ? { after } : undefined)).map((size) => ({ size, file: 'note' as const }));
    // A sink that ignores the range listed everything: take it all, no second listing.
    const whole = after === 0 || listed.some((entry) => entry.size <= after);
    const files = listed.filter((entry) => entry.size <= top && (whole || entry.size > after));
    if (whole || files.some((entry) => entry.file === 'note')) return { after: whole ? 0 : after, files };
  }
}
