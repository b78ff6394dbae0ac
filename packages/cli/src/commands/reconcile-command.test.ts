import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Recorder, generateStateKey, openStateStore, parseStateKey, type StateStore } from '@offchannel/core';
import { createMemorySink } from '@offchannel/core/testing';
import * as telegram from '@offchannel/telegram';
import { type LocalTelegramServer, createLocalTelegramPeer } from '@offchannel/telegram/testing';
import type { CliIo } from '../cli-io.ts';
import { runCli } from '../testing/run-cli.ts';
import { reconcileCommand } from './reconcile-command.ts';

const ACCOUNT = 'desk-42';
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

interface Workspace {
  readonly dir: string;
  readonly state: StateStore;
}

/** A config with a telegram connector whose account is linked (against the local server) in the encrypted state store. */
async function workspace(peer: ReturnType<typeof createLocalTelegramPeer>, extra: Record<string, unknown>[] = []): Promise<Workspace> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-reconcile-'));
  dirs.push(dir);
  const key = generateStateKey();
  await writeFile(path.join(dir, 'state.key'), `${key}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, 'telegram-api-hash'), `${'0'.repeat(32)}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, 'webhook-token'), `${'A'.repeat(32)}\n`, { mode: 0o600 });
  await writeFile(
    path.join(dir, 'offchannel.config.json'),
    JSON.stringify({ archive: { dir: './archive' }, state: { dir: './state', keyFile: './state.key' }, connectors: [{ channel: 'telegram', account: ACCOUNT, apiId: 1, apiHashFile: './telegram-api-hash' }, ...extra] }),
    { mode: 0o600 },
  );
  const state = await openStateStore({ dir: path.join(dir, 'state'), key: parseStateKey(key) });
  await peer.link(telegram.telegramStateScope(state, ACCOUNT));
  return { dir, state };
}

/** The real @offchannel/telegram package, its mtcute client answered by `server` instead of Telegram. */
function localTelegram(server: LocalTelegramServer): (name: string) => Promise<unknown> {
  return async (name) => {
    expect(name).toBe('@offchannel/telegram');
    return {
      ...telegram,
      createTelegramConnector: (options: telegram.TelegramConnectorOptions) => telegram.createTelegramConnector({ ...options, clientFactory: createLocalTelegramPeer({ account: ACCOUNT, server }).clientFactory }),
    };
  };
}

async function reconcile(argv: string[], cwd: string, server: LocalTelegramServer): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = { stdout: { write: (text: string) => (stdout += text) }, stderr: { write: (text: string) => (stderr += text), isTTY: true }, env: {}, cwd, signal: new AbortController().signal };
  const code = await reconcileCommand(argv, io, localTelegram(server));
  return { code, stdout, stderr };
}

describe('offchannel reconcile telegram', () => {
  it('records what the archive missed, once, with a progress bar and no message text on the terminal', async () => {
    const peer = createLocalTelegramPeer({ account: ACCOUNT });
    const { dir } = await workspace(peer);
    const texts = ['before linking: BUY 100 ACME', 'before linking: confirmed', 'lost in a gap: SELL 50 ACME'];
    const direct = peer.historyOnlyText(texts[0] as string);
    peer.historyOnlyText(texts[1] as string);
    peer.historyOnlyText(texts[2] as string, { chat: 'group' });

    const first = await reconcile(['telegram', '--account', ACCOUNT], dir, peer.server);
    expect(first.stderr).toMatch(/reconciling \[#+\] 100% 2\/2 chats/);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^reconciled telegram:desk-42: 2 chats, 3 messages compared with the archive\n {2}recorded: 3 missing, 0 edits, 0 deletes/);

    peer.silentEdit(direct, 'before linking: BUY 200 ACME');
    const second = await reconcile(['telegram', '--account', ACCOUNT, '--json', '--chat', direct.peer], dir, peer.server);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ stream: `telegram:${ACCOUNT}`, chats: 1, messagesChecked: 2, missingRecorded: 0, editsRecorded: 1, deletesRecorded: 0, skipped: [], interrupted: false });

    peer.silentDelete(direct);
    const third = JSON.parse((await reconcile(['telegram', '--account', ACCOUNT, '--json'], dir, peer.server)).stdout) as Record<string, unknown>;
    expect(third).toMatchObject({ missingRecorded: 0, editsRecorded: 0, deletesRecorded: 1 });
    const again = JSON.parse((await reconcile(['telegram', '--account', ACCOUNT, '--json'], dir, peer.server)).stdout) as Record<string, unknown>;
    expect(again).toMatchObject({ missingRecorded: 0, editsRecorded: 0, deletesRecorded: 0, recordsWritten: 0 });

    for (const run of [first, second]) for (const text of [...texts, 'BUY 200']) expect(run.stdout + run.stderr).not.toContain(text.split(': ')[1]);
    const verified = await runCli(['verify', path.join(dir, 'archive'), '--json'], dir);
    expect(verified.code).toBe(0);
    // 5 records from Telegram, the telegram-session record, and one catch-up record per start (4).
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, streams: [{ stream: `telegram:${ACCOUNT}`, records: 10, ok: true }] });
  });

  it('refuses while capture holds the session, and names bad arguments and config', async () => {
    const peer = createLocalTelegramPeer({ account: ACCOUNT, leaseTtlMs: 60_000 });
    const { dir, state } = await workspace(peer, [{ channel: 'telegram', route: 'business', account: 'bot-desk', secretTokenFile: './webhook-token', listen: { port: 1 } }]);
    const skipped = await reconcile(['telegram', '--account', ACCOUNT, '--chat', '777'], dir, peer.server);
    expect(skipped.code).toBe(1);
    expect(skipped.stdout).toContain('not checked: chat 777 (PEER_NOT_CACHED)');

    // A running capture of the same account (another process, as far as the lease can tell).
    const capture = new Recorder({ sink: createMemorySink(), allowVolatileSink: true });
    await peer.start({ recorder: capture, state });
    try {
      const busy = await reconcile(['telegram', '--account', ACCOUNT], dir, peer.server);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toMatch(/\[TELEGRAM_SESSION_IN_USE\]\nTo reconcile while capturing, give the account's config entry "reconcile"/);
    } finally {
      await peer.stop();
      await capture.close();
    }

    const usage = async (argv: string[]): Promise<string> => {
      const result = await runCli(['reconcile', ...argv], dir);
      expect(result.code).toBe(2);
      return result.stderr;
    };
    expect(await usage(['signal', '--account', ACCOUNT])).toMatch(/Signal cannot be reconciled: it gives a linked device no message history/);
    expect(await usage(['matrix', '--account', ACCOUNT])).toMatch(/reconcile needs one channel: telegram, imessage or whatsapp/);
    expect(await usage(['whatsapp', '--account', ACCOUNT, '--limit', '5'])).toMatch(/--chat, --dialogs and --limit are for telegram/);
    expect(await usage(['whatsapp', '--account', ACCOUNT, '--timeout', '5'])).toMatch(/--timeout "5" is not a duration/);
    expect(await usage(['telegram', '--account', ACCOUNT, '--count', '5'])).toMatch(/--timeout and --count are for whatsapp/);
    expect(await usage(['telegram'])).toMatch(/--account <name> is required/);
    expect(await usage(['telegram', '--account', ACCOUNT, '--limit', '0'])).toMatch(/--limit takes a whole number from 1 to 10000, not "0"/);
    expect(await usage(['telegram', '--account', ACCOUNT, '--chat', 'dana'])).toMatch(/--chat takes a marked chat id/);
    expect(await usage(['telegram', '--account', ACCOUNT, '--chat', '1', '--dialogs', '3'])).toMatch(/give --chat or --dialogs, not both/);
    expect(await usage(['telegram', '--account', 'nobody'])).toMatch(/config\.connectors has no telegram connector for account "nobody"/);
    expect(await usage(['telegram', '--account', 'bot-desk'])).toMatch(/Bot API Business route, which cannot read chat history/);
  });
});
