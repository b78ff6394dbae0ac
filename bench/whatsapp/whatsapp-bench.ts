/**
 * bench/whatsapp — what the WhatsApp connector's normalization costs, next to Baileys' own decode.
 *
 * For one realistic mix of messages (text, replies, plaintext and encrypted edits, reactions,
 * revokes, group stubs, documents), built with Baileys' own builders, side by side:
 *   decode      Baileys' own decode of the same bytes: proto.WebMessageInfo.decode +
 *               normalizeMessageContent + getContentType (what any Baileys consumer pays)
 *   normalize   our path without I/O: freezeMessage (protobuf encode at the tap) + mapEnvelope
 *               (decode, classify, decrypt encrypted edits, raw evidence blob)
 *   recorded    normalize + Recorder + FsSink (real fdatasync, group commit), 64 captures in flight
 *               (the connector's worker window), then the same without blobs, and one at a time
 *   connector   the real connector end to end on the offline socket (Baileys' cleanMessage,
 *               event buffer and processMessage; tap; the connector runtime's pipelined
 *               mapping and group-committed captures; state store), against the target of
 *               3,000 messages/s (issue "One connector runtime", deliver 5): PASS or FAIL
 * Media bytes come from an in-memory seam (the loopback-CDN path is covered by tests), so the
 * figures measure our code, not HTTP.
 *
 * Usage: node --conditions=@offchannel/source bench/whatsapp/whatsapp-bench.ts [--messages N] [--json]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type CaptureInput, Recorder, type Sink, createConnectorContext, openStateStore } from '@offchannel/core';
import { createMemorySink } from '@offchannel/core/testing';
import { openFsSink } from '@offchannel/sink-fs';
import { createWhatsAppConnector, freezeMessage, mapEnvelope, type CapturedEnvelope, type MapDependencies } from '../../packages/connectors/whatsapp/src/index.ts';
// Relative imports: the bench package does not depend on @offchannel/whatsapp (Baileys comes through its testing entry).
import {
  JIDS,
  createOfflineSocketFactory,
  editContent,
  envelope,
  getContentType,
  groupStub,
  normalizeMessageContent,
  proto,
  reactionContent,
  revokeContent,
  secretEditContent,
  seedOfflineLink,
  textContent,
} from '../../packages/connectors/whatsapp/src/testing/index.ts';


const { values } = parseArgs({ options: { messages: { type: 'string', default: '20000' }, json: { type: 'boolean', default: false } } });
const COUNT = Number(values.messages);
/** Issue "One connector runtime", deliver 5: WhatsApp ≥ 3,000 messages/s through the offline driver. */
const TARGET_PER_SECOND = 3000;

async function corpus(): Promise<{ envelopes: CapturedEnvelope[]; secrets: Map<string, Uint8Array>; media: Uint8Array }> {
  const secrets = new Map<string, Uint8Array>();
  const envelopes: CapturedEnvelope[] = [];
  const media = randomBytes(20_000);
  const t0 = 1_790_000_000;
  let lastText = 'BENCH00000000';
  for (let i = 0; i < COUNT; i++) {
    const id = `BENCH${i.toString(16).padStart(8, '0')}`;
    const t = t0 + i;
    const from = i % 3 === 0 ? JIDS.me : JIDS.alice;
    const group = i % 5 === 0 ? JIDS.group : undefined;
    const where = { from, id, t, ...(group ? { group } : {}), ...(from === JIDS.alice ? { alt: JIDS.aliceLid } : {}) };
    const previous = { remoteJid: JIDS.me, fromMe: true, id: lastText };
    const slot = i % 20;
    let message;
    if (slot < 11) {
      const secret = randomBytes(32);
      secrets.set(id, secret);
      lastText = id;
      message = envelope(await textContent(`Indicative ${i}: 5y at 4.12 / 4.15, size up to ${i % 50}m. Call me before the close.`, from, secret), where);
    } else if (slot < 13) message = envelope(await editContent(`Corrected ${i}: 4.13 / 4.16`, previous), where);
    else if (slot < 14) {
      // the original's author edits it (their own message: the key's fromMe is true from their side)
      const secret = secrets.get(previous.id) ?? randomBytes(32);
      message = envelope(secretEditContent({ text: `Corrected ${i}`, target: previous, secret, originalSender: JIDS.alice, editor: JIDS.alice }), { ...where, from: JIDS.alice });
    } else if (slot < 17) message = envelope(await reactionContent(previous, '👍'), where);
    else if (slot < 18) message = envelope(await revokeContent(previous), where);
    else if (slot < 19) message = groupStub(proto.WebMessageInfo.StubType.GROUP_PARTICIPANT_ADD, [JSON.stringify({ id: JIDS.bobLid, phoneNumber: JIDS.bob })], { from: JIDS.alice, group: JIDS.group, id, t });
    else message = envelope(proto.Message.create({ documentMessage: { url: 'https://mmg.whatsapp.net/x', mediaKey: randomBytes(32), fileLength: media.length, mimetype: 'application/pdf', fileName: `t${i}.pdf` } }), where);
    envelopes.push(freezeMessage(message, i % 7 === 0 ? 'append' : 'notify'));
  }
  return { envelopes, secrets, media };
}

/** Mapping needs no media: a media message maps to its pending placeholder; the connector downloads after capture. */
function deps(secrets: Map<string, Uint8Array>): MapDependencies {
  return {
    me: { id: JIDS.me, lid: JIDS.meLid },
    aliases: (jid) => (jid === JIDS.alice ? [JIDS.aliceLid] : []),
    secretOf: (_chat, id) => secrets.get(id),
  };
}

async function main(): Promise<void> {
  const { envelopes, secrets, media } = await corpus();
  const d = deps(secrets);

  // Baileys' own decode (baseline)
  let t = performance.now();
  let types = 0;
  const decodeCpu = process.cpuUsage();
  for (const e of envelopes) if (getContentType(normalizeMessageContent(proto.WebMessageInfo.decode(e.bytes).message))) types++;
  const decodePerSecond = envelopes.length / ((performance.now() - t) / 1000);
  const decodeCpuUs = cpuMicros(decodeCpu) / envelopes.length;

  // normalize only: tap encode + mapping
  const decoded = envelopes.map((e) => proto.WebMessageInfo.decode(e.bytes));
  t = performance.now();
  const inputs: CaptureInput[] = [];
  for (let i = 0; i < envelopes.length; i++) {
    const frozen = freezeMessage(decoded[i] as unknown as Parameters<typeof freezeMessage>[0], envelopes[i]!.origin, { receivedAt: 0 });
    inputs.push((mapEnvelope(frozen, d)).input);
  }
  const normalizePerSecond = envelopes.length / ((performance.now() - t) / 1000);

  // normalize + Recorder + FsSink
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-wa-bench-'));
  try {
    const recorder = new Recorder({ sink: await openFsSink({ dir }) });
    const writer = recorder.writer({ channel: 'whatsapp', account: 'bench', source: { package: '@offchannel-bench/bench', version: '0' } });
    // like the connector's worker: map in order, at most WINDOW captures in flight
    const WINDOW = 64;
    t = performance.now();
    const inflight: Promise<unknown>[] = [];
    for (let i = 0; i < envelopes.length; i++) {
      const frozen = freezeMessage(decoded[i] as unknown as Parameters<typeof freezeMessage>[0], envelopes[i]!.origin, { receivedAt: 0 });
      inflight.push(writer.capture((mapEnvelope(frozen, d)).input));
      if (inflight.length >= WINDOW) await inflight.shift();
    }
    await Promise.all(inflight);
    const recordedPerSecond = envelopes.length / ((performance.now() - t) / 1000);
    // one capture at a time (each waits for its own fsync)
    const serialWriter = recorder.writer({ channel: 'whatsapp', account: 'bench-serial', source: { package: '@offchannel-bench/bench', version: '0' } });
    const serialCount = Math.min(envelopes.length, 1000);
    t = performance.now();
    for (let i = 0; i < serialCount; i++) {
      const frozen = freezeMessage(decoded[i] as unknown as Parameters<typeof freezeMessage>[0], envelopes[i]!.origin, { receivedAt: 0 });
      await serialWriter.capture((mapEnvelope(frozen, d)).input);
    }
    const serialPerSecond = serialCount / ((performance.now() - t) / 1000);
    // the same records without their raw-evidence blobs, to show what one fsync'd blob per record costs
    const writer2 = recorder.writer({ channel: 'whatsapp', account: 'bench-noraw', source: { package: '@offchannel-bench/bench', version: '0' } });
    t = performance.now();
    const stripped = inputs.map(({ raw: _raw, ...rest }) => (rest.attachments ? { ...rest, attachments: rest.attachments.map((a) => ('status' in a ? a : { status: 'unavailable' as const, reason: 'bench' })) } : rest));
    const window2: Promise<unknown>[] = [];
    for (const input of stripped) {
      window2.push(writer2.capture(input));
      if (window2.length >= WINDOW) await window2.shift();
    }
    await Promise.all(window2);
    const withoutRawPerSecond = envelopes.length / ((performance.now() - t) / 1000);
    await recorder.close();

    // the whole connector: offline socket (Baileys' cleanMessage + event buffer + processMessage),
    // emitter tap, runtime (pipelined mapping, group commit), Recorder + FsSink, secret index in
    // the state store; then the same into a memory sink, to separate the connector from the disk
    const wholeConnector = async (sink: Sink, name: string): Promise<{ perSecond: number; cpuUs: number }> => {
      const connectorRecorder = new Recorder({ sink, allowVolatileSink: true });
      const state = await openStateStore({ dir: path.join(dir, `state-${name}`), key: randomBytes(32) });
      const sockets = createOfflineSocketFactory();
      const connector = createWhatsAppConnector({ account: `bench-${name}`, socketFactory: sockets.factory, download: async () => media });
      const ctx = createConnectorContext({ recorder: connectorRecorder, connector, state, signal: new AbortController().signal });
      await seedOfflineLink(ctx.state);
      await connector.start(ctx);
      const socket = sockets.current();
      const started = performance.now();
      const cpu = process.cpuUsage();
      for (let i = 0; i < envelopes.length; i++) {
        const message = proto.WebMessageInfo.decode(envelopes[i]!.bytes) as unknown as Parameters<typeof socket.deliver>[0];
        await socket.deliver(message, envelopes[i]!.origin === 'append' ? 'append' : 'notify');
      }
      await connector.whenIdle();
      const perSecond = envelopes.length / ((performance.now() - started) / 1000);
      const cpuUs = cpuMicros(cpu) / envelopes.length;
      await connector.stop();
      await connectorRecorder.close();
      return { perSecond, cpuUs };
    };
    const { perSecond: connectorPerSecond } = await wholeConnector(await openFsSink({ dir: path.join(dir, 'connector') }), 'fs');
    const { perSecond: connectorMemoryPerSecond, cpuUs: connectorMemoryCpuUs } = await wholeConnector(createMemorySink(), 'memory');

    const kinds: Record<string, number> = {};
    for (const input of inputs) kinds[input.kind] = (kinds[input.kind] ?? 0) + 1;
    const result = {
      node: process.version,
      messages: envelopes.length,
      mix: kinds,
      contentTypesFound: types,
      decodePerSecond: Math.round(decodePerSecond),
      normalizePerSecond: Math.round(normalizePerSecond),
      recordedPerSecond: Math.round(recordedPerSecond),
      recordedWithoutBlobsPerSecond: Math.round(withoutRawPerSecond),
      recordedOneAtATimePerSecond: Math.round(serialPerSecond),
      connectorPerSecond: Math.round(connectorPerSecond),
      connectorMemorySinkPerSecond: Math.round(connectorMemoryPerSecond),
      // CPU time (all threads) per message: what a quiet core could do, less sensitive to a shared machine
      decodeCpuMicrosPerMessage: Number(decodeCpuUs.toFixed(2)),
      connectorMemorySinkCpuMicrosPerMessage: Number(connectorMemoryCpuUs.toFixed(1)),
      connectorMemorySinkPerCpuSecond: Math.round(1e6 / connectorMemoryCpuUs),
      connectorCostVsDecode: Number((decodePerSecond / connectorPerSecond).toFixed(1)),
      connectorShareOfDecode: Number((connectorPerSecond / decodePerSecond).toFixed(4)),
      target: TARGET_PER_SECOND,
      pass: connectorPerSecond >= TARGET_PER_SECOND,
      normalizeCostVsDecode: Number((decodePerSecond / normalizePerSecond).toFixed(1)),
      recordedCostVsDecode: Number((decodePerSecond / recordedPerSecond).toFixed(1)),
    };
    if (values.json) console.log(JSON.stringify(result));
    else {
      console.log(`WhatsApp bench, ${result.messages} messages, mix ${JSON.stringify(kinds)}, ${result.node}`);
      console.log(`  Baileys decode            ${result.decodePerSecond.toLocaleString('en-US')} msg/s (baseline)`);
      console.log(`  tap encode + mapEnvelope  ${result.normalizePerSecond.toLocaleString('en-US')} msg/s  (${result.normalizeCostVsDecode}x the decode cost)`);
      console.log(`  + Recorder + FsSink       ${result.recordedPerSecond.toLocaleString('en-US')} records/s  (${result.recordedCostVsDecode}x the decode cost)`);
      console.log(`  same records, no blobs    ${result.recordedWithoutBlobsPerSecond.toLocaleString('en-US')} records/s  (raw evidence and media are one fsync'd blob each)`);
      console.log(`  one capture at a time     ${result.recordedOneAtATimePerSecond.toLocaleString('en-US')} records/s  (no group commit)`);
      console.log(`  whole connector, offline  ${result.connectorPerSecond.toLocaleString('en-US')} records/s  (${result.connectorCostVsDecode}x the decode cost; includes Baileys' processMessage)`);
      console.log(`  same, into a memory sink  ${result.connectorMemorySinkPerSecond.toLocaleString('en-US')} records/s  (the connector and runtime without the disk)`);
      console.log(`  CPU per message           memory-sink connector ${result.connectorMemorySinkCpuMicrosPerMessage} µs (${result.connectorMemorySinkPerCpuSecond.toLocaleString('en-US')} msg per CPU-second); decode ${result.decodeCpuMicrosPerMessage} µs`);
      console.log(`  end to end vs decode      ${result.connectorShareOfDecode} of Baileys' decode rate; target ${TARGET_PER_SECOND.toLocaleString('en-US')} msg/s: ${result.pass ? 'PASS' : 'FAIL'}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** CPU time (user + system, all threads) since `since`, µs. */
function cpuMicros(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return used.user + used.system;
}

await main();
