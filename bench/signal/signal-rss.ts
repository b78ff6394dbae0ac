/**
 * bench/signal/signal-rss — memory per connected Signal account (issue "One connector runtime",
 * deliver 6). Each run is a fresh process holding N running Signal connectors, each a linked
 * device with its keys in its own scope of one encrypted state store, connected through
 * libsignal's fake chat connection (the real libsignal chat listener, protocol stores and
 * runtime; no sockets), all recording through one Recorder into one FsSink. Every account
 * receives `--messages` real encrypted texts from a contact, then the process is idle and
 * garbage-collected and its RSS read. Per account = (RSS(N) − RSS(1)) / (N − 1).
 *
 * Usage: node --expose-gc --conditions=@offchannel/source bench/signal/signal-rss.ts [--counts 1,50] [--messages 50] [--json]
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Recorder, createConnectorContext } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { linkedDevice, TEST_TRUST_ROOT } from '../../packages/connectors/signal/src/__fixtures__/linked-device.ts';
import { tempStateStore } from '../../packages/connectors/signal/src/__fixtures__/signal-parties.ts';
import { createSignalConnector } from '../../packages/connectors/signal/src/signal-connector.ts';

const { values } = parseArgs({ options: { counts: { type: 'string', default: '1,50' }, messages: { type: 'string', default: '50' }, child: { type: 'string' }, json: { type: 'boolean', default: false } } });
const MESSAGES = Number(values.messages);
const TEXT = 'Indicative levels for the 5y: 4.12 / 4.15, size up to 50m.';

async function child(accounts: number): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-signal-rss-'));
  try {
    const sink = await openFsSink({ dir: path.join(dir, 'archive') });
    const recorder = new Recorder({ sink });
    const state = await tempStateStore();
    const running = [];
    for (let a = 0; a < accounts; a++) {
      const device = await linkedDevice(state, `signal:rss-${a}`);
      const connector = createSignalConnector({ account: `rss-${a}`, trustRoots: [TEST_TRUST_ROOT], net: device.net });
      await connector.start(createConnectorContext({ recorder, connector, state, signal: new AbortController().signal }));
      running.push({ connector, device });
    }
    for (const { device } of running) {
      const ids: string[] = [];
      for (let i = 0; i < MESSAGES; i++) ids.push(await device.message(`${TEXT} #${i}`));
      for (const id of ids) device.deliver(id);
      while (device.acknowledged.length < MESSAGES) await new Promise((resolve) => setTimeout(resolve, 2));
    }
    for (let i = 0; i < 3; i++) {
      (globalThis as { gc?: () => void }).gc?.();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const { rss, heapUsed } = process.memoryUsage();
    process.stdout.write(JSON.stringify({ accounts, rss, heapUsed }));
    for (const { connector } of running) await connector.stop();
    await recorder.close();
    await sink.close();
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
    console.log(`Signal memory per connected account (libsignal fake chat, ${MESSAGES} messages each), ${result.node}`);
    for (const run of runs) console.log(`  ${String(run.accounts).padStart(3)} account(s): RSS ${mib(run.rss).toFixed(1)} MiB, heap ${mib(run.heapUsed).toFixed(1)} MiB`);
    console.log(`  per account: ${result.perAccountMiB} MiB RSS → about ${result.accountsPer24GiBAt50Percent.toLocaleString('en-US')} accounts on a 24 GiB host at half its memory`);
  }
}
