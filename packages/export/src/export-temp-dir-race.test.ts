/**
 * A working directory is never seen unlocked by another export's clean-up. Here that clean-up is
 * one in another PID namespace (no pid in a directory's name runs there), and it runs the instant
 * after every directory this export makes — before it is locked. Earlier, it removed the new
 * directory in that instant (judged by its pid), every time, and the export failed; now the
 * directory is made and locked under a name the clean-up ignores, then renamed.
 */
import { lstatSync, readdirSync, rmSync } from 'node:fs';
import type * as FsPromises from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { takeOsLock } from '@offchannel/core';
import { createExportTempDir } from './export-temp-dir.ts';

/** Another PID namespace's clean-up of `parent`: a directory is removed unless its lock is held. */
function foreignCleanUp(parent: string): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(parent)) {
    if (!name.startsWith('.offchannel-export-tmp-')) continue;
    const dir = path.join(parent, name);
    let locked = false;
    try {
      lstatSync(path.join(dir, 'lock'));
      locked = true;
    } catch {
      // no lock: judged by its pid, which does not run in that namespace
    }
    if (locked) {
      try {
        takeOsLock(path.join(dir, 'lock'), { retryForMs: 0 }).release();
      } catch {
        continue; // held by a running export
      }
    }
    rmSync(dir, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

const race = vi.hoisted(() => ({ parent: undefined as string | undefined, removed: [] as string[] }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const original = await importOriginal<typeof FsPromises>();
  const mkdir = async (...args: Parameters<typeof original.mkdir>): Promise<string | undefined> => {
    const made = await original.mkdir(...args);
    if (race.parent !== undefined && path.dirname(String(args[0])) === race.parent) race.removed.push(...foreignCleanUp(race.parent));
    return made;
  };
  return { ...original, default: { ...original, mkdir }, mkdir };
});

let parent: string;
beforeEach(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'offchannel-temp-race-'));
  race.parent = parent;
  race.removed = [];
});
afterEach(async () => {
  race.parent = undefined;
  await rm(parent, { recursive: true, force: true });
});

it('is never removed by another namespace’s clean-up between being made and being locked', async () => {
  const temp = await createExportTempDir(path.join(parent, 'production'), false);
  try {
    expect(race.removed).toEqual([]);
    // Locked and under the scanned name: the clean-up keeps it.
    expect(path.basename(temp.path)).toMatch(/^\.offchannel-export-tmp-/);
    expect(foreignCleanUp(parent)).toEqual([]);
    expect(readdirSync(parent)).toEqual([path.basename(temp.path)]);
  } finally {
    await temp.remove();
  }
  expect(readdirSync(parent)).toEqual([]);
}, 60_000);
