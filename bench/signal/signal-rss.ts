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
import { measurePerAccount, reportSettledMemory } from '../shared/rss-per-account.ts';

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
    await reportSettledMemory(accounts);
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
  measurePerAccount({ script: fileURLToPath(import.meta.url), counts: values.counts, args: ['--messages', String(MESSAGES)], title: `Signal memory per connected account (libsignal fake chat, ${MESSAGES} messages each)`, json: values.json, extra: { messagesPerAccount: MESSAGES } });
}
