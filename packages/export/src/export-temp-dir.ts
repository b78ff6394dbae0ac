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
 * beside it, once its process is gone.
 */
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const PREFIX = '.offchannel-export-tmp-';
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
  const dir = path.join(parent, `${PREFIX}${HOST}-${process.pid}-${randomBytes(8).toString('hex')}`);
  await mkdir(dir, { mode: 0o700 });
  await chmod(dir, 0o700);
  active.add(dir);
  const removeNow = (): void => {
    active.delete(dir);
    rmSync(dir, { recursive: true, force: true });
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
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** `.offchannel-export-tmp-*` directories of this host whose process no longer runs. */
async function removeLeftovers(parent: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return; // the parent does not exist yet: nothing was left there
  }
  for (const name of names) {
    const match = new RegExp(`^${PREFIX.replace('.', '\\.')}([0-9a-f]{8})-(\\d+)-[0-9a-f]{16}$`).exec(name);
    if (!match || match[1] !== HOST) continue;
    const dir = path.join(parent, name);
    if (active.has(dir) || running(Number(match[2]))) continue;
    await rm(dir, { recursive: true, force: true });
  }
}

function running(pid: number): boolean {
  if (pid === process.pid) return false; // not one of ours (those are in `active`): a reused pid
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}
