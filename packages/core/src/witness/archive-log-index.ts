/**
 * Where the archive log remembers which stream checkpoints it already includes, so that its
 * start-up reads only the right edge of its tree and the stream checkpoints that are new —
 * not every entry ever appended (docs/witnessing.md, "the archive log").
 *
 * Per archive log (one per capture process: `archive-log` or a shard's), it holds the archive
 * checkpoint it is valid for (size and root) and, per stream, the largest checkpoint size that
 * checkpoint includes. A stream's checkpoints grow monotonically and are appended in that
 * order, so this one number per stream says which of its checkpoints are in the log.
 *
 * The index is derived data, like the recorder's key index: the archive log trusts it only when
 * its size and root are those of the newest archive checkpoint in the archive, and rebuilds it
 * from the archive otherwise. Losing it costs one full read of the archive log's entries,
 * never an entry left out or appended twice.
 */
import { openSqliteIndex } from '../state/open-sqlite-index.ts';

/** The archive checkpoint an index is valid for. */
export interface ArchiveLogIndexHead {
  readonly size: number;
  /** The checkpoint's root, hex. */
  readonly root: string;
}

/** The archive log's persistent memory of what it includes. Synchronous and small: one row per stream. */
export interface ArchiveLogIndex {
  /** The archive checkpoint `log`'s entries are recorded for, if any. */
  head(log: string): ArchiveLogIndexHead | undefined;
  /** Per stream, the largest checkpoint size `log` includes. */
  streams(log: string): Map<string, number>;
  /**
   * Records, in one transaction, that the archive checkpoint `head` of `log` includes these
   * stream checkpoints (the largest size per stream; smaller sizes already recorded are
   * raised, never lowered). With `replace`, everything recorded for `log` before is dropped.
   */
  record(log: string, head: ArchiveLogIndexHead, included: ReadonlyMap<string, number>, replace?: boolean): void;
  /** Releases the index. Idempotent. */
  close(): void;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS archive_log_heads (log TEXT PRIMARY KEY, size INTEGER NOT NULL, root TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS archive_log_streams (log TEXT NOT NULL, stream TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (log, stream)) WITHOUT ROWID;
`;

/**
 * An archive log index in one SQLite file (mode 0600, its folder created 0700), shared by the
 * capture processes of a host (each writes only its own log's rows). WAL with
 * `synchronous = NORMAL`: a crash may lose the newest record, and the archive log then finds
 * the index behind the archive and rebuilds it; the head and the streams move in one
 * transaction, so it cannot claim a head whose streams it lacks.
 */
export function openArchiveLogIndex(options: { readonly file: string }): ArchiveLogIndex {
  const { db, statements } = openSqliteIndex({
    file: options.file,
    code: 'ARCHIVE_LOG_INDEX_UNAVAILABLE',
    needs: 'the archive log index',
    title: 'the archive log index',
    schema: SCHEMA,
    statements: {
      readHead: 'SELECT size, root FROM archive_log_heads WHERE log = ?',
      readStreams: 'SELECT stream, size FROM archive_log_streams WHERE log = ?',
      writeHead: 'INSERT OR REPLACE INTO archive_log_heads (log, size, root) VALUES (?, ?, ?)',
      writeStream: 'INSERT INTO archive_log_streams (log, stream, size) VALUES (?, ?, ?) ON CONFLICT (log, stream) DO UPDATE SET size = MAX(size, excluded.size)',
      dropStreams: 'DELETE FROM archive_log_streams WHERE log = ?',
    },
  });
  const { readHead, readStreams, writeHead, writeStream, dropStreams } = statements;
  let open = true;
  return {
    head(log) {
      const row = readHead.get(log) as { size: number; root: string } | undefined;
      return row ? { size: row.size, root: row.root } : undefined;
    },
    streams(log) {
      const rows = readStreams.all(log) as { stream: string; size: number }[];
      return new Map(rows.map((row) => [row.stream, row.size]));
    },
    record(log, head, included, replace = false) {
      db.exec('BEGIN');
      try {
        if (replace) dropStreams.run(log);
        for (const [stream, size] of included) writeStream.run(log, stream, size);
        writeHead.run(log, head.size, head.root);
        db.exec('COMMIT');
      } catch (error) {
        db.exec('ROLLBACK');
        throw error;
      }
    },
    close() {
      if (!open) return;
      open = false;
      db.close();
    },
  };
}
