import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateStateKey } from '@offchannel/core';
import * as imessage from '@offchannel/imessage';
import { createChatDbFixture, moveBelowCursor, type ChatDbFixture } from '@offchannel/imessage/testing';
import type { CliIo } from '../cli-io.ts';
import { reconcileCommand } from './reconcile-command.ts';

const ACCOUNT = 'alice@firm.example';
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const done of cleanup.splice(0).reverse()) await done();
});

/** A config with one iMessage relay reading a fixture chat.db (written by another process, Messages' schema). */
async function workspace(): Promise<{ dir: string; db: ChatDbFixture }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-reconcile-imessage-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const db = await createChatDbFixture(path.join(dir, 'mac'));
  cleanup.push(() => db.close());
  await writeFile(path.join(dir, 'state.key'), `${generateStateKey()}\n`, { mode: 0o600 });
  const connector = { channel: 'imessage', account: ACCOUNT, chatDb: './mac/chat.db', attachmentsDir: './mac/Attachments', pollMs: 100 };
  await writeFile(path.join(dir, 'offchannel.config.json'), JSON.stringify({ archive: { dir: './archive' }, state: { dir: './state', keyFile: './state.key' }, connectors: [connector] }), { mode: 0o600 });
  return { dir, db };
}

async function reconcile(argv: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = { stdout: { write: (text: string) => (stdout += text) }, stderr: { write: (text: string) => (stderr += text), isTTY: false }, env: {}, cwd, signal: new AbortController().signal };
  const code = await reconcileCommand(argv, io, async (name) => {
    expect(name).toBe('@offchannel/imessage');
    return imessage;
  });
  return { code, stdout, stderr };
}

describe('offchannel reconcile imessage', () => {
  it('records the chat.db rows the archive lacks — written below the cursor while nothing ran — once, and says so', async () => {
    const { dir, db } = await workspace();
    await db.receive({ from: '+15550100', text: 'first' });
    const replaced = await db.receive({ from: '+15550100', text: 'later replaced by a restore' });

    const first = await reconcile(['imessage', '--account', ACCOUNT], dir);
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`reconciled imessage:${ACCOUNT}: 2 chat.db rows compared with the archive\n  recorded: 0 missing (0 of them with content lost before any capture: 0 unsent, 0 edited without history), 3 records written in all\n`);

    const restored = await db.receive({ from: '+15550100', text: 'RESTORED: SELL 50 ACME' });
    moveBelowCursor(db.path, restored.guid, replaced.guid);
    const second = await reconcile(['imessage', '--account', ACCOUNT, '--json'], dir);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ stream: `imessage:${ACCOUNT}`, trigger: 'on-demand', checked: 2, sinceStart: { recovered: 1, unsentBeforeCapture: 0, editedWithoutHistory: 0 } });
    expect(second.stdout + second.stderr).not.toContain('SELL 50 ACME');

    const third = await reconcile(['imessage', '--account', ACCOUNT, '--json'], dir);
    expect(JSON.parse(third.stdout)).toMatchObject({ checked: 2, recovered: 0, sinceStart: { recovered: 0 }, recordsWritten: 1 });
  }, 60_000);

  it('refuses telegram-only options', async () => {
    const { dir } = await workspace();
    await expect(reconcile(['imessage', '--account', ACCOUNT, '--dialogs', '5'], dir)).rejects.toThrow(/for telegram/);
  });
});
