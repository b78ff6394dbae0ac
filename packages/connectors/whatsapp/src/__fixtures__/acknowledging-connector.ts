/**
 * Test child: the real connector on an offline socket, a memory archive (what is checked is
 * the state store, in `dir`), fed text messages as fast as it can. Each message's secret is sha256(its id), so the
 * parent can check them. Prints each acknowledged message id (the connector's `onAcknowledge`).
 * The parent SIGKILLs it at a random moment.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Recorder, createConnectorContext, openStateStore } from '@offchannel/core';
import { createMemorySink } from '@offchannel/core/testing';
import { createWhatsAppConnector } from '../whatsapp-connector.ts';
import { JIDS, envelope, textContent } from '../testing/fixtures.ts';
import { createOfflineSocketFactory } from '../testing/offline-socket.ts';
import { seedOfflineLink } from '../testing/offline-driver.ts';

const [dir, keyHex, run] = process.argv.slice(2) as [string, string, string];
const recorder = new Recorder({ sink: createMemorySink(), allowVolatileSink: true });
const state = await openStateStore({ dir: path.join(dir, 'state'), key: Buffer.from(keyHex, 'hex') });
const sockets = createOfflineSocketFactory();
const connector = createWhatsAppConnector({
  account: 'crash',
  socketFactory: sockets.factory,
  onAcknowledge: (ids) => { if (ids.length > 0) process.stdout.write(`${ids.join('\n')}\n`); },
});
const ctx = createConnectorContext({ recorder, connector, state, signal: new AbortController().signal });
await seedOfflineLink(ctx.state);
await connector.start(ctx);
const socket = sockets.current();
for (let i = 0; ; i++) {
  const id = `CRASH${run}X${i.toString(16).padStart(6, '0')}`;
  const secret = createHash('sha256').update(id).digest();
  const message = envelope(await textContent(`crash test ${i}`, JIDS.alice, secret), { from: JIDS.alice, id, t: 1_790_000_000 + i });
  await socket.deliver(message, 'notify');
  // Let the runtime acknowledge now and then, as live traffic would.
  if (i % 16 === 15) await new Promise((resolve) => setImmediate(resolve));
}
