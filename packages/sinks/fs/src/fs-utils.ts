import fs, { type Stats, constants } from 'node:fs';
import { type FileHandle, mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { NotRegularFileError } from '@offchannel/core';

/**
 * fsync a directory so that entries created or removed in it before the call are durable.
 * Calls on one directory are coalesced (group commit): a call made while an fsync of that
 * directory is running waits for the next one, which starts after it and serves every call made
 * meanwhile — so 64 blobs stored at once cost one directory fsync, not 64, and each call still
 * resolves only after an fsync that began after it was made. A failed fsync rejects every call
 * it served. While calls keep coming, the directory stays open between fsyncs: one open and one
 * close per burst instead of per fsync; after a failure it is opened again for the next.
 */
export function syncDirectory(dir: string): Promise<void> {
  let syncer = directorySyncers.get(dir);
  if (!syncer) {
    syncer = { waiting: [], running: false };
    directorySyncers.set(dir, syncer);
  }
  const { promise, resolve, reject } = Promise.withResolvers<undefined>();
  syncer.waiting.push({ resolve: () => { resolve(undefined); }, reject });
  if (!syncer.running) void runDirectorySyncs(dir, syncer);
  return promise;
}

interface DirectorySyncer {
  /** Calls the next fsync serves: every one was made before that fsync starts. */
  waiting: { resolve: () => void; reject: (error: unknown) => void }[];
  running: boolean;
}
const directorySyncers = new Map<string, DirectorySyncer>();

/** Serves `syncer.waiting` until it is empty; never rejects (errors go to the waiters). */
async function runDirectorySyncs(dir: string, syncer: DirectorySyncer): Promise<void> {
  syncer.running = true;
  while (syncer.waiting.length > 0) {
    let handle: FileHandle | undefined;
    try {
      handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
      for (;;) {
        // Taken just before the fsync starts: each of these calls was made before it.
        const served = syncer.waiting.splice(0);
        if (served.length === 0) break;
        try {
          await handle.sync();
        } catch (error) {
          for (const waiter of served) waiter.reject(error);
          break; // open the directory afresh for any later call
        }
        for (const waiter of served) waiter.resolve();
      }
    } catch (error) {
      // The open failed: no fsync ran for the calls waiting now.
      for (const waiter of syncer.waiting.splice(0)) waiter.reject(error);
    } finally {
      await handle?.close().catch(() => undefined);
    }
  }
  syncer.running = false;
  directorySyncers.delete(dir);
}

/** fsync a file's data and metadata. */
export async function syncFile(file: string): Promise<void> {
  const handle = await open(file, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** `mkdir -p` that fsyncs every directory it created (and its parent), so new paths survive a crash. */
export async function ensureDirectory(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode: 0o755 });
  if (first === undefined) return;
  let current = dir;
  const created: string[] = [];
  while (current.length >= first.length) {
    created.push(current);
    current = path.dirname(current);
  }
  for (const directory of [...created, path.dirname(first)]) await syncDirectory(directory);
}

/** Writes `bytes` to `file` completely at `position`. */
export async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset, position + offset);
    offset += bytesWritten;
  }
}

/**
 * The open flag that makes a write durable when it returns: `O_DSYNC` on Linux, 0 elsewhere
 * (then the caller follows the write with `datasync()`). Not on macOS: there libuv's
 * `fdatasync` is `fcntl(F_FULLFSYNC)`, which also flushes the drive's write cache, and
 * `O_DSYNC` does not — an acknowledged record could be lost in a power cut. Not on Windows:
 * no `O_DSYNC`.
 */
export function syncWriteFlag(platform: NodeJS.Platform = process.platform): number {
  return platform === 'linux' ? (constants.O_DSYNC ?? 0) : 0;
}

const DSYNC = syncWriteFlag();

/**
 * Creates `target` with exactly `bytes`, read-only, durably, never replacing an existing file:
 * stage in `tmpDir` (created 0444, written with `O_DSYNC`), hard-link into place (fails if
 * present), fsync the directory. Returns `false` (and leaves the existing file alone) if
 * `target` already exists.
 *
 * `O_DSYNC` makes each write return only once its data, and the metadata needed to read it
 * back, are on stable storage — what `write` then `fdatasync` give (POSIX "synchronized I/O
 * data integrity completion") in one call instead of two. Every blob is written this way, and
 * every call holds one of libuv's thread-pool threads while it waits for the disk: fewer calls
 * per file leave more threads waiting on the disk at once (docs/storage-format.md, "Blob writes").
 * The calls go through `node:fs` callbacks on a plain descriptor, not `FileHandle` promises:
 * the same system calls for less of the main thread's time (`pnpm bench:blobs`).
 */
export async function createReadOnlyFile(tmpDir: string, target: string, bytes: Uint8Array): Promise<boolean> {
  const { staged, fd } = await createStaged(tmpDir, path.basename(target));
  try {
    let offset = 0;
    while (offset < bytes.length) offset += await fsCall<number>((done) => { fs.write(fd, bytes, offset, bytes.length - offset, offset, done); });
    // Without O_DSYNC (every platform but Linux, see syncWriteFlag), sync explicitly.
    if (DSYNC === 0) await fsCall((done) => { fs.fdatasync(fd, done); });
  } catch (error) {
    await fsCall((done) => { fs.close(fd, done); }).catch(() => undefined);
    await fsCall((done) => { fs.unlink(staged, done); }).catch(() => undefined);
    throw error;
  }
  // The data is durable: the descriptor is closed while the file is linked into place (a link
  // needs no closed file), and the staged name removed while the directory is synced (tmp/ is
  // not archive content) — two waits on the thread pool instead of four.
  const [closed, linked] = await Promise.allSettled([fsCall((done) => { fs.close(fd, done); }), fsCall((done) => { fs.link(staged, target, done); })]);
  if (linked.status === 'rejected') {
    // tmp/ is not archive content (stale staged files are removed at open): a failed unlink
    // must not hide the answer that matters, e.g. EEXIST (the blob is there: check it).
    await fsCall((done) => { fs.unlink(staged, done); }).catch(() => undefined);
    if (closed.status === 'rejected') throw asError(closed.reason);
    if ((linked.reason as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw asError(linked.reason);
  }
  const [removed, synced] = await Promise.allSettled([fsCall((done) => { fs.unlink(staged, done); }), syncDirectory(path.dirname(target))]);
  // A failure after the link leaves a complete file under its name that is not known durable:
  // the caller's retry finds it (EEXIST), checks it and syncs it with its directory.
  for (const result of [closed, synced, removed]) if (result.status === 'rejected') throw asError(result.reason);
  return true;
}

/**
 * Staged names are `<target name>.<prefix><counter>`: a random prefix drawn once per process
 * (and again after a collision) and a counter, instead of random bytes per file. `O_EXCL` still
 * refuses a name that exists; a start removes staged files left by a crash whatever their name.
 */
let stagingPrefix = randomBytes(6).toString('hex');
let stagingCounter = 0;

async function createStaged(tmpDir: string, name: string): Promise<{ readonly staged: string; readonly fd: number }> {
  for (let attempt = 1; ; attempt++) {
    const staged = path.join(tmpDir, `${name}.${stagingPrefix}${(stagingCounter++).toString(36)}`);
    try {
      const fd = await fsCall<number>((done) => { fs.open(staged, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | DSYNC, 0o444, done); });
      return { staged, fd };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw error;
      stagingPrefix = randomBytes(6).toString('hex');
    }
  }
}

const asError = (reason: unknown): Error => (reason instanceof Error ? reason : new Error(String(reason)));

/** Runs a callback-style `node:fs` call as a promise. */
function fsCall<T = void>(call: (done: (error: NodeJS.ErrnoException | null, result?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    call((error, result) => {
      if (error) reject(error);
      else resolve(result as T);
    });
  });
}

/**
 * Opens an archive file for reading only if it is a regular file: a symbolic link is refused
 * (`O_NOFOLLOW`), and a FIFO or device is opened without blocking (`O_NONBLOCK`, which a
 * regular file ignores) and then refused, so a planted FIFO cannot hang a reader. `undefined`
 * if the file does not exist. Throws {@link NotRegularFileError} naming `name`.
 */
export async function openRegularFile(file: string, name = file, options: { readonly write?: boolean; readonly flags?: number } = {}): Promise<FileHandle | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, (options.write === true ? constants.O_RDWR : constants.O_RDONLY) | NOFOLLOW | NONBLOCK | (options.flags ?? 0));
  } catch (error) {
    if (isNotFound(error)) return undefined;
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') throw new NotRegularFileError(name, 'a symbolic link');
    throw error;
  }
  let info;
  try {
    info = await handle.stat();
  } catch (error) {
    await handle.close();
    throw error;
  }
  if (info.isFile()) return handle;
  await handle.close();
  throw new NotRegularFileError(name, describeFileType(info));
}

const NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const NONBLOCK = constants.O_NONBLOCK ?? 0;

function describeFileType(info: Stats): string {
  if (info.isFIFO()) return 'a FIFO (named pipe)';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device';
  if (info.isSocket()) return 'a socket';
  if (info.isDirectory()) return 'a directory';
  return 'not a regular file';
}

/** The bytes of a regular file, or `undefined` if it does not exist (see {@link openRegularFile}). */
export async function readIfExists(file: string, name = file): Promise<Buffer | undefined> {
  const handle = await openRegularFile(file, name);
  if (!handle) return undefined;
  try {
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Like `readFile`, but only for a regular file (see {@link openRegularFile}); ENOENT if missing. */
export async function readRegularFile(file: string, name = file): Promise<Buffer> {
  const bytes = await readIfExists(file, name);
  if (bytes) return bytes;
  throw Object.assign(new Error(`ENOENT: no such file, open '${file}'`), { code: 'ENOENT', path: file });
}

export function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'ENOENT';
}
