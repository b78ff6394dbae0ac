/**
 * bench/signal — envelopes/s end to end next to bare libsignal decryption of the same traffic.
 *
 *   bare         libsignal signalDecryptPreKey on the envelope's ciphertext, stores in memory
 *   one-at-a-time EnvelopeProcessor.process per envelope: parse → decrypt (staged state) →
 *                unpad → parse Content → map → Recorder + FsSink (fdatasync) → commit state
 *                journal to the encrypted state store (fsync); the connector before the runtime
 *   connector    the SignalConnector on the connector runtime, envelopes delivered through
 *                libsignal's fake chat connection: staged batches (decrypt in order, one group
 *                commit, one state commit), then the 200s; timed until the last 200
 *
 * Each run decrypts N messages of the same sizes from one sender to a fresh receiver (Signal
 * ciphertext decrypts only once). Archive and state are on disk under the OS temp directory.
 * Bare and connector runs alternate for `--rounds` rounds (default 3) and the medians are
 * compared, so that other load on the machine hits both alike; one-at-a-time runs once.
 * Usage: node --conditions=@offchannel/source bench/signal/signal-bench.ts [--envelopes N] [--rounds R] [--json]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Recorder, createConnectorContext, noopLogger } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import {
  type Party,
  type Receiver,
  encryptTo,
  envelopeBytes,
  makeParty,
  makeReceiver,
  startSession,
  tempStateStore,
  textContent,
} from '../../packages/connectors/signal/src/__fixtures__/signal-parties.ts';
import { linkedDevice, TEST_TRUST_ROOT } from '../../packages/connectors/signal/src/__fixtures__/linked-device.ts';
import { EnvelopeProcessor } from '../../packages/connectors/signal/src/envelope-processor.ts';
import { createSignalConnector } from '../../packages/connectors/signal/src/signal-connector.ts';
import { decryptEnvelope } from '../../packages/connectors/signal/src/decrypt-envelope.ts';
import { decodeEnvelope } from '../../packages/connectors/signal/src/proto/signal-content.ts';

const { values } = parseArgs({ options: { envelopes: { type: 'string', default: '500' }, rounds: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } } });
const N = Number(values.envelopes);
const ROUNDS = Number(values.rounds);
const TEXT = 'Indicative levels for the 5y: 4.12 / 4.15, size up to 50m. '.repeat(8);

async function traffic(): Promise<{ receiver: Receiver; sender: Party; envelopes: Uint8Array[] }> {
  const receiver = await makeReceiver();
  const sender = await makeParty(1);
  await startSession(sender, receiver, 10);
  const envelopes: Uint8Array[] = [];
  for (let i = 0; i < N; i++) {
    const { type, body } = await encryptTo(sender, receiver, textContent(TEXT, 1_763_700_000_000 + i));
    envelopes.push(envelopeBytes({ type, content: body, source: sender, clientTimestamp: 1_763_700_000_000 + i }));
  }
  return { receiver, sender, envelopes };
}

const decryptContext = (r: Receiver) => ({
  selfAci: r.aci,
  selfPni: r.pni,
  deviceId: r.deviceId,
  aci: r.stores,
  pni: r.pniStores,
  senderKeys: r.senderKeys,
  trustRoots: [],
});

/** Bare: decrypt only, state stays in memory (never committed). Seconds. */
async function bareRun(): Promise<number> {
  const bare = await traffic();
  const begin = performance.now();
  for (const bytes of bare.envelopes) await decryptEnvelope(decodeEnvelope(bytes), decryptContext(bare.receiver));
  return (performance.now() - begin) / 1000;
}

/** The connector on the runtime: batches, one group commit and one state commit per batch. Seconds until the last 200. */
async function connectorRun(): Promise<number> {
  const root = await tempStateStore();
  const device = await linkedDevice(root, 'signal:bench');
  const ids: string[] = [];
  for (let i = 0; i < N; i++) ids.push(await device.message(TEXT));
  const archiveDir = await mkdtemp(path.join(tmpdir(), 'offchannel-signal-bench-'));
  const archive = await openFsSink({ dir: archiveDir });
  const archiveRecorder = new Recorder({ sink: archive });
  const connector = createSignalConnector({ account: 'bench', trustRoots: [TEST_TRUST_ROOT], net: device.net });
  await connector.start(createConnectorContext({ recorder: archiveRecorder, connector, state: root, signal: new AbortController().signal }));
  const begin = performance.now();
  for (const id of ids) device.deliver(id);
  while (device.acknowledged.length < N) await new Promise((resolve) => setTimeout(resolve, 1));
  const seconds = (performance.now() - begin) / 1000;
  const status = connector.status();
  await connector.stop();
  await archiveRecorder.close();
  await archive.close();
  await rm(archiveDir, { recursive: true, force: true });
  if (status.captured !== N) throw new Error(`expected ${N} records, got ${status.captured}`);
  return seconds;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const bareRuns: number[] = [];
const connectorRuns: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  bareRuns.push(await bareRun());
  connectorRuns.push(await connectorRun());
}
const bareSeconds = median(bareRuns);
const connectorSeconds = median(connectorRuns);

// End to end: durable record, then durable state commit, per envelope.
const e2e = await traffic();
const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-signal-bench-'));
const sink = await openFsSink({ dir });
const recorder = new Recorder({ sink });
const ctx = createConnectorContext({
  recorder,
  connector: { channel: 'signal', account: 'bench', source: { package: '@offchannel/signal', version: 'bench' } },
  state: await tempStateStore(),
  signal: new AbortController().signal,
});
const processor = new EnvelopeProcessor({
  state: e2e.receiver.state,
  decrypt: decryptContext(e2e.receiver),
  capture: (input) => ctx.capture(input),
  logger: noopLogger,
  fetcher: async () => new Uint8Array(0),
  cdnUrls: {},
  maxAttachmentBytes: 0,
  identityChanges: e2e.receiver.identityChanges,
});
const start = performance.now();
let recorded = 0;
for (const bytes of e2e.envelopes) {
  const outcome = await processor.process(bytes);
  if (outcome.status === 'recorded') recorded += outcome.records;
}
const e2eSeconds = (performance.now() - start) / 1000;
await recorder.close();
await sink.close();
await rm(dir, { recursive: true, force: true });
if (recorded !== N) throw new Error(`expected ${N} records, got ${recorded}`);

const result = {
  envelopes: N,
  bareDecryptPerSecond: Math.round(N / bareSeconds),
  oneAtATimePerSecond: Math.round(N / e2eSeconds),
  connectorPerSecond: Math.round(N / connectorSeconds),
  oneAtATimeRatio: Number((bareSeconds / e2eSeconds).toFixed(3)),
  connectorRatio: Number((bareSeconds / connectorSeconds).toFixed(3)),
  connectorRatioPerRound: bareRuns.map((bare, i) => Number((bare / (connectorRuns[i] as number)).toFixed(3))),
};
if (values.json) console.log(JSON.stringify(result));
else {
  console.log(`signal bench, ${N} envelopes of ${TEXT.length} chars, medians of ${ROUNDS} alternating rounds`);
  console.log(`  bare libsignal decrypt          ${result.bareDecryptPerSecond} envelopes/s`);
  console.log(`  one at a time (durable)         ${result.oneAtATimePerSecond} envelopes/s  (${result.oneAtATimeRatio} of bare)`);
  console.log(`  connector, batched (durable)    ${result.connectorPerSecond} envelopes/s  (${result.connectorRatio} of bare; per round ${result.connectorRatioPerRound.join(', ')})`);
  console.log(`  target ≥ 1,000 envelopes/s end to end: ${result.connectorPerSecond >= 1000 ? 'PASS' : 'FAIL'}`);
}
