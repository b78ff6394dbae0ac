/**
 * bench/whatsapp/whatsapp-rss — memory per connected WhatsApp account (issue "One connector
 * runtime", deliver 6). Each run is a fresh process holding N running connectors on offline
 * sockets (Baileys' own receive path, event buffer, Signal repository per account), each with
 * its own state store, all recording through one Recorder into one FsSink; every account
 * receives `--messages` texts, then the process is idle and garbage-collected and its RSS read.
 * Per account = (RSS(N) − RSS(1)) / (N − 1).
 *
 * Usage: node --expose-gc --conditions=@offchannel/source bench/whatsapp/whatsapp-rss.ts [--counts 1,50] [--messages 100] [--json]
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Recorder, createConnectorContext, openStateStore } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { createWhatsAppConnector } from '../../packages/connectors/whatsapp/src/index.ts';
import { JIDS, createOfflineSocketFactory, envelope, seedOfflineLink, textContent } from '../../packages/connectors/whatsapp/src/testing/index.ts';

const { values } = parseArgs({ options: { counts: { type: 'string', default: '1,50' }, messages: { type: 'string', default: '100' }, child: { type: 'string' }, json: { type: 'boolean', default: false } } });
const MESSAGES = Number(values.messages);

async function child(accounts: number): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-rss-'));
  try {
    const recorder = new Recorder({ sink: await openFsSink({ dir: path.join(dir, 'archive') }) });
    const state = await openStateStore({ dir: path.join(dir, 'state'), key: randomBytes(32) });
    const running = [];
    for (let a = 0; a < accounts; a++) {
      const sockets = createOfflineSocketFactory();
      const connector = createWhatsAppConnector({ account: `rss-${a}`, socketFactory: sockets.factory, download: async () => new Uint8Array(0) });
      const ctx = createConnectorContext({ recorder, connector, state, signal: new AbortController().signal });
      await seedOfflineLink(ctx.state);
      await connector.start(ctx);
      running.push({ connector, sockets });
    }
    for (const { connector, sockets } of running) {
      for (let i = 0; i < MESSAGES; i++) {
        const message = envelope(await textContent(`Indicative ${i}: 5y at 4.12 / 4.15, size up to ${i % 50}m.`, JIDS.alice), { from: JIDS.alice, id: `RSS${i.toString(16).padStart(8, '0')}`, t: 1_790_000_000 + i });
        await sockets.current().deliver(message, 'notify');
      }
      await connector.whenIdle();
    }
    for (let i = 0; i < 3; i++) {
      (globalThis as { gc?: () => void }).gc?.();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const { rss, heapUsed } = process.memoryUsage();
    process.stdout.write(JSON.stringify({ accounts, rss, heapUsed }));
    for (const { connector } of running) await connector.stop();
    await recorder.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (values.child !== undefined) {
  await child(Number(values.child));
} else {
  const self = fileURLToPath(import.meta.url);
  const runs = values.counts.split(',').map(Number).map((accounts) => {
    const out = execFileSync(process.execPath, ['--expose-gc', '--conditions=@offchannel/source', self, '--child', String(accounts), '--messages', String(MESSAGES)], { encoding: 'utf8', maxBuffer: 1 << 20 });
    return JSON.parse(out) as { accounts: number; rss: number; heapUsed: number };
  });
  const first = runs[0];
  const last = runs.at(-1);
  const mib = (bytes: number) => bytes / 1024 / 1024;
  const perAccount = first && last && last.accounts > first.accounts ? (last.rss - first.rss) / (last.accounts - first.accounts) : Number.NaN;
  const result = { node: process.version, messagesPerAccount: MESSAGES, runs, perAccountMiB: Number(mib(perAccount).toFixed(2)), accountsPer24GiBAt50Percent: Math.floor((24 * 1024 * 0.5) / mib(perAccount)) };
  if (values.json) console.log(JSON.stringify(result));
  else {
    console.log(`WhatsApp memory per connected account (offline sockets, ${MESSAGES} messages each), ${result.node}`);
    for (const run of runs) console.log(`  ${String(run.accounts).padStart(3)} account(s): RSS ${mib(run.rss).toFixed(1)} MiB, heap ${mib(run.heapUsed).toFixed(1)} MiB`);
    console.log(`  per account: ${result.perAccountMiB} MiB RSS → about ${result.accountsPer24GiBAt50Percent.toLocaleString('en-US')} accounts on a 24 GiB host at half its memory`);
  }
}
