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
import { measurePerAccount, reportSettledMemory } from '../shared/rss-per-account.ts';

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
    await reportSettledMemory(accounts);
    for (const { connector } of running) await connector.stop();
    await recorder.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (values.child !== undefined) {
  await child(Number(values.child));
} else {
  measurePerAccount({ script: fileURLToPath(import.meta.url), counts: values.counts, args: ['--messages', String(MESSAGES)], title: `WhatsApp memory per connected account (offline sockets, ${MESSAGES} messages each)`, json: values.json, extra: { messagesPerAccount: MESSAGES } });
}
