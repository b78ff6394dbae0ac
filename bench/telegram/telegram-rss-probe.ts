/**
 * bench/telegram — resident memory per connected Telegram account: N connectors in one process,
 * each on mtcute's real client and updates engine with its own local Telegram server (the
 * offline driver), its own state scope and stream, each having captured 20 messages. Prints RSS
 * and heap after a full GC; run it for 1 and for 50 accounts and take the difference.
 *
 * Usage: node --expose-gc --conditions=@offchannel/source bench/telegram/telegram-rss-probe.ts [--accounts N] [--json]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Recorder, openStateStore } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { createLocalTelegramPeer } from '@offchannel/telegram/testing';

const { values } = parseArgs({ options: { accounts: { type: 'string', default: '1' }, json: { type: 'boolean', default: false } } });
const ACCOUNTS = Number(values.accounts);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

const work = await mkdtemp(path.join(tmpdir(), 'offchannel-telegram-rss-'));
try {
  const state = await openStateStore({ dir: path.join(work, 'state'), unencrypted: true });
  const recorder = new Recorder({ sink: await openFsSink({ dir: path.join(work, 'archive') }) });
  gc();
  const before = process.memoryUsage();
  const peers = [];
  for (let index = 0; index < ACCOUNTS; index++) {
    const peer = createLocalTelegramPeer({ account: `custodian-${index}` });
    await peer.start({ recorder, state });
    for (let n = 0; n < 20; n++) await peer.incomingText(`Indicative levels for the 5y #${n}`);
    peers.push(peer);
  }
  for (let round = 0; round < 3; round++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const after = process.memoryUsage();
  const result = { accounts: ACCOUNTS, rssMiB: +(after.rss / 2 ** 20).toFixed(1), heapUsedMiB: +(after.heapUsed / 2 ** 20).toFixed(1), rssGrowthMiB: +((after.rss - before.rss) / 2 ** 20).toFixed(1) };
  for (const peer of peers) await peer.stop();
  await recorder.close();
  console.log(values.json ? JSON.stringify(result) : `${ACCOUNTS} Telegram account(s): RSS ${result.rssMiB} MiB (growth ${result.rssGrowthMiB} MiB), heap used ${result.heapUsedMiB} MiB`);
} finally {
  await rm(work, { recursive: true, force: true });
}
