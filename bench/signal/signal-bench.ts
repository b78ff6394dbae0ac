/**
 * bench/signal — envelopes/s end to end next to bare libsignal decryption of the same traffic.
 *
 *   bare        libsignal signalDecryptPreKey on the envelope's ciphertext, stores in memory
 *   end-to-end  EnvelopeProcessor: parse envelope → decrypt (staged state) → unpad → parse
 *               Content → map → Recorder + FsSink (fdatasync) → commit state journal to the
 *               encrypted state store (fsync) — everything the connector does before its 200
 *
 * Both runs decrypt N messages of the same sizes from one sender to a fresh receiver (two
 * receivers, because Signal ciphertext decrypts only once). One envelope at a time, as the
 * connector does. Usage: node --conditions=@offchannel/source bench/signal/signal-bench.ts [--envelopes N] [--json]
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
import { EnvelopeProcessor } from '../../packages/connectors/signal/src/envelope-processor.ts';
import { decryptEnvelope } from '../../packages/connectors/signal/src/decrypt-envelope.ts';
import { decodeEnvelope } from '../../packages/connectors/signal/src/proto/signal-content.ts';

const { values } = parseArgs({ options: { envelopes: { type: 'string', default: '500' }, json: { type: 'boolean', default: false } } });
const N = Number(values.envelopes);
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

// Bare: decrypt only, state stays in memory (never committed).
const bare = await traffic();
let start = performance.now();
for (const bytes of bare.envelopes) await decryptEnvelope(decodeEnvelope(bytes), decryptContext(bare.receiver));
const bareSeconds = (performance.now() - start) / 1000;

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
start = performance.now();
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
  endToEndPerSecond: Math.round(N / e2eSeconds),
  ratio: Number((bareSeconds / e2eSeconds).toFixed(3)),
};
if (values.json) console.log(JSON.stringify(result));
else {
  console.log(`signal bench, ${N} envelopes of ${TEXT.length} chars, one at a time`);
  console.log(`  bare libsignal decrypt   ${result.bareDecryptPerSecond} envelopes/s`);
  console.log(`  end to end (durable)     ${result.endToEndPerSecond} envelopes/s`);
  console.log(`  end-to-end / bare        ${result.ratio}`);
}
