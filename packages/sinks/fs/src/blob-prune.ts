/**
 * Blob pruning of a spool (`FsSink.pruneBlobs`; docs/storage-format.md, "Spool pruning").
 *
 * A blob leaves the spool only when (a) every forward target holds it (the caller's `held`,
 * asked only for blobs that pass b and c), (b) no record still in the spool — any stream's
 * unpruned segments, active tails included — names it, and (c) it was written before
 * `modifiedBefore`. Blobs are content-addressed and shared across streams, and a capture may
 * store or name the same content while a pass runs. What makes a record naming a blob the spool
 * lacks impossible:
 *
 * 1. The candidates are MARKED before the records are scanned, and forgotten as "known durable"
 *    (the sink's fast path). `putBlob` of a marked blob waits for the pass, then stores it again
 *    (never the fast path); a put already in flight keeps its blob (never unlinked).
 * 2. After marking, one no-op turn of every open stream's writer queue (a barrier): every append
 *    that checked its blobs before the mark is on disk before the scan reads the segments.
 * 3. Once this sink has pruned, every append checks the blobs its records name: one marked waits
 *    for the pass; one not known durable is looked up on disk, and if it is gone the append is
 *    refused (`BLOB_MISSING`, retryable, nothing written) — the capture fails and its retry stores
 *    the blob again. This covers a `putBlob` that resolved before the mark whose record comes after.
 *
 * Across processes: a pass runs only while no other writable sink has the spool open. Every
 * writable sink holds a shared SQLite lock on `locks/spool-writers.lock` for as long as it is
 * open; a pass swaps its own for the exclusive lock (refused while any other sink holds its shared
 * one: the pass is skipped), and a sink opened meanwhile waits for the pass to end. Every change
 * of that lock (take it at open, swap it for the exclusive one, take the shared one back) happens
 * while holding a second, exclusive lock, `locks/spool-writers.gate`, held only for the swap: a
 * sink is never without its lock at a moment another can become sole.
 *
 * Cost: the blob directory is listed and each blob lstat'd, then the spool's segments are read
 * once per 100,000 candidates — all bounded by what the spool holds, not by the archive. Memory:
 * the candidates of one chunk (≤ 100,000 names, ~10 MB) and a 1 MiB read buffer.
 */
import { lstat, opendir, readdir, unlink } from 'node:fs/promises';
import type * as Sqlite from 'node:sqlite';
import { OffchannelError, blobNamesIn, isSha256Hex, isStreamName } from '@offchannel/core';
import type { ArchiveLayout } from './archive-layout.ts';
import { ensureDirectory, isNotFound, openRegularFile, syncDirectory } from './fs-utils.ts';
import { readPrunedPrefix } from './pruned-prefix.ts';
import { listSegments } from './segments.ts';
import { loadSqlite } from './stream-lock.ts';

/** What {@link FsSink.pruneBlobs} may remove (see `PrunableSpool.pruneBlobs` in core). */
export interface BlobPruneRequest {
  /** Only blobs written before this time may go. */
  readonly modifiedBefore: Date;
  /** Whether every forward target holds this blob (asked only for blobs no spool record names). */
  readonly held: (sha256: string, size: number) => Promise<boolean>;
}

export interface BlobPruneResult {
  /** Blobs and bytes removed by this call. */
  readonly blobs: number;
  readonly bytes: number;
  /** Set when nothing was tried because another writable sink has the spool open. */
  readonly skipped?: 'other-writer';
}

/** What the pass needs from the sink. */
export interface BlobPruneHost {
  readonly layout: ArchiveLayout;
  /** Forgets that the sink stored `sha256` durably (its putBlob fast path). */
  forgetDurable(sha256: string): void;
  /** Resolves once every append queued on an open stream before the call has finished. */
  barrier(): Promise<void>;
  assertOpen(): void;
}

/** Targets asked about this many blobs at once (S3 HEAD requests). */
const HELD_AT_ONCE = 16;
/** Candidates checked per scan of the spool's records. */
const CHUNK = 100_000;
const SHA_MEMBER = Buffer.from('"sha256":"');
const READ_CHUNK = 1024 * 1024;
const PRESENCE_FILE = 'spool-writers.lock';
/** Held exclusively, briefly, around every change of a sink's presence lock. */
const GATE_FILE = 'spool-writers.gate';
const SQLITE_BUSY = 5;
/** Blobs handed out again remembered per sink (~10 MB); a pass forgets those older than its cutoff. */
const HANDED_OUT_MAX = 100_000;

/** The in-process side: marks, puts in flight, the append check. One per writable sink. */
export class BlobPruneGuard {
  /** Set once this sink started a pass: from then on appends check the blobs they name. */
  private active = false;
  private pass: { readonly marked: Set<string>; readonly done: Promise<void> } | undefined;
  /** Puts in flight past the mark check, per blob. */
  private readonly putting = new Map<string, number>();
  /**
   * When each blob that was already stored was last handed out again by `putBlob` (its file's
   * mtime is older): the caller may name it by reference (`capture({ blob })`) after a pass, so
   * a pass treats this time as the blob's age. Oldest first; at most {@link HANDED_OUT_MAX}.
   */
  private readonly handedOut = new Map<string, number>();
  private running: Promise<unknown> | undefined;
  /** Candidates per scan of the records (a test makes it small to exercise several). */
  private readonly chunk: number;

  constructor(chunk = CHUNK) {
    this.chunk = chunk;
  }

  /** For `putBlob`: a promise to wait on (then put again) when `sha256` is being pruned. */
  beforePut(sha256: string): Promise<void> | undefined {
    return this.pass?.marked.has(sha256) === true ? this.pass.done : undefined;
  }

  /** For `putBlob`, when the blob was already stored: it counts as written `now` (ms). */
  handOut(sha256: string, now: number): void {
    this.handedOut.delete(sha256);
    if (this.handedOut.size >= HANDED_OUT_MAX) {
      for (const oldest of this.handedOut.keys()) {
        this.handedOut.delete(oldest);
        break;
      }
    }
    this.handedOut.set(sha256, now);
  }

  /** For `putBlob`'s slow path: while it runs, the blob is never unlinked. */
  track<T>(sha256: string, put: Promise<T>): Promise<T> {
    this.putting.set(sha256, (this.putting.get(sha256) ?? 0) + 1);
    const settle = () => {
      const left = (this.putting.get(sha256) ?? 1) - 1;
      if (left === 0) this.putting.delete(sha256);
      else this.putting.set(sha256, left);
    };
    return put.finally(settle);
  }

  /**
   * For `appendBatch`, inside the stream's writer turn: `undefined` when the records may be
   * written now, or a promise that resolves when they may, or rejects with `BLOB_MISSING`.
   */
  beforeAppend(records: readonly Uint8Array[], known: (sha256: string) => boolean, present: (sha256: string) => Promise<boolean>): Promise<void> | undefined {
    if (!this.active) return undefined;
    let unsure = false;
    for (const record of records) {
      for (const sha256 of shaMembers(record)) {
        if (!known(sha256) || this.pass?.marked.has(sha256) === true) unsure = true;
      }
    }
    if (!unsure) return undefined;
    return this.checkAppend(records, present);
  }

  private async checkAppend(records: readonly Uint8Array[], present: (sha256: string) => Promise<boolean>): Promise<void> {
    const names = new Set<string>();
    for (const record of records) for (const sha256 of blobNamesIn(record)) names.add(sha256);
    for (const sha256 of names) {
      // Never wait for the pass here: this runs inside the writer's turn, and the pass waits for
      // that turn (its barrier) before it ends. Refuse instead; the retry's put waits for the pass.
      if (this.pass?.marked.has(sha256) === true) {
        throw new OffchannelError('BLOB_MISSING', `blob ${sha256} named by a record is being pruned from the spool; nothing was written — retry the capture (it stores the blob again).`, { disposition: 'retryable', logSafe: true });
      }
      if (!(await present(sha256))) {
        throw new OffchannelError('BLOB_MISSING', `blob ${sha256} named by a record was pruned from the spool after it was stored; nothing was written — retry the capture (it stores the blob again).`, { disposition: 'retryable', logSafe: true });
      }
    }
  }

  /** Runs one pass at a time; see the file comment. */
  prune(host: BlobPruneHost, presence: SpoolPresence, request: BlobPruneRequest): Promise<BlobPruneResult> {
    const run = (this.running ?? Promise.resolve()).then(
      () => this.runPass(host, presence, request),
      () => this.runPass(host, presence, request),
    );
    this.running = run.catch(() => undefined);
    return run;
  }

  /** Resolves when no pass is running. */
  async idle(): Promise<void> {
    await this.running;
  }

  private async runPass(host: BlobPruneHost, presence: SpoolPresence, request: BlobPruneRequest): Promise<BlobPruneResult> {
    host.assertOpen();
    if (!(await presence.becomeSole())) return { blobs: 0, bytes: 0, skipped: 'other-writer' };
    let blobs = 0;
    let bytes = 0;
    try {
      this.active = true;
      const { layout } = host;
      const cutoff = request.modifiedBefore.getTime();
      for (const [sha256, at] of this.handedOut) if (at < cutoff) this.handedOut.delete(sha256);
      for await (const chunk of candidateChunks(layout.blobsDir, this.chunk)) {
        const candidates = new Map<string, number>();
        for (const name of chunk) {
          const info = await lstat(layout.blob(name)).catch(() => undefined);
          if (info?.isFile() && info.mtimeMs < cutoff) candidates.set(name, info.size);
        }
        if (candidates.size === 0) continue;
        let finish = (): void => undefined;
        const done = new Promise<void>((resolve) => {
          finish = resolve;
        });
        const marked = new Set(candidates.keys());
        this.pass = { marked, done };
        try {
          for (const sha256 of marked) host.forgetDurable(sha256);
          await host.barrier();
          await forgetNamed(host, candidates);
          for (const sha256 of marked) if (!candidates.has(sha256)) marked.delete(sha256);
          let removed = false;
          const entries = [...candidates];
          for (let at = 0; at < entries.length; at += HELD_AT_ONCE) {
            host.assertOpen();
            const batch = entries.slice(at, at + HELD_AT_ONCE);
            const answers = await Promise.all(batch.map(([sha256, size]) => request.held(sha256, size)));
            for (const [index, [sha256, size]] of batch.entries()) {
              // A put of it still writing, or handed out again since the cutoff: someone may
              // be about to name it.
              if (answers[index] !== true || this.putting.has(sha256) || (this.handedOut.get(sha256) ?? -Infinity) >= cutoff) continue;
              await unlink(layout.blob(sha256)).catch((error: unknown) => {
                if (!isNotFound(error)) throw error;
              });
              host.forgetDurable(sha256);
              removed = true;
              blobs++;
              bytes += size;
            }
          }
          if (removed) await syncDirectory(layout.blobsDir);
        } finally {
          this.pass = undefined;
          finish();
        }
      }
    } finally {
      await presence.share();
    }
    return { blobs, bytes };
  }
}

/**
 * The blob names in `dir`, read as a stream, in chunks of at most `size`: memory stays
 * bounded whatever the directory holds. (Entries removed meanwhile are never read twice.)
 */
async function* candidateChunks(dir: string, size: number): AsyncGenerator<string[]> {
  let handle;
  try {
    handle = await opendir(dir, { bufferSize: 256 });
  } catch (error) {
    if (isNotFound(error)) return;
    throw error;
  }
  let chunk: string[] = [];
  for await (const entry of handle) {
    if (!isSha256Hex(entry.name)) continue;
    chunk.push(entry.name);
    if (chunk.length >= size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

/** Removes from `candidates` every blob a record still in the spool may name (any stream). */
async function forgetNamed(host: BlobPruneHost, candidates: Map<string, number>): Promise<void> {
  const { layout } = host;
  const streams = (await readdir(layout.streamsDir, { withFileTypes: true }).catch((error: unknown) => {
    if (isNotFound(error)) return [];
    throw error;
  })).filter((entry) => entry.isDirectory() && isStreamName(entry.name));
  for (const { name: stream } of streams) {
    // A damaged prefix file: keep every segment's blobs (what verify would check).
    const pruned = (await readPrunedPrefix(layout, stream).catch(() => undefined))?.throughSeq ?? 0;
    for (const segment of await listSegments(layout, stream)) {
      if (segment.firstSeq <= pruned) continue;
      await forgetNamedIn(host, segment.path, candidates);
      if (candidates.size === 0) return;
    }
  }
}

/**
 * Reads one segment in 1 MiB pieces and drops every candidate it names. A byte search for
 * `"sha256":"` — every blob reference has that member — over-approximates the records' blob
 * references (it also finds other `sha256` members), which only keeps more.
 */
async function forgetNamedIn(host: BlobPruneHost, file: string, candidates: Map<string, number>): Promise<void> {
  const handle = await openRegularFile(file, host.layout.name(file));
  if (!handle) return;
  try {
    const overlap = SHA_MEMBER.length + 64;
    const buffer = Buffer.allocUnsafe(READ_CHUNK + overlap);
    let carried = 0;
    let position = 0;
    for (;;) {
      host.assertOpen();
      const { bytesRead } = await handle.read(buffer, carried, READ_CHUNK, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      const view = buffer.subarray(0, carried + bytesRead);
      for (const sha256 of shaMembers(view)) candidates.delete(sha256);
      // Keep the tail: a member cut by the piece boundary is found in the next piece.
      carried = Math.min(overlap, view.length);
      view.copy(buffer, 0, view.length - carried);
    }
  } finally {
    await handle.close();
  }
}

/** Every 64-hex value of a `"sha256":"…"` member in `bytes` (a fast, over-approximating search). */
export function* shaMembers(bytes: Uint8Array): Generator<string> {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = buffer.indexOf(SHA_MEMBER); at !== -1; at = buffer.indexOf(SHA_MEMBER, at + 1)) {
    const start = at + SHA_MEMBER.length;
    if (start + 65 > buffer.length || buffer[start + 64] !== 0x22) continue;
    const value = buffer.toString('latin1', start, start + 64);
    if (isSha256Hex(value)) yield value;
  }
}

/**
 * A writable sink's presence on a spool: a shared SQLite lock (POSIX advisory lock, released by
 * the kernel when the process dies) on `locks/spool-writers.lock`, held while the sink is open.
 */
export class SpoolPresence {
  private db: Sqlite.DatabaseSync | undefined;
  private readonly file: string;
  private readonly gateFile: string;

  private constructor(file: string, gateFile: string) {
    this.file = file;
    this.gateFile = gateFile;
  }

  /** Takes the shared lock, waiting (up to `waitMs`) while another sink's blob pass holds it exclusively. */
  static async open(layout: ArchiveLayout, waitMs = 10 * 60_000): Promise<SpoolPresence> {
    await ensureDirectory(layout.locksDir);
    const presence = new SpoolPresence(`${layout.locksDir}/${PRESENCE_FILE}`, `${layout.locksDir}/${GATE_FILE}`);
    await presence.share(waitMs);
    return presence;
  }

  /** Swaps the shared lock for the exclusive one; false (shared again) while another sink is open. */
  async becomeSole(): Promise<boolean> {
    return this.gated((Database) => {
      this.release();
      const db = new Database(this.file, { timeout: 0 });
      try {
        db.exec('BEGIN EXCLUSIVE');
        this.db = db;
        return true;
      } catch (error) {
        db.close();
        // Nobody can hold it exclusively now (that takes the gate we hold): shared again at once.
        this.db = this.tryShared(Database);
        if (isBusy(error) && this.db) return false;
        throw error;
      }
    });
  }

  /** Holds the shared lock again (at open, or after {@link becomeSole}), waiting while another pass runs. */
  async share(waitMs = 10 * 60_000): Promise<void> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      // The gate is released between tries: the pass being waited for needs it to end.
      const held = await this.gated((Database) => {
        this.release();
        this.db = this.tryShared(Database);
        return this.db !== undefined;
      }, deadline);
      if (held) return;
      if (Date.now() > deadline) throw new OffchannelError('SINK_CONFLICT', 'another process has been pruning blobs from this spool for too long; check for a stuck capture process, then open the spool again.', { disposition: 'retryable', logSafe: true });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  release(): void {
    this.db?.close();
    this.db = undefined;
  }

  /** The shared lock on a new connection, or undefined while another holds it exclusively. */
  private tryShared(Database: typeof Sqlite.DatabaseSync): Sqlite.DatabaseSync | undefined {
    const db = new Database(this.file, { timeout: 0 });
    try {
      db.exec('BEGIN');
      db.prepare('SELECT count(*) FROM sqlite_master').get();
      return db;
    } catch (error) {
      db.close();
      if (isBusy(error)) return undefined;
      throw error;
    }
  }

  /** Runs `swap` holding the gate exclusively (held for microseconds: retried every 5 ms). */
  private async gated<T>(swap: (Database: typeof Sqlite.DatabaseSync) => T, deadline = Date.now() + 10 * 60_000): Promise<T> {
    const { DatabaseSync: Database } = await loadSqlite();
    for (;;) {
      const gate = new Database(this.gateFile, { timeout: 0 });
      try {
        gate.exec('BEGIN EXCLUSIVE');
      } catch (error) {
        gate.close();
        if (!isBusy(error)) throw error;
        if (Date.now() > deadline) throw new OffchannelError('SINK_CONFLICT', `${GATE_FILE} has been held for too long by another process; check for a stuck capture process, then open the spool again.`, { disposition: 'retryable', logSafe: true });
        await new Promise((resolve) => setTimeout(resolve, 5));
        continue;
      }
      try {
        return swap(Database);
      } finally {
        gate.close();
      }
    }
  }
}

function isBusy(error: unknown): boolean {
  return (error as { errcode?: unknown }).errcode === SQLITE_BUSY;
}
