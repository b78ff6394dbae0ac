import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openStateStore } from '@offchannel/core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MessageIndex } from './message-index.ts';
import { JIDS } from './testing/fixtures.ts';

// These tests spawn processes: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 90_000, hookTimeout: 60_000 });

let dir: string;
const key = randomBytes(32);

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-index-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('MessageIndex', () => {
  it('writes a run as one durable batch and reads it back after a reopen', async () => {
    const store = (await openStateStore({ dir, key })).scope('whatsapp:alice');
    const index = new MessageIndex(store);
    const secret = randomBytes(32);
    const content = randomBytes(40);
    await index.rememberAll([
      { hash: MessageIndex.hashOf(JIDS.alice, 'A1'), entry: { secret } },
      { hash: MessageIndex.hashOf(JIDS.group, 'A2'), entry: { secret, content } },
      { hash: MessageIndex.hashOf(JIDS.alice, 'A3'), entry: {} },
    ]);
    await index.close();
    const reopened = new MessageIndex((await openStateStore({ dir, key })).scope('whatsapp:alice'));
    expect(await reopened.secret(JIDS.alice, 'A1')).toEqual(Uint8Array.from(secret));
    expect(await reopened.content(JIDS.group, 'A2')).toEqual(Uint8Array.from(content));
    expect(await reopened.secret(JIDS.alice, 'A3')).toBeUndefined();
    expect(await reopened.secret(JIDS.group, 'A1')).toBeUndefined();
    await reopened.close();
  });

  it('still reads entries an earlier version wrote as one state file each', async () => {
    const store = (await openStateStore({ dir, key })).scope('whatsapp:alice');
    const secret = randomBytes(32);
    const hash = createHash('sha256').update(JIDS.alice).update('\u0000').update('OLD-1').digest('hex');
    await store.scope('messages').scope(`b${hash.slice(0, 2)}`).set(`m${hash}`, Buffer.from(JSON.stringify({ s: secret.toString('base64') })));
    const index = new MessageIndex(store);
    expect(await index.secret(JIDS.alice, 'OLD-1')).toEqual(Uint8Array.from(secret));
    await index.close();
  });

  it('connector SIGKILLed mid-run: every message it acknowledged has its secret in the state store', { timeout: 120_000 }, async () => {
    const script = path.join(import.meta.dirname, '__fixtures__', 'acknowledging-connector.ts');
    let checked = 0;
    for (let run = 0; run < 4; run++) {
      const child = spawn(process.execPath, ['--conditions=@offchannel/source', '--no-warnings', script, dir, key.toString('hex'), String(run)], { stdio: ['ignore', 'pipe', 'inherit'] });
      const acknowledged: string[] = [];
      let buffered = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        const lines = (buffered + chunk).split('\n');
        buffered = lines.pop() ?? '';
        acknowledged.push(...lines.filter(Boolean));
      });
      const exited = new Promise((resolve) => child.once('exit', resolve));
      // Killed while acknowledging: after a few runs were acknowledged, at a random moment.
      const target = 50 + Math.floor(Math.random() * 200);
      await new Promise<void>((resolve, reject) => {
        const wait = (): void => {
          if (acknowledged.length >= target) setTimeout(resolve, Math.random() * 20);
          else if (child.exitCode !== null) reject(new Error(`the child exited early (${child.exitCode})`));
          else setTimeout(wait, 2);
        };
        wait();
      });
      child.kill('SIGKILL');
      await exited;
      const state = await openStateStore({ dir: path.join(dir, 'state'), key });
      const index = new MessageIndex(state.scope('whatsapp:crash'));
      const missing: string[] = [];
      for (const id of acknowledged) {
        const secret = await index.secret(JIDS.alice, id);
        if (!secret || !Buffer.from(secret).equals(createHash('sha256').update(id).digest())) missing.push(id);
      }
      await index.close();
      expect(missing).toEqual([]);
      checked += acknowledged.length;
    }
    expect(checked).toBeGreaterThan(200);
  });
});
