/**
 * The export's private working directory: the index (`index.sqlite`, the records' fields, and
 * `records.bin`, the stored bytes — plaintext — of every selected record) and the RSMF parts
 * being assembled. It lives beside `--out` — on the file system the
 * operator chose for the production, not in a shared `/tmp` — as
 * `.offchannel-export-tmp-<host>-<pid>-<random>`, mode 0700 (files in it 0600), and is removed:
 * when the export ends (success, error, or its abort signal), on process exit, and — unless the
 * caller handles interruption itself through an abort signal — on SIGINT / SIGTERM, after which
 * the signal's default action (termination) still happens. A directory
 * left by an export that was killed outright (SIGKILL, power loss) is removed by the next export
 * beside it: while an export runs, it holds a kernel lock on the directory's `lock` file
 * (`takeOsLock`), released however the process ends, so a directory whose lock can be taken
 * belongs to no running export. No process id is trusted: a reused pid cannot keep a dead
 * export's plaintext on disk, and an export in another PID namespace (a container sharing the
 * folder and the host name) is never mistaken for a dead one. A directory without a `lock` (left
 * by an earlier version) is judged by the pid in its name, as earlier versions did. A directory is
 * made and locked under a name the clean-up ignores (`.offchannel-export-new-…`) and only then
 * renamed to the name it scans, so no clean-up ever sees it unlocked: one that judged it by its
 * pid from another PID namespace would have removed it under the running export. An export killed
 * in that instant leaves an empty `.offchannel-export-new-…` directory (nothing is written to it
 * before the rename but its `lock`); the next export removes it once its lock can be taken, or —
 * killed before it took the lock — once it is a minute old (a younger one may be an export's that
 * is about to lock it; removing it then would only make that export make another).
 */
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type OsLock, OffchannelError, takeOsLock } from '@offchannel/core';

const PREFIX = '.offchannel-export-tmp-';
/** Where a directory is made and locked before it is renamed to `PREFIX…`: never scanned. */
const STAGING = '.offchannel-export-new-';
/** A staging directory without a lock is an abandoned one once it is this old (ms). */
const STAGING_GRACE_MS = 60_000;
/** The file in a working directory whose kernel lock its export holds while it runs. */
const LOCK = 'lock';
const SIGNALS = ['SIGINT', 'SIGTERM'] as const;
/** This host, so a directory on a shared file system is judged only by the host that made it. */
const HOST = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
/** Directories of exports running in this process. */
const active = new Set<string>();

export interface ExportTempDir {
  readonly path: string;
  /** Removes the directory (idempotent) and stops watching for signals. */
  remove(): Promise<void>;
}

/**
 * Removes leftovers of dead exports beside `out`, then creates this export's directory.
 * `signals`: also remove it on SIGINT / SIGTERM (and then terminate as Node would have).
 */
export async function createExportTempDir(out: string, signals: boolean): Promise<ExportTempDir> {
  const parent = path.dirname(out);
  await removeLeftovers(parent);
  const { dir, lock } = await lockedDir(parent);
  const removeNow = (): void => {
    active.delete(dir);
    rmSync(dir, { recursive: true, force: true });
    lock.release();
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    removeNow();
    stop();
    // Alone on this signal, we took Node's default (terminate) away by listening: give it back.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const stop = (): void => {
    for (const signal of SIGNALS) process.removeListener(signal, onSignal);
    process.removeListener('exit', removeNow);
  };
  if (signals) for (const signal of SIGNALS) process.on(signal, onSignal);
  process.on('exit', removeNow);
  return {
    path: dir,
    remove: async () => {
      stop();
      active.delete(dir);
      try {
        await rm(dir, { recursive: true, force: true });
      } finally {
        lock.release(); // after the removal: until then no other export judges the directory abandoned
      }
    },
  };
}

/**
 * Creates this export's directory (0700) under a name the clean-up ignores, locks it, and renames
 * it to the name the clean-up scans: from then on its lock says it is in use. A directory that
 * vanished in between (ENOENT: removed by hand, or the lock failed) is made again, three times.
 */
async function lockedDir(parent: string): Promise<{ dir: string; lock: OsLock }> {
  for (let attempt = 1; ; attempt++) {
    const name = `${HOST}-${process.pid}-${randomBytes(8).toString('hex')}`;
    const staging = path.join(parent, `${STAGING}${name}`);
    const dir = path.join(parent, `${PREFIX}${name}`);
    await mkdir(staging, { mode: 0o700 });
    let lock: OsLock | undefined;
    try {
      await chmod(staging, 0o700);
      lock = takeOsLock(path.join(staging, LOCK));
      active.add(dir);
      await rename(staging, dir);
      return { dir, lock };
    } catch (error) {
      active.delete(dir);
      await rm(staging, { recursive: true, force: true });
      lock?.release();
      const vanished = (error as { code?: string }).code === 'ENOENT' || OffchannelError.isInstance(error);
      if (attempt >= 3 || !vanished) throw error;
    }
  }
}

/**
 * `.offchannel-export-tmp-*` directories of this host that no running export holds, and
 * `.offchannel-export-new-*` ones an export was killed while making (see the top of this file).
 */
async function removeLeftovers(parent: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return; // the parent does not exist yet: nothing was left there
  }
  for (const name of names) {
    const staging = new RegExp(`^${STAGING.replace('.', '\\.')}([0-9a-f]{8})-\\d+-[0-9a-f]{16}$`).exec(name);
    if (staging) {
      if (staging[1] === HOST) await removeStaging(path.join(parent, name));
      continue;
    }
    const match = new RegExp(`^${PREFIX.replace('.', '\\.')}([0-9a-f]{8})-(\\d+)-[0-9a-f]{16}$`).exec(name);
    if (!match || match[1] !== HOST) continue;
    const dir = path.join(parent, name);
    if (active.has(dir)) continue;
    if (await exists(path.join(dir, LOCK))) {
      let lock: OsLock;
      try {
        lock = takeOsLock(path.join(dir, LOCK));
      } catch {
        continue; // held: a running export's (or not a lock: not ours to judge)
      }
      try {
        await rm(dir, { recursive: true, force: true });
      } finally {
        lock.release();
      }
    } else if (!running(Number(match[2]))) {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** A staging directory whose lock no export holds, or that never got one and is a minute old. */
async function removeStaging(dir: string): Promise<void> {
  const made = await lstat(dir).catch(() => undefined);
  if (!made?.isDirectory()) return; // a link or anything else in its place: never followed
  let lock: OsLock | undefined;
  if (await exists(path.join(dir, LOCK))) {
    try {
      lock = takeOsLock(path.join(dir, LOCK));
    } catch {
      return; // held: an export is making it right now
    }
  } else if (Date.now() - made.mtimeMs < STAGING_GRACE_MS) {
    return;
  }
  try {
    await rm(dir, { recursive: true, force: true });
  } finally {
    lock?.release();
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch {
    return false;
  }
}

/** Only for a directory without a lock (see the top of this file). */
function running(pid: number): boolean {
  if (pid === process.pid) return false; // not one of ours (those are in `active`): a reused pid
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}
