import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openStateStore, type StateStore } from '@offchannel/core';
import { BufferJSON, Curve, proto } from '@whiskeysockets/baileys';
import { afterEach, describe, expect, it } from 'vitest';
import { clearAuthState, hasAuthState, openAuthState, type StoredAuthState } from './auth-state.ts';

const dirs: string[] = [];
const opened: StoredAuthState[] = [];
afterEach(async () => {
  for (const auth of opened.splice(0)) await auth.close(); // their keys tables hold a file open
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function openAuth(state: StateStore): Promise<StoredAuthState> {
  const auth = await openAuthState(state);
  opened.push(auth);
  return auth;
}

async function store(key = randomBytes(32)): Promise<{ state: StateStore; dir: string; key: Uint8Array }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-auth-'));
  dirs.push(dir);
  return { state: await openStateStore({ dir, key }), dir, key };
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) if (entry.isFile()) out.push(path.join(entry.parentPath, entry.name));
  return out;
}

describe('auth state in the secret state store', () => {
  it('round-trips credentials and every Signal key type, encrypted at rest with 0600 files', async () => {
    const { state, dir, key } = await store();
    const first = await openAuth(state);
    expect(first.existing).toBe(false);
    first.state.creds.me = { id: '15550000001@s.whatsapp.net', lid: '100000000000001@lid' };
    await first.saveCreds();
    const preKey = Curve.generateKeyPair();
    const appKey = proto.Message.AppStateSyncKeyData.create({ keyData: randomBytes(32), timestamp: 5 });
    await first.state.keys.set({
      'pre-key': { '1': preKey },
      session: { '15550000002.0': Buffer.from('session-bytes'), 'x_y/z:1': Buffer.from('odd id') },
      'app-state-sync-key': { AAAA: appKey },
      'lid-mapping': { '15550000002': '200000000000002' },
    });

    const reopened = await openAuth(await openStateStore({ dir, key }));
    expect(reopened.existing).toBe(true);
    expect(reopened.state.creds.me?.lid).toBe('100000000000001@lid');
    expect(Buffer.from(reopened.state.creds.noiseKey.private).equals(Buffer.from(first.state.creds.noiseKey.private))).toBe(true);
    const pre = await reopened.state.keys.get('pre-key', ['1', '2']);
    expect(Buffer.from(pre['1']?.private ?? []).equals(Buffer.from(preKey.private))).toBe(true);
    expect(pre['2']).toBeUndefined();
    const sessions = await reopened.state.keys.get('session', ['15550000002.0', 'x_y/z:1']);
    expect(Buffer.from(sessions['x_y/z:1'] ?? []).toString()).toBe('odd id');
    const app = await reopened.state.keys.get('app-state-sync-key', ['AAAA']);
    expect(app['AAAA']).toBeInstanceOf(proto.Message.AppStateSyncKeyData);
    expect((await reopened.state.keys.get('lid-mapping', ['15550000002']))['15550000002']).toBe('200000000000002');

    // deletes
    await reopened.state.keys.set({ 'pre-key': { '1': null } });
    expect(await reopened.state.keys.get('pre-key', ['1'])).toEqual({});

    // at rest: no file holds the private key bytes or the JSON, and files are 0600
    const secret = Buffer.from(first.state.creds.noiseKey.private).toString('base64');
    for (const file of await files(dir)) {
      const bytes = await readFile(file);
      expect(bytes.toString('latin1')).not.toContain(secret);
      expect(bytes.toString('latin1')).not.toContain('noiseKey');
      // key ids name contacts: not in clear, not hex-encoded either (table rows are digests)
      expect(bytes.toString('latin1')).not.toContain('15550000002');
      expect(bytes.toString('latin1')).not.toContain(Buffer.from('15550000002').toString('hex'));
      if (!file.endsWith('.offchannel-state.json')) expect((await stat(file)).mode & 0o777).toBe(0o600);
    }
    await expect(openStateStore({ dir, key: randomBytes(32) })).rejects.toMatchObject({ code: 'STATE_KEY_WRONG' });
  });

  it('replays an interrupted multi-key write on the next open (all of the transaction lands)', async () => {
    const { state, dir, key } = await store();
    await openAuth(state);
    // A crash after the journal was made durable but before the keys were applied:
    const pending = { session: { 'a.0': Buffer.from('new session') }, 'pre-key': { '7': null } };
    await state.set('keys-journal', Buffer.from(JSON.stringify(pending, BufferJSON.replacer), 'utf8'));
    await state.scope('keys').scope('pre-key').set(`h${Buffer.from('7').toString('hex')}`, Buffer.from(JSON.stringify({ public: 'x' })));
    const reopened = await openAuth(await openStateStore({ dir, key }));
    expect(Buffer.from((await reopened.state.keys.get('session', ['a.0']))['a.0'] ?? []).toString()).toBe('new session');
    expect(await reopened.state.keys.get('pre-key', ['7'])).toEqual({});
    expect(await state.get('keys-journal')).toBeUndefined();
  });

  it('clears everything after a logout', async () => {
    const { state } = await store();
    const auth = await openAuth(state);
    await auth.saveCreds();
    await auth.state.keys.set({ session: { s: Buffer.from('x') } });
    expect(await hasAuthState(state)).toBe(true);
    await clearAuthState(state);
    expect(await hasAuthState(state)).toBe(false);
    expect(await state.scope('keys').scope('session').list()).toEqual([]);
    expect(await (await openAuth(state)).state.keys.get('session', ['s'])).toEqual({});
  });

  it('reads keys an earlier version kept as files; a deletion hides them for good', async () => {
    const { state, dir, key } = await store();
    await state.scope('keys').scope('pre-key').set(`h${Buffer.from('9').toString('hex')}`, Buffer.from(JSON.stringify({ public: 'old' })));
    const auth = await openAuth(state);
    expect((await auth.state.keys.get('pre-key', ['9']))['9']).toEqual({ public: 'old' });
    await auth.state.keys.set({ 'pre-key': { '9': null }, session: { 'b.0': Buffer.from('new') } });
    expect(await auth.state.keys.get('pre-key', ['9'])).toEqual({});
    const reopened = await openAuth(await openStateStore({ dir, key }));
    expect(await reopened.state.keys.get('pre-key', ['9'])).toEqual({});
    expect(Buffer.from((await reopened.state.keys.get('session', ['b.0']))['b.0'] ?? []).toString()).toBe('new');
  });

  it('SIGKILLed mid-run: every transaction keys.set resolved is whole, and none is half there', { timeout: 90_000 }, async () => {
    const { dir, key } = await store();
    const script = path.join(import.meta.dirname, '__fixtures__', 'auth-key-writer.ts');
    for (let trial = 0; trial < 5; trial++) {
      const child = spawn(process.execPath, ['--conditions=@offchannel/source', '--no-warnings', script, dir, Buffer.from(key).toString('hex'), String(trial)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let done = 0;
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        done = Math.max(done, ...chunk.trim().split('\n').map(Number));
      });
      const exited = new Promise((resolve) => child.once('exit', resolve));
      await new Promise<void>((resolve) => {
        const wait = (): void => {
          if (done >= 20) setTimeout(resolve, Math.random() * 30);
          else setTimeout(wait, 2);
        };
        wait();
      });
      child.kill('SIGKILL');
      await exited;
      const auth = await openAuth((await openStateStore({ dir, key })).scope('whatsapp:alice'));
      const get = async (id: string): Promise<string | undefined> => {
        const value = (await auth.state.keys.get('session', [id]))[id];
        return value === undefined ? undefined : Buffer.from(value).toString();
      };
      // Transactions commit in order: 1…last are there (last ≥ every one reported), none after.
      let last = 0;
      while ((await get(`other${trial}-${last + 1}.0`)) !== undefined) last++;
      expect(last).toBeGreaterThanOrEqual(done);
      for (let n = 1; n <= last; n++) expect(await get(`other${trial}-${n}.0`)).toBe(`session ${n}`);
      // …and each is whole: the shared sessions hold the newest committed transaction's value.
      for (let r = 0; r < 5; r++) {
        const newest = last - ((((last - r) % 5) + 5) % 5);
        expect(await get(`peer${trial}-${r}.0`)).toBe(newest >= 1 ? `session ${newest}` : undefined);
      }
    }
  });
});
