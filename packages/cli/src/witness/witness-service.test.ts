import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type Ed25519NoteKey,
  MerkleLevels,
  checkCosignatures,
  consistencyProof,
  cosignerFromSeed,
  ed25519KeyFromSeed,
  formatAddCheckpoint,
  formatCheckpoint,
  leafHash,
  openNote,
  signNote,
  treeRoot,
} from '@offchannel/core';
import { afterEach, describe, expect, it } from 'vitest';
import { WitnessService } from './witness-service.ts';
import { SnapshotKey } from './witness-snapshot.ts';
import { WitnessState, originId } from './witness-state.ts';

const LOG_KEY = ed25519KeyFromSeed('archive.example/offchannel', new Uint8Array(32).fill(1));
const WITNESS = cosignerFromSeed('witness.example/w1', new Uint8Array(32).fill(2));
const SNAPSHOT_KEY = SnapshotKey.fromCosigner(WITNESS);
const ORIGIN = 'archive.example/offchannel/demo:alice';
const NOW = 1_765_000_000;

/** A real Merkle log of `n` leaves whose contents start with `tag` (a different tag is a fork). */
class TestLog {
  readonly levels = new MerkleLevels();
  readonly tag: string;
  readonly key: Ed25519NoteKey;
  readonly origin: string;
  constructor(tag: string, key: Ed25519NoteKey = LOG_KEY, origin = ORIGIN) {
    this.tag = tag;
    this.key = key;
    this.origin = origin;
  }
  grow(to: number): this {
    while (this.levels.size < to) this.levels.append(leafHash(Buffer.from(`${this.tag} ${this.levels.size}`)));
    return this;
  }
  async note(size = this.levels.size): Promise<string> {
    return signNote(formatCheckpoint({ origin: this.origin, size, root: await treeRoot(this.levels, size) }), [this.key]);
  }
  async request(oldSize: number, size = this.levels.size): Promise<Uint8Array> {
    const proof = oldSize === 0 ? [] : await consistencyProof(this.levels, oldSize, size);
    return Buffer.from(formatAddCheckpoint({ oldSize, proof, note: await this.note(size) }));
  }
}

const dirs: string[] = [];
const states: WitnessState[] = [];
/** Closes every state opened so far: a restarted witness is a new process. */
function closeStates(): void {
  for (const state of states.splice(0)) state.close();
}
async function openState(dir: string, journal?: string): Promise<WitnessState> {
  closeStates();
  const state = await WitnessState.open(dir, { key: SNAPSHOT_KEY, journal });
  states.push(state);
  return state;
}
afterEach(async () => {
  closeStates();
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-witness-'));
  dirs.push(dir);
  return dir;
}
async function service(dir: string, journal?: string): Promise<WitnessService> {
  return new WitnessService({ key: WITNESS, accept: [LOG_KEY.verifier], state: await openState(dir, journal), now: () => NOW });
}

describe('witness add-checkpoint (c2sp.org/tlog-witness)', () => {
  it('cosigns a first checkpoint, then only consistent extensions; 409 carries the known size', async () => {
    const dir = await tempDir();
    const witness = await service(dir);
    const log = new TestLog('a').grow(5);
    const first = await witness.addCheckpoint(await log.request(0));
    expect(first.status).toBe(200);
    const cosigned = `${await log.note()}${first.body}`;
    expect(checkCosignatures(cosigned, [WITNESS.verifier])).toEqual([{ witness: 'witness.example/w1', state: 'valid', time: NOW }]);
    log.grow(12);
    const stale = await witness.addCheckpoint(await log.request(0));
    expect(stale).toEqual({ status: 409, body: '5\n', contentType: 'text/x.tlog.size' });
    expect((await witness.addCheckpoint(await log.request(5))).status).toBe(200);
    // The same checkpoint again is cosigned again (a fresh timestamp), nothing changes.
    expect((await witness.addCheckpoint(await log.request(12))).status).toBe(200);
    expect(await readFile(path.join(dir, 'logs', originId(ORIGIN)), 'utf8')).toBe(`${ORIGIN}\n12\n${Buffer.from(await treeRoot(log.levels)).toString('base64')}\n`);
  });

  it('refuses a fork: 422 for a bad proof to a larger size, 409 for another root at the cosigned size; state unchanged', async () => {
    const dir = await tempDir();
    const witness = await service(dir);
    const honest = new TestLog('a').grow(8);
    expect((await witness.addCheckpoint(await honest.request(0))).status).toBe(200);
    const before = await readFile(path.join(dir, 'journal'), 'utf8');
    const fork = new TestLog('b').grow(20);
    // The fork's own proof from 8 to 20 is about its own tree, not the cosigned one.
    const forked = await witness.addCheckpoint(await fork.request(8));
    expect(forked.status).toBe(422);
    expect(forked.body).toMatch(/not an extension/);
    const sameSize = await witness.addCheckpoint(await fork.request(8, 8));
    expect(sameSize).toEqual({ status: 409, body: '8\n', contentType: 'text/x.tlog.size' });
    expect(await readFile(path.join(dir, 'journal'), 'utf8')).toBe(before);
    // Both refused checkpoints are kept as evidence: the log signed them.
    const evidence = (await readdir(path.join(dir, 'evidence'))).sort();
    expect(evidence.map((name) => name.split('.').slice(0, 2).join('.'))).toEqual([`${originId(ORIGIN)}.20`, `${originId(ORIGIN)}.8`]);
    for (const name of evidence) expect(openNote(await readFile(path.join(dir, 'evidence', name), 'utf8'), [LOG_KEY.verifier]).verified).toHaveLength(1);
    // The honest log still advances.
    expect((await witness.addCheckpoint(await honest.grow(9).request(8))).status).toBe(200);
  });

  it('answers 404 for an unknown origin, 403 for a checkpoint not signed by a trusted key, 400 for malformed requests', async () => {
    const witness = await service(await tempDir());
    const other = new TestLog('a', ed25519KeyFromSeed('elsewhere.example', new Uint8Array(32).fill(3)), 'elsewhere.example/x').grow(3);
    expect((await witness.addCheckpoint(await other.request(0))).status).toBe(404);
    const impostor = new TestLog('a', ed25519KeyFromSeed('archive.example/offchannel', new Uint8Array(32).fill(4))).grow(3);
    expect((await witness.addCheckpoint(await impostor.request(0))).status).toBe(403);
    // A prefix is not a per-stream origin: "archive.example/offchannelX/…" is unknown.
    const prefix = new TestLog('a', LOG_KEY, 'archive.example/offchannelX/s').grow(3);
    expect((await witness.addCheckpoint(await prefix.request(0))).status).toBe(404);
    const good = new TestLog('a').grow(3);
    const note = await good.note();
    const altered = note.replace('\n3\n', '\n4\n');
    expect((await witness.addCheckpoint(Buffer.from(`old 0\n\n${altered}`))).status).toBe(403);
    for (const body of [
      '',
      'old 0\n',
      `old 01\n\n${note}`,
      `old -1\n\n${note}`,
      `old 0\nnot-base64\n\n${note}`,
      `old 0\n${Buffer.alloc(32).toString('base64')}\n\n${note}`,
      `old 1\n${`${Buffer.alloc(32).toString('base64')}\n`.repeat(64)}\n${note}`,
      `old 5\n\n${note}`,
      'old 0\n\nnot a note\n',
      `old 0\n\n${note.replace('\n\n', '\n')}`,
      `old 0\n\narchive.example/offchannel/s\nx\ny\n\n${note.split('\n\n')[1] ?? ''}`,
    ]) {
      const answer = await witness.addCheckpoint(Buffer.from(body));
      expect([body.slice(0, 20), answer.status]).toEqual([body.slice(0, 20), 400]);
    }
    expect((await witness.addCheckpoint(Buffer.from([0x6f, 0x6c, 0x64, 0x20, 0xff, 0x0a, 0x0a]))).status).toBe(400);
  });

  it('serialises requests per log: of two racing extensions from one size only one is cosigned, the other gets 409', async () => {
    const witness = await service(await tempDir());
    const log = new TestLog('a').grow(4);
    expect((await witness.addCheckpoint(await log.request(0))).status).toBe(200);
    const small = await log.grow(6).request(4, 6);
    const large = await log.grow(10).request(4, 10);
    const answers = await Promise.all([witness.addCheckpoint(large), witness.addCheckpoint(small)]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 409]);
    expect(answers[1]?.body).toBe('10\n');
  });

  it('restarted from an old copy of its state folder, with its journal kept, it does not cosign a rolled-back or forked log', async () => {
    const dir = await tempDir();
    const journal = path.join(await tempDir(), 'journal');
    const log = new TestLog('a').grow(5);
    let witness = await service(dir, journal);
    expect((await witness.addCheckpoint(await log.request(0))).status).toBe(200);
    const backup = await tempDir();
    await cp(path.join(dir, 'logs'), path.join(backup, 'logs'), { recursive: true });
    expect((await witness.addCheckpoint(await log.grow(10).request(5))).status).toBe(200);
    // Restore the old copy of the state folder (size 5), keep the journal (size 10).
    await rm(path.join(dir, 'logs'), { recursive: true });
    await cp(path.join(backup, 'logs'), path.join(dir, 'logs'), { recursive: true });
    witness = await service(dir, journal);
    // A fork of the first 5 records grown to 10: consistent with the restored size 5, not with 10.
    const fork = new TestLog('a').grow(5);
    fork.levels.append(leafHash(Buffer.from('rewritten 5')));
    fork.grow(10);
    const answer = await witness.addCheckpoint(await fork.request(5));
    expect(answer).toEqual({ status: 409, body: '10\n', contentType: 'text/x.tlog.size' });
    expect((await witness.addCheckpoint(await fork.request(10))).status).toBe(409);
    expect((await witness.addCheckpoint(await log.grow(11).request(10))).status).toBe(200);
  });

  it('restarted from an old copy of its state folder that includes an older journal.snapshot (non-zero offset), with its journal kept, it does not cosign a fork', async () => {
    const dir = await tempDir();
    const log = new TestLog('a').grow(5);
    let witness = await service(dir);
    expect((await witness.addCheckpoint(await log.request(0))).status).toBe(200);
    witness = await service(dir); // the restart writes a snapshot of the first line
    const backup = await tempDir();
    await cp(path.join(dir, 'logs'), path.join(backup, 'logs'), { recursive: true });
    await cp(path.join(dir, 'journal.snapshot'), path.join(backup, 'journal.snapshot'));
    const line = (await readFile(path.join(dir, 'journal'))).length;
    expect(line).toBeGreaterThan(0);
    expect((await witness.addCheckpoint(await log.grow(10).request(5))).status).toBe(200);
    await service(dir); // a snapshot of both lines
    closeStates();
    // Restore the old copy of the state folder, its snapshot included; keep the journal.
    await rm(path.join(dir, 'logs'), { recursive: true });
    await cp(path.join(backup, 'logs'), path.join(dir, 'logs'), { recursive: true });
    await cp(path.join(backup, 'journal.snapshot'), path.join(dir, 'journal.snapshot'));
    witness = await service(dir);
    // The older snapshot still matches the journal's first bytes: only the line after it is read.
    expect(states[0]?.startup).toEqual({ snapshot: 'used', journalBytesRead: (await readFile(path.join(dir, 'journal'))).length - line });
    const fork = new TestLog('a').grow(5);
    fork.levels.append(leafHash(Buffer.from('rewritten 5')));
    fork.grow(10);
    expect(await witness.addCheckpoint(await fork.request(5))).toEqual({ status: 409, body: '10\n', contentType: 'text/x.tlog.size' });
    expect((await witness.addCheckpoint(await fork.request(10))).status).toBe(409);
    expect((await witness.addCheckpoint(await log.grow(11).request(10))).status).toBe(200);
  });

  it('without the journal line, the restored witness would have cosigned the fork (what the journal protects)', async () => {
    const dir = await tempDir();
    const log = new TestLog('a').grow(5);
    let witness = await service(dir);
    expect((await witness.addCheckpoint(await log.request(0))).status).toBe(200);
    const backup = await tempDir();
    await cp(dir, backup, { recursive: true });
    expect((await witness.addCheckpoint(await log.grow(10).request(5))).status).toBe(200);
    // Everything restored, journal included: the witness has forgotten size 10.
    await rm(dir, { recursive: true });
    await cp(backup, dir, { recursive: true });
    witness = await service(dir);
    const fork = new TestLog('a').grow(5);
    fork.levels.append(leafHash(Buffer.from('rewritten 5')));
    expect((await witness.addCheckpoint(await fork.grow(10).request(5))).status).toBe(200);
  });

  it('cuts a torn last journal line, refuses a damaged journal or a state file that disagrees with it', async () => {
    const dir = await tempDir();
    const log = new TestLog('a').grow(3);
    const witness = await service(dir);
    expect((await witness.addCheckpoint(await log.request(0))).status).toBe(200);
    const journal = path.join(dir, 'journal');
    const intact = await readFile(journal, 'utf8');
    await writeFile(journal, `${intact}${originId(ORIGIN)} 9 AAAA`);
    const reopened = await openState(dir);
    expect(reopened.head(ORIGIN)?.size).toBe(3);
    expect(await readFile(journal, 'utf8')).toBe(intact);
    closeStates();
    await writeFile(journal, `${intact}garbage\n`);
    await expect(WitnessState.open(dir, { key: SNAPSHOT_KEY })).rejects.toMatchObject({ code: 'WITNESS_STATE' });
    await writeFile(journal, intact);
    const stateFile = path.join(dir, 'logs', originId(ORIGIN));
    const text = await readFile(stateFile, 'utf8');
    await writeFile(stateFile, text.replace(/\n[^\n]+\n$/, `\n${Buffer.alloc(32, 9).toString('base64')}\n`));
    await expect(WitnessState.open(dir, { key: SNAPSHOT_KEY })).rejects.toMatchObject({ code: 'WITNESS_STATE' });
  });

  it('when the log\'s file cannot be written after its journal line, the head is the journal\'s: a fork at that size is refused, before and after a restart', async () => {
    const dir = await tempDir();
    const witness = await service(dir);
    const log = new TestLog('a').grow(5);
    expect((await witness.addCheckpoint(await log.request(0))).status).toBe(200);
    // The log's state file cannot be replaced: a directory (not empty) where its temporary file goes.
    const blocker = path.join(dir, 'logs', `${originId(ORIGIN)}.tmp`);
    await mkdir(blocker);
    await writeFile(path.join(blocker, 'x'), '');
    await expect(witness.addCheckpoint(await log.grow(10).request(5))).rejects.toThrow();
    // The journal has (10, A), durable: no cosignature was returned, but size 10 is the mark now.
    expect((await readFile(path.join(dir, 'journal'), 'utf8')).trimEnd().split('\n')).toHaveLength(2);
    // The failure was passing (the disk is writable again).
    await rm(blocker, { recursive: true });
    const fork = new TestLog('a').grow(5);
    fork.levels.append(leafHash(Buffer.from('rewritten 5')));
    fork.grow(10);
    expect(await witness.addCheckpoint(await fork.request(5))).toEqual({ status: 409, body: '10\n', contentType: 'text/x.tlog.size' });
    expect(await witness.addCheckpoint(await fork.request(10))).toEqual({ status: 409, body: '10\n', contentType: 'text/x.tlog.size' });
    const state = states[0] as WitnessState;
    await expect(state.advance({ origin: ORIGIN, size: 10, root: await treeRoot(fork.levels) })).rejects.toMatchObject({ code: 'WITNESS_STATE', message: expect.stringMatching(/another root/) as unknown });
    await expect(state.advance({ origin: ORIGIN, size: 7, root: await treeRoot(fork.levels, 7) })).rejects.toMatchObject({ code: 'WITNESS_STATE' });
    const restarted = await service(dir);
    expect(await restarted.addCheckpoint(await fork.request(5))).toEqual({ status: 409, body: '10\n', contentType: 'text/x.tlog.size' });
    expect((await restarted.addCheckpoint(await log.grow(11).request(10))).status).toBe(200);
  });

  it('one witness per state folder: a second process is refused until the first closes', async () => {
    const dir = await tempDir();
    const first = await openState(dir);
    await expect(WitnessState.open(dir, { key: SNAPSHOT_KEY })).rejects.toThrow(/another witness process holds the state folder/);
    first.close();
    (await WitnessState.open(dir, { key: SNAPSHOT_KEY })).close();
  });
});
