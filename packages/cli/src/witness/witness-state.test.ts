/**
 * The witness's start-up reads the journal after its snapshot, not the whole journal: real
 * files, real journals as the previous version wrote them, real crashes (a child process killed
 * while it rewrites the snapshot).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, constants, openSync, rmSync, writeFileSync } from 'node:fs';
import { appendFile, cp, mkdir, mkdtemp, open, readFile, rm, rmdir, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cosignerFromSeed } from '@offchannel/core';
import { mkfifo } from '@offchannel/core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { journalWindows } from './witness-journal.ts';
import { WitnessState, originId } from './witness-state.ts';
import { SnapshotKey, formatSnapshot, readSnapshot as readSnapshotWith } from './witness-snapshot.ts';

const WITNESS = cosignerFromSeed('witness.example/w1', new Uint8Array(32).fill(2));
const SNAPSHOT_KEY = SnapshotKey.fromCosigner(WITNESS);
const readSnapshot = async (file: string): ReturnType<typeof readSnapshotWith> => readSnapshotWith(file, SNAPSHOT_KEY);

const dirs: string[] = [];
const states: WitnessState[] = [];
afterEach(async () => {
  for (const state of states.splice(0)) state.close();
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-witness-state-'));
  dirs.push(dir);
  return dir;
}
async function openState(dir: string, journal?: string): Promise<WitnessState> {
  for (const state of states.splice(0)) state.close();
  const state = await WitnessState.open(dir, { key: SNAPSHOT_KEY, journal });
  states.push(state);
  return state;
}

const origin = (log: number): string => `archive.example/offchannel/demo:s${log}`;
const root = (log: number, size: number): Uint8Array => createHash('sha256').update(`${log}:${size}`).digest();
const line = (log: number, size: number): string => `${originId(origin(log))} ${size} ${Buffer.from(root(log, size)).toString('base64')}\n`;

/**
 * A journal as the previous version wrote it: `entries` lines over `logs` logs, each log's
 * size growing by one per line. Returns each log's final size.
 */
async function writeJournal(file: string, entries: number, logs: number): Promise<number[]> {
  const sizes = Array.from({ length: logs }, () => 0);
  const handle = await open(file, 'w', 0o600);
  try {
    for (let start = 0; start < entries; start += 10_000) {
      let text = '';
      for (let entry = start; entry < Math.min(entries, start + 10_000); entry++) {
        const log = entry % logs;
        sizes[log] = (sizes[log] ?? 0) + 1;
        text += line(log, sizes[log]);
      }
      await handle.write(text);
    }
  } finally {
    await handle.close();
  }
  return sizes;
}

function expectHeads(state: WitnessState, sizes: readonly number[]): void {
  expect(state.logCount).toBe(sizes.length);
  for (const [log, size] of sizes.entries()) {
    const head = state.head(origin(log));
    expect([log, head?.size, Buffer.from(head?.root ?? []).toString('hex')]).toEqual([log, size, Buffer.from(root(log, size)).toString('hex')]);
  }
}

/**
 * Overwrites the first byte of the journal line that starts after `near` with a character no
 * line may hold; returns the line's offset.
 */
async function damageLineAfter(journal: string, near: number): Promise<number> {
  const at = (await readFile(journal)).indexOf(0x0a, near) + 1;
  const handle = await open(journal, 'r+');
  try {
    await handle.write('X', at);
  } finally {
    await handle.close();
  }
  return at;
}

describe('witness start-up reads only the journal after its snapshot', () => {
  it('a previous version\'s folder (journal only) is read whole once and gets a snapshot; later starts read only the tail and never touch the lines it covers', async () => {
    const dir = await tempDir();
    const journal = path.join(dir, 'journal');
    const sizes = await writeJournal(journal, 20_000, 50);
    const length = (await stat(journal)).size;

    let state = await openState(dir);
    expect(state.startup).toEqual({ snapshot: 'none', journalBytesRead: length });
    expectHeads(state, sizes);
    const snapshot = await readSnapshot(path.join(dir, 'journal.snapshot'));
    expect(snapshot).toMatchObject({ offset: length });

    // Grow three logs through the witness itself, then restart.
    let tail = 0;
    for (const log of [3, 7, 3]) {
      sizes[log] = (sizes[log] ?? 0) + 1;
      tail += line(log, sizes[log]).length;
      await state.advance({ origin: origin(log), size: sizes[log], root: root(log, sizes[log]) });
    }
    state = await openState(dir);
    expect(state.startup).toEqual({ snapshot: 'used', journalBytesRead: tail });
    expectHeads(state, sizes);

    // A line in the middle of the journal is covered by the snapshot (and outside the 4 KiB it
    // checks at each end of its prefix): damaging it does not stop the start, which never reads it.
    const undamaged = await readFile(journal);
    const damaged = await damageLineAfter(journal, Math.floor(length / 2));
    state = await openState(dir);
    expect(state.startup).toEqual({ snapshot: 'used', journalBytesRead: 0 });
    expectHeads(state, sizes);

    // A whole read asked for checks every line: the damaged one stops the witness, snapshot kept.
    state.close();
    await expect(WitnessState.open(dir, { key: SNAPSHOT_KEY, readWholeJournal: true })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringContaining(`line at byte ${damaged} is damaged`) as unknown });
    await writeFile(journal, undamaged);
    // Restored, the whole read passes; the snapshot is ignored for reading but stays a lower bound.
    state = await WitnessState.open(dir, { key: SNAPSHOT_KEY, readWholeJournal: true });
    states.push(state);
    expect(state.startup).toMatchObject({ snapshot: 'ignored', journalBytesRead: (await stat(journal)).size });
    expectHeads(state, sizes);
    expect(await damageLineAfter(journal, Math.floor(length / 2))).toBe(damaged);

    // Without the snapshot the whole journal is read, and the damaged line stops the witness.
    state.close();
    await rm(path.join(dir, 'journal.snapshot'));
    await expect(WitnessState.open(dir, { key: SNAPSHOT_KEY })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringContaining(`line at byte ${damaged} is damaged`) as unknown });
  });

  it('a snapshot that does not match its journal (compacted, or a line within its prefix replaced) is ignored: the journal is read whole', async () => {
    const dir = await tempDir();
    const journal = path.join(dir, 'journal');
    const sizes = await writeJournal(journal, 5_000, 20);
    await openState(dir);

    // Compaction as docs/witnessing.md shows it: each log's last line, in the journal's order.
    const lines = (await readFile(journal, 'utf8')).trimEnd().split('\n');
    const last = new Map(lines.map((text) => [text.split(' ')[0], text]));
    const compacted = `${[...last.values()].join('\n')}\n`;
    await writeFile(journal, compacted);
    let state = await openState(dir);
    expect(state.startup).toMatchObject({ snapshot: 'mismatch', journalBytesRead: compacted.length, reason: expect.stringMatching(/shorter/) as unknown });
    expectHeads(state, sizes);
    expect(await readSnapshot(path.join(dir, 'journal.snapshot'))).toMatchObject({ offset: compacted.length });

    // Same length, one early line's root changed to another well-formed root: the prefix check
    // catches it, and the full read checks every line again.
    state.close();
    const full = await writeJournal(journal, 5_000, 20);
    await openState(dir);
    const text = await readFile(journal, 'utf8');
    const altered = text.replace(line(0, 1), line(0, 1).replace(/ \S+\n$/, ` ${Buffer.alloc(32, 7).toString('base64')}\n`));
    expect(altered.length).toBe(text.length);
    await writeFile(journal, altered);
    state = await openState(dir);
    expect(state.startup).toMatchObject({ snapshot: 'mismatch', journalBytesRead: altered.length, reason: expect.stringMatching(/differs/) as unknown });
    expectHeads(state, full);
  });

  it('a journal restored from an older copy no longer rolls a log back while the snapshot is kept', async () => {
    const dir = await tempDir();
    const state = await openState(dir);
    await state.advance({ origin: origin(1), size: 5, root: root(1, 5) });
    const olderJournal = await readFile(path.join(dir, 'journal'));
    const olderLog = await readFile(path.join(dir, 'logs', originId(origin(1))));
    await state.advance({ origin: origin(1), size: 10, root: root(1, 10) });
    await openState(dir); // the restart writes the snapshot of both lines
    await writeFile(path.join(dir, 'journal'), olderJournal);
    await writeFile(path.join(dir, 'logs', originId(origin(1))), olderLog);
    const restored = await openState(dir);
    expect(restored.startup.snapshot).toBe('mismatch');
    expect(restored.head(origin(1))?.size).toBe(10);
  });

  it('cuts a torn last line after the snapshot, and refuses a damaged one, a line with a second root at a marked size', async () => {
    const dir = await tempDir();
    const journal = path.join(dir, 'journal');
    const sizes = await writeJournal(journal, 1_000, 10);
    await openState(dir);
    const intact = await readFile(journal, 'utf8');
    await appendFile(journal, line(4, 500).slice(0, 70));
    let state = await openState(dir);
    expect(state.startup).toEqual({ snapshot: 'used', journalBytesRead: 70 });
    expectHeads(state, sizes);
    expect(await readFile(journal, 'utf8')).toBe(intact);

    state.close();
    await appendFile(journal, `${line(4, 500).slice(0, 70)}\n`);
    await expect(WitnessState.open(dir, { key: SNAPSHOT_KEY })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringMatching(/line at byte \d+ is damaged/) as unknown });
    await writeFile(journal, intact);
    // A second root for log 4 at its marked size, after the snapshot: a fork in the journal.
    await appendFile(journal, line(4, sizes[4] ?? 0).replace(/ \S+\n$/, ` ${Buffer.alloc(32, 7).toString('base64')}\n`));
    await expect(WitnessState.open(dir, { key: SNAPSHOT_KEY })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringMatching(/two roots for one log/) as unknown });
    await writeFile(journal, intact);
    state = await openState(dir);
    expectHeads(state, sizes);
  });

  it('a damaged snapshot or a leftover temporary file is ignored; the journal is read whole and the snapshot replaced', async () => {
    const dir = await tempDir();
    const journal = path.join(dir, 'journal');
    const sizes = await writeJournal(journal, 2_000, 10);
    await openState(dir);
    const file = path.join(dir, 'journal.snapshot');
    const good = await readFile(file);
    for (const bad of [good.subarray(0, good.length - 30), Buffer.concat([good.subarray(0, 200), Buffer.from('x'), good.subarray(201)]), Buffer.alloc(0)]) {
      await writeFile(file, bad);
      await writeFile(`${file}.tmp`, good.subarray(0, 100));
      const state = await openState(dir);
      expect(state.startup).toMatchObject({ snapshot: 'unusable', journalBytesRead: (await stat(journal)).size });
      expectHeads(state, sizes);
      expect(await readFile(file)).toEqual(good);
    }
  });

  it('concurrent advances share journal writes; a snapshot written meanwhile covers exactly its prefix', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    let state = await openState(dir);
    // 1,200 logs × ~127 bytes: the journal passes 64 KiB while writes are still in flight.
    const sizes = Array.from({ length: 1_200 }, (_, log) => 1 + (log % 3));
    await Promise.all(sizes.map(async (size, log) => state.advance({ origin: origin(log), size, root: root(log, size) })));
    const snapshot = await readSnapshot(path.join(dir, 'journal.snapshot'));
    if (snapshot === undefined || 'problem' in snapshot) throw new Error(`no usable snapshot: ${JSON.stringify(snapshot)}`);
    const { offset } = snapshot;
    expect(offset).toBeGreaterThan(0);
    const whole = await readFile(path.join(dir, 'journal'), 'latin1');
    const text = whole.slice(0, offset);
    expect(text.endsWith('\n')).toBe(true);
    expect([...snapshot.marks.keys()].sort()).toEqual(text.trimEnd().split('\n').map((entry) => entry.split(' ')[0]).sort());
    state = await openState(dir);
    expect(state.startup).toEqual({ snapshot: 'used', journalBytesRead: whole.length - offset });
    expectHeads(state, sizes);
  });
});

describe('crashes and append-only journals', () => {
  const snapshotModule = fileURLToPath(new URL('./witness-snapshot.ts', import.meta.url));
  const packageDir = fileURLToPath(new URL('../..', import.meta.url));

  it('a process killed while it replaces the snapshot with a different one leaves a state that starts with the right heads', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const journal = path.join(dir, 'journal');
    const sizes = await writeJournal(journal, 40_000, 4_000);
    (await openState(dir)).close();
    const full = await readSnapshot(path.join(dir, 'journal.snapshot'));
    if (full === undefined || 'problem' in full) throw new Error('no snapshot');
    // A second valid snapshot of the same journal: its first half (other offset, other marks).
    const half = (await readFile(journal, 'latin1')).slice(0, 20_000 * line(0, 1).length);
    const halfMarks = new Map<string, { size: number; root: string }>();
    for (const entry of half.trimEnd().split('\n')) {
      const [id, size, mark] = entry.split(' ') as [string, string, string];
      halfMarks.set(id, { size: Number(size), root: mark });
    }
    const windows = await journalWindows(journal, half.length);
    const halfText = formatSnapshot({ offset: half.length, ...(windows as { first: string; last: string }), marks: halfMarks }, SNAPSHOT_KEY);
    const fullText = formatSnapshot(full, SNAPSHOT_KEY);
    expect(halfText).not.toBe(fullText);
    // The child replaces the (512 KB) snapshot with the other one in a loop, as the witness does, until killed.
    const script = `
      import { cosignerFromSeed } from '@offchannel/core';
      import { SnapshotKey, readSnapshot, writeSnapshot } from ${JSON.stringify(snapshotModule)};
      const key = SnapshotKey.fromCosigner(cosignerFromSeed('witness.example/w1', new Uint8Array(32).fill(2)));
      const file = ${JSON.stringify(path.join(dir, 'journal.snapshot'))};
      const snapshots = [await readSnapshot(file, key), await readSnapshot(file + '.half', key)];
      for (let round = 0; ; round++) {
        await writeSnapshot(file, snapshots[round % 2], key);
        if (round === 2) process.stdout.write('writing\\n');
      }`;
    await writeFile(path.join(dir, 'journal.snapshot.half'), halfText);
    for (const delay of [0, 7, 23, 41]) {
      const child = spawn(process.execPath, ['--conditions=@offchannel/source', '--no-warnings', '--input-type=module', '-e', script], { cwd: packageDir, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', () => { resolve(); });
        child.on('exit', (code) => { reject(new Error(`the child exited (${code})`)); });
      });
      await new Promise((resolve) => setTimeout(resolve, delay));
      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.kill('SIGKILL');
      await exited;
      const text = await readFile(path.join(dir, 'journal.snapshot'), 'latin1');
      // Always one whole snapshot or the other, never a mix.
      expect([halfText, fullText]).toContain(text);
      const state = await openState(dir);
      expect(state.startup).toEqual({ snapshot: 'used', journalBytesRead: text === halfText ? full.offset - half.length : 0 });
      expectHeads(state, sizes);
      state.close();
      // The restart rewrote the snapshot if it read a tail: put the full one back for the next round.
      await writeFile(path.join(dir, 'journal.snapshot'), fullText);
    }
  });

  /** Whether this machine lets the test make a file append-only (root, a file system that has the flag). */
  const chattr = ((): boolean => {
    const probe = path.join(tmpdir(), `offchannel-chattr-probe-${process.pid}`);
    try {
      writeFileSync(probe, '');
      execFileSync('chattr', ['+a', probe], { stdio: 'ignore', timeout: 10_000 });
      execFileSync('chattr', ['-a', probe], { stdio: 'ignore', timeout: 10_000 });
      return true;
    } catch {
      return false;
    } finally {
      rmSync(probe, { force: true });
    }
  })();

  it.skipIf(!chattr)('works with an append-only (chattr +a) journal, and says what to do with a torn line it may not cut', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const journal = path.join(dir, 'journal');
    const sizes = await writeJournal(journal, 1_000, 10);
    execFileSync('chattr', ['+a', journal], { timeout: 10_000 });
    try {
      let state = await openState(dir);
      for (let round = 0; round < 3; round++) {
        sizes[2] = (sizes[2] ?? 0) + 1;
        await state.advance({ origin: origin(2), size: sizes[2], root: root(2, sizes[2]) });
      }
      state = await openState(dir);
      expect(state.startup.snapshot).toBe('used');
      expectHeads(state, sizes);
      state.close();
      await appendFile(journal, line(4, 900).slice(0, 40));
      await expect(WitnessState.open(dir, { key: SNAPSHOT_KEY })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringMatching(/chattr -a/) as unknown });
      execFileSync('chattr', ['-a', journal], { timeout: 10_000 });
      state = await openState(dir);
      expectHeads(state, sizes);
    } finally {
      execFileSync('chattr', ['-a', journal], { timeout: 10_000 });
    }
  });

  it('after a failed journal write it appends nothing more until a restart (a partial line may be on disk), and says so once', async () => {
    const dir = await tempDir();
    const journal = path.join(dir, 'journal');
    const broken: Error[] = [];
    const state = await WitnessState.open(dir, { key: SNAPSHOT_KEY, onBroken: (error) => broken.push(error) });
    states.push(state);
    await state.advance({ origin: origin(1), size: 1, root: root(1, 1) });
    const intact = await readFile(journal);
    // The journal cannot be written (a directory in its place): the write fails.
    await rm(journal);
    await mkdir(journal);
    await expect(state.advance({ origin: origin(1), size: 2, root: root(1, 2) })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringMatching(/restart the witness/) as unknown });
    await rmdir(journal);
    await writeFile(journal, intact);
    // The journal is writable again, but what the failed write left is unknown: still refused.
    await expect(state.advance({ origin: origin(2), size: 1, root: root(2, 1) })).rejects.toMatchObject({ code: 'WITNESS_STATE' });
    expect(await readFile(journal)).toEqual(intact);
    expect(state.head(origin(1))?.size).toBe(1);
    expect(broken.map((error) => error.message)).toEqual([expect.stringMatching(/no longer the one the witness opened/) as unknown]);
    const restarted = await openState(dir);
    await restarted.advance({ origin: origin(2), size: 1, root: root(2, 1) });
    expect(restarted.head(origin(2))?.size).toBe(1);
  });

  it('a close while cosignatures are being recorded lets them finish (journal line, log file), then releases the folder; later ones are refused', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const state = await WitnessState.open(dir, { key: SNAPSHOT_KEY });
    const sizes = Array.from({ length: 300 }, (_, log) => 1 + (log % 2));
    const advancing = sizes.map(async (size, log) => state.advance({ origin: origin(log), size, root: root(log, size) }));
    state.close(); // the first journal write and fsync are in flight
    await expect(state.advance({ origin: origin(999), size: 1, root: root(999, 1) })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringMatching(/stopping.*send it again/) as unknown });
    // Another witness cannot take the folder while they are in flight.
    await expect(WitnessState.open(dir, { key: SNAPSHOT_KEY })).rejects.toThrow();
    expect((await Promise.allSettled(advancing)).map((result) => result.status)).toEqual(sizes.map(() => 'fulfilled'));
    await state.closed();
    const text = await readFile(path.join(dir, 'journal'), 'latin1');
    expect(text.trimEnd().split('\n').sort()).toEqual(sizes.map((size, log) => line(log, size).trimEnd()).sort());
    const reopened = await openState(dir);
    expectHeads(reopened, sizes);
  });

  it('appends through the descriptor opened at start: bytes another writer appended, or a journal replaced while it runs, stop it', async () => {
    const dir = await tempDir();
    const journal = path.join(dir, 'journal');
    let state = await openState(dir);
    await state.advance({ origin: origin(1), size: 1, root: root(1, 1) });
    // Another writer appends a line: the journal no longer ends where this process expects.
    await appendFile(journal, line(2, 1));
    await expect(state.advance({ origin: origin(1), size: 2, root: root(1, 2) })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringMatching(/something else writes to it.*restart/) as unknown });
    await expect(state.advance({ origin: origin(3), size: 1, root: root(3, 1) })).rejects.toMatchObject({ code: 'WITNESS_STATE' });
    // The restart reads what is there (the other line included) and appends again.
    state = await openState(dir);
    expect(state.head(origin(1))?.size).toBe(2);
    expect(state.head(origin(2))?.size).toBe(1);
    // Replaced by a copy with the same bytes (a restore while running): the witness's lines would
    // land in the file no longer named journal; refused.
    const copy = await readFile(journal);
    await rm(journal);
    await writeFile(journal, copy);
    await expect(state.advance({ origin: origin(1), size: 3, root: root(1, 3) })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringMatching(/moved, replaced or deleted/) as unknown });
    expect(await readFile(journal)).toEqual(copy);
  });

  it('a snapshot write that fails while serving is reported, and fails no cosignature', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const errors: unknown[] = [];
    const state = await WitnessState.open(dir, { key: SNAPSHOT_KEY, onSnapshotError: (error) => errors.push(error) });
    states.push(state);
    // A directory (not empty) where the snapshot's temporary file goes: it cannot be replaced.
    await mkdir(path.join(dir, 'journal.snapshot.tmp', 'x'), { recursive: true });
    const sizes = Array.from({ length: 600 }, () => 1);
    await Promise.all(sizes.map(async (size, log) => state.advance({ origin: origin(log), size, root: root(log, size) })));
    expect(errors.length).toBeGreaterThan(0);
    expect(state.snapshotError).toBe(errors.at(-1));
    expectHeads(state, sizes);
  });

  it('a link, FIFO or file in place of a log\'s temporary state file is removed, never opened: nothing is written outside the folder, nothing hangs', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const outside = path.join(await tempDir(), 'outside');
    await writeFile(outside, 'untouched\n');
    const state = await openState(dir);
    const temporary = path.join(dir, 'logs', `${originId(origin(1))}.tmp`);
    await symlink(outside, temporary);
    await state.advance({ origin: origin(1), size: 1, root: root(1, 1) });
    expect(await readFile(outside, 'utf8')).toBe('untouched\n');
    mkfifo(temporary);
    try {
      const settled = await Promise.race([state.advance({ origin: origin(1), size: 2, root: root(1, 2) }).then(() => 'written'), new Promise((resolve) => setTimeout(resolve, 20_000, 'hung'))]);
      expect(settled).toBe('written');
    } finally {
      // Wake a writer blocked on the FIFO (the old code), if it is still there.
      try {
        closeSync(openSync(temporary, constants.O_RDONLY | constants.O_NONBLOCK));
      } catch {
        // removed, as it should be
      }
    }
    await writeFile(temporary, 'a leftover write cut short');
    await state.advance({ origin: origin(1), size: 3, root: root(1, 3) });
    expect(await readFile(path.join(dir, 'logs', originId(origin(1))), 'utf8')).toBe(`${origin(1)}\n3\n${Buffer.from(root(1, 3)).toString('base64')}\n`);
    expect(await readFile(outside, 'utf8')).toBe('untouched\n');
  });

  it('keeps working when the state folder is copied elsewhere with its journal', async () => {
    const dir = await tempDir();
    const sizes = await writeJournal(path.join(dir, 'journal'), 3_000, 30);
    (await openState(dir)).close();
    const copy = await tempDir();
    await cp(dir, copy, { recursive: true });
    const state = await openState(copy);
    expect(state.startup).toEqual({ snapshot: 'used', journalBytesRead: 0 });
    expectHeads(state, sizes);
  });
});

describe('journal.snapshot is authenticated with a key derived from the witness key', () => {
  /** The snapshot at `file` with log `log`'s mark set to `size` (a lower one, or none), re-sealed by `seal`. */
  async function forge(file: string, log: number, size: number | undefined, seal: (body: string) => string): Promise<void> {
    const snapshot = await readSnapshot(file);
    if (snapshot === undefined || 'problem' in snapshot) throw new Error('no snapshot to forge from');
    const marks = new Map(snapshot.marks);
    if (size === undefined) marks.delete(originId(origin(log)));
    else marks.set(originId(origin(log)), { size, root: Buffer.from(root(log, size)).toString('base64') });
    const lines = [...marks].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, mark]) => `${id} ${mark.size} ${mark.root}\n`).join('');
    await writeFile(file, seal(`journal ${snapshot.offset} ${snapshot.first} ${snapshot.last}\n${lines}`));
  }
  const sha256 = (text: string): string => createHash('sha256').update(text, 'latin1').digest('hex');
  const other = SnapshotKey.fromCosigner(cosignerFromSeed('witness.example/w2', new Uint8Array(32).fill(9)));
  const forgeries: Record<string, (rest: string) => string> = {
    // The format of the previous commits: a plain SHA-256 anyone can recompute.
    'sha256-sealed (previous format)': (rest) => {
      const body = `offchannel witness journal snapshot 1\n${rest}`;
      return `${body}sha256 ${sha256(body)}\n`;
    },
    'plain SHA-256 in place of the HMAC': (rest) => {
      const body = `offchannel witness journal snapshot 2\nwitness ${SNAPSHOT_KEY.witness}\n${rest}`;
      return `${body}hmac-sha256 ${sha256(body)}\n`;
    },
    'HMAC with another witness key, naming this one': (rest) => {
      const body = `offchannel witness journal snapshot 2\nwitness ${SNAPSHOT_KEY.witness}\n${rest}`;
      return `${body}hmac-sha256 ${other.mac(body)}\n`;
    },
  };

  it.each(Object.entries(forgeries))('a forged snapshot (%s) that lowers or drops a log, with logs/ lowered too, does not roll the log back: it is ignored and the journal read whole', async (_, seal) => {
    for (const lowered of [5, undefined]) {
      const dir = await tempDir();
      const journal = path.join(dir, 'journal');
      let state = await openState(dir);
      await state.advance({ origin: origin(1), size: 5, root: root(1, 5) });
      const olderLog = await readFile(path.join(dir, 'logs', originId(origin(1))));
      await state.advance({ origin: origin(1), size: 10, root: root(1, 10) });
      await state.advance({ origin: origin(2), size: 3, root: root(2, 3) });
      state = await openState(dir); // writes the snapshot of the three lines
      state.close();
      // Whoever can write the state folder (not the journal): a lowered snapshot and log file.
      await forge(path.join(dir, 'journal.snapshot'), 1, lowered, seal);
      if (lowered === undefined) await rm(path.join(dir, 'logs', originId(origin(1))));
      else await writeFile(path.join(dir, 'logs', originId(origin(1))), olderLog);
      state = await openState(dir);
      expect(state.startup).toMatchObject({ snapshot: 'unusable', journalBytesRead: (await stat(journal)).size, reason: expect.stringMatching(/not (an )?authenticated/) as unknown });
      expect([lowered, state.head(origin(1))?.size]).toEqual([lowered, 10]);
      expect(Buffer.from(state.head(origin(1))?.root ?? []).toString('hex')).toBe(Buffer.from(root(1, 10)).toString('hex'));
      await expect(state.advance({ origin: origin(1), size: 10, root: root(9, 10) })).rejects.toMatchObject({ code: 'WITNESS_STATE' });
      // The rewritten snapshot is authentic again and used.
      state = await openState(dir);
      expect(state.startup.snapshot).toBe('used');
      expect(state.head(origin(1))?.size).toBe(10);
    }
  });

  it('a snapshot from another witness\'s state folder (another key) is no lower bound; this witness\'s own is, and the logs it raises are reported', async () => {
    const mine = await tempDir();
    let state = await openState(mine);
    await state.advance({ origin: origin(1), size: 5, root: root(1, 5) });
    const theirs = await tempDir();
    const foreign = await WitnessState.open(theirs, { key: other });
    await foreign.advance({ origin: origin(1), size: 50, root: root(1, 50) });
    await foreign.advance({ origin: origin(2), size: 7, root: root(2, 7) });
    foreign.close();
    (await WitnessState.open(theirs, { key: other })).close(); // its snapshot
    state.close();
    await cp(path.join(theirs, 'journal.snapshot'), path.join(mine, 'journal.snapshot'));
    state = await openState(mine);
    expect(state.startup).toMatchObject({ snapshot: 'unusable', reason: expect.stringMatching(/another witness key/) as unknown });
    expect(state.startup.raised).toBeUndefined();
    expect(state.head(origin(1))?.size).toBe(5);
    expect(state.head(origin(2))).toBeUndefined();
    expect(state.logCount).toBe(1);

    // This witness's own snapshot, its journal restored from an older copy: a lower bound, reported.
    await state.advance({ origin: origin(1), size: 8, root: root(1, 8) });
    const older = await readFile(path.join(mine, 'journal'));
    await state.advance({ origin: origin(1), size: 9, root: root(1, 9) });
    await state.advance({ origin: origin(3), size: 2, root: root(3, 2) });
    (await openState(mine)).close();
    await writeFile(path.join(mine, 'journal'), older);
    await rm(path.join(mine, 'logs', originId(origin(3))));
    state = await openState(mine);
    expect(state.startup).toMatchObject({ snapshot: 'mismatch', raised: [origin(1), originId(origin(3))] });
    expect(state.head(origin(1))?.size).toBe(9);
    expect(state.head(origin(3))?.size).toBe(2);
  });

  it('refuses to start when the journal is missing but this witness\'s snapshot covers some of it (an unmounted disk); starts from an empty journal created on purpose, keeping the marks', async () => {
    const dir = await tempDir();
    const journal = path.join(await tempDir(), 'journal');
    let state = await openState(dir, journal);
    await state.advance({ origin: origin(1), size: 4, root: root(1, 4) });
    (await openState(dir, journal)).close();
    await rm(journal);
    await expect(WitnessState.open(dir, { key: SNAPSHOT_KEY, journal })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringMatching(/does not exist, but journal\.snapshot .* covers \d+ bytes.*create it empty/) as unknown });
    await expect(stat(journal)).rejects.toMatchObject({ code: 'ENOENT' });
    await writeFile(journal, '', { mode: 0o600 });
    await rm(path.join(dir, 'logs', originId(origin(1))));
    state = await openState(dir, journal);
    expect(state.startup).toMatchObject({ snapshot: 'mismatch', raised: [originId(origin(1))] });
    expect(state.head(origin(1))?.size).toBe(4);
    // A new folder (no snapshot) still starts without a journal.
    (await openState(await tempDir(), path.join(await tempDir(), 'journal'))).close();
  });
});
