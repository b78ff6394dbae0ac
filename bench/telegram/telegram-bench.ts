/**
 * bench/telegram — what capturing a Telegram update costs next to merely decoding it.
 *
 * A corpus of realistic updates (private, group and channel messages with entities, replies,
 * reactions, edits, id-only deletes) is serialized once with mtcute's TL serializer. Then, in
 * one process, side by side:
 *   decode        TL deserialization alone (`deserializeObject`): the baseline
 *   map           decode + `mapTelegramUpdate` (normalize to capture inputs)
 *   record-mem    decode + map + Recorder into an in-memory sink (hashing, canonical JSON, chain)
 *   record-fs     decode + map + Recorder into the file-system sink with real fsync, updates
 *                 captured one after another as the connector does (durable before the next)
 *   record-fs-64  the same with up to 64 updates in flight (what group commit could add)
 *   engine        end to end: N messages (`--engine`, default 20,000: a sustained backlog, not
 *                 start-up) that reached the local Telegram server while the connector was away,
 *                 fetched by mtcute's real updates engine (getDifference, answered in slices of
 *                 `--slice` updates as Telegram slices a long difference; 0: one answer),
 *                 mapped, and recorded into the fs sink with real fsync through the connector
 *                 runtime's pipelining (the backlog case); target ≥ 5,000 updates/s. `--index N`:
 *                 the account's message index already remembers N messages (a long-running
 *                 account; the default capacity is 200,000). The fs sink's blob writer threads
 *                 are started before the measured window (start-up, ~0.3 s of CPU, not backlog)
 *   engine-mem    the same backlog through the same path into an in-memory sink: what the
 *                 Telegram side (engine, evidence, mapping, index, runtime) costs without fsync
 *   reconcile     the real connector reconciling one chat of N messages that exist only in
 *                 history (pages of 100 from the local Telegram server; memory sink): first
 *                 run records each, the second finds everything archived (compare only)
 * Reported as updates/s and as the ratio to `decode` (CPU-only paths: best of `--rounds`).
 *
 * Usage: node --conditions=@offchannel/source bench/telegram/telegram-bench.ts [--updates N] [--fs N] [--engine N] [--slice N] [--index N] [--in-flight N] [--only engine] [--reconcile N] [--rounds N] [--dir DIR] [--keep] [--json]
 *
 * `--dir` puts the bench's working directory (state, archive) under DIR instead of the system's
 * temporary directory. CPU per update is reported split into user and system time: on ext4
 * mounted without a journal, creating a file can cost 100+ µs of system CPU when its block group
 * holds recently deleted inodes (the kernel skips them one by one), so the fs rows there swing
 * from run to run with what other processes deleted; the JSON's `workFilesystem` says which
 * kind of file system the run used (docs/capture.md, "Backlog throughput"), and
 * `engineFsArchiveFilesPerUpdate` how many files the archive holds per update afterwards (each
 * created and fsynced once: one blob of raw TL bytes per update, plus a few segment, checkpoint
 * and directory files per thousand).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Recorder, openStateStore } from '@offchannel/core';
import { createMemorySink } from '@offchannel/core/testing';
import { openFsSink } from '@offchannel/sink-fs';
import { encodeTl, mapTelegramUpdate, type MessageMemory } from '@offchannel/telegram';
import { LOCAL_IDS, createLocalTelegramPeer } from '@offchannel/telegram/testing';
import { Long, PeersIndex, type tl } from '@mtcute/core';
import { deserializeObject } from '@mtcute/core/utils.js';

const { values } = parseArgs({ options: { updates: { type: 'string', default: '50000' }, fs: { type: 'string', default: '1000' }, reconcile: { type: 'string', default: '5000' }, engine: { type: 'string', default: '20000' }, slice: { type: 'string', default: '1000' }, index: { type: 'string', default: '0' }, 'in-flight': { type: 'string' }, only: { type: 'string' }, rounds: { type: 'string', default: '3' }, dir: { type: 'string' }, keep: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } } });
const ROUNDS = Number(values.rounds);
const UPDATES = Number(values.updates);
const FS_UPDATES = Number(values.fs);
const RECONCILE = Number(values.reconcile);
const ENGINE = Number(values.engine);
/** Messages the account's message index already remembers when the engine rows start (a long-running account: up to `indexCapacity`). */
const INDEX = Number(values.index);
/** Updates per `getDifference` answer in the engine rows (Telegram slices a long difference; 0: one answer). */
const SLICE = Number(values.slice) > 0 ? Number(values.slice) : Number.POSITIVE_INFINITY;
/** The connector's pipelining window in the engine rows (omitted: the connector's default). */
const IN_FLIGHT = values['in-flight'] === undefined ? undefined : Number(values['in-flight']);
/** Issue "One connector runtime", deliver 5: Telegram through the real updates engine. */
const ENGINE_TARGET = 5000;
const SELF = 5_000_001;
const source = { package: '@offchannel-bench/bench', version: '0' };

const users: tl.TypeUser[] = Array.from({ length: 50 }, (_, index) => ({ _: 'user', id: 6_000_000 + index, accessHash: Long.fromNumber(index + 1), firstName: `Client ${index}`, username: `client_${index}` }));
const chats: tl.TypeChat[] = [
  { _: 'chat', id: 4_001, title: 'Deal desk', photo: { _: 'chatPhotoEmpty' }, participantsCount: 12, date: 1_700_000_000, version: 1 },
  { _: 'channel', id: 1_500_000_001, megagroup: true, accessHash: Long.fromNumber(9), title: 'Trading floor', photo: { _: 'chatPhotoEmpty' }, date: 1_700_000_000 },
];
const peers = PeersIndex.from({ users, chats });
const TEXT = 'Indicative levels for the 5y: 4.12 / 4.15, size up to 50m — confirm by 16:00?';

function update(index: number): tl.TypeUpdate {
  const from: tl.TypePeer = { _: 'peerUser', userId: 6_000_000 + (index % 50) };
  const peerId: tl.TypePeer = index % 3 === 0 ? { _: 'peerChat', chatId: 4_001 } : index % 3 === 1 ? { _: 'peerChannel', channelId: 1_500_000_001 } : from;
  const message: tl.RawMessage = {
    _: 'message',
    id: index + 1,
    out: index % 4 === 0,
    peerId,
    fromId: from,
    date: 1_700_000_000 + index,
    message: `${TEXT} #${index}`,
    entities: [{ _: 'messageEntityBold', offset: 0, length: 10 }, { _: 'messageEntityMentionName', offset: 11, length: 6, userId: 6_000_001 }],
    ...(index % 5 === 0 ? { replyTo: { _: 'messageReplyHeader', replyToMsgId: index } } : {}),
    ...(index % 7 === 0 ? { reactions: { _: 'messageReactions', results: [{ _: 'reactionCount', reaction: { _: 'reactionEmoji', emoticon: '👍' }, count: 1 }], recentReactions: [{ _: 'messagePeerReaction', peerId: from, date: 1_700_000_100, reaction: { _: 'reactionEmoji', emoticon: '👍' } }] } } : {}),
  };
  if (index % 20 === 19) return { _: 'updateDeleteMessages', messages: [index], pts: index, ptsCount: 1 };
  if (index % 10 === 9) return { _: 'updateEditMessage', message: { ...message, id: index, message: `${TEXT} (amended) #${index}`, editDate: 1_700_000_050 + index }, pts: index, ptsCount: 1 };
  return peerId._ === 'peerChannel' ? { _: 'updateNewChannelMessage', message, pts: index, ptsCount: 1 } : { _: 'updateNewMessage', message, pts: index, ptsCount: 1 };
}

const corpus = values.only === 'engine' ? [] : Array.from({ length: UPDATES }, (_, index) => encodeTl(update(index)));
const memory = new Map<number, MessageMemory>(Array.from({ length: UPDATES }, (_, index) => [index, { peer: '-4001', fingerprint: '', reactions: [], direction: 'inbound', type: 'group' }]));
const receivedAt = new Date('2026-11-21T09:30:00.000Z');

function normalize(bytes: Uint8Array) {
  const decoded = deserializeObject(bytes) as tl.TypeUpdate;
  return mapTelegramUpdate(decoded, { selfId: SELF, peers, raw: bytes, memory, receivedAt });
}

function rate(count: number, started: number): number {
  return count / ((performance.now() - started) / 1000);
}

/**
 * End to end through mtcute's real updates engine: ENGINE messages reach the local server while
 * the client misses them; one pushed update reveals the gap; mtcute fetches the backlog with
 * getDifference and the connector records it into the fs sink (real fsync, group commit).
 */
async function engineRate(work: string, sink: 'fs' | 'memory'): Promise<EngineRun> {
  const dir = path.join(work, `engine-${sink}`);
  const state = await openStateStore({ dir: path.join(dir, 'state'), unencrypted: true });
  const fsSink = sink === 'fs' ? await openFsSink({ dir: path.join(dir, 'archive') }) : undefined;
  // Start-up, not backlog: the fs sink's blob writer threads (~0.3 s of CPU for all of them) start
  // before the measured window, as in a capture process that has been running for a while.
  await fsSink?.prepareBlobWriters();
  const recorder = fsSink ? new Recorder({ sink: fsSink }) : new Recorder({ sink: createMemorySink(), allowVolatileSink: true });
  const peer = createLocalTelegramPeer({ account: 'engine', timeoutMs: 600_000, ...(IN_FLIGHT === undefined ? {} : { maxInFlight: IN_FLIGHT }) });
  peer.server.differenceSliceSize = SLICE;
  if (INDEX > 0) {
    // In the index's stored form (32 shards of [key, memory]); loading does not care which shard holds an entry.
    const shards: [string, MessageMemory][][] = Array.from({ length: 32 }, () => []);
    for (let id = 1; id <= INDEX; id++) {
      const peerId = String(6_000_000 + (id % 50));
      shards[id % 32]?.push([`${peerId}:${id}`, { peer: peerId, fingerprint: 'f'.repeat(64), reactions: [], direction: 'inbound', type: 'direct' }]);
    }
    await Promise.all(shards.map((entries, shard) => state.scope('telegram:engine').setJson(`message-index.${shard}`, entries)));
  }
  await peer.start({ recorder, state });
  const client: tl.TypePeer = { _: 'peerUser', userId: LOCAL_IDS.client };
  for (let index = 0; index < ENGINE; index++) {
    const message: tl.RawMessage = { _: 'message', id: peer.server.messageId(), peerId: client, fromId: client, date: peer.server.tick(), message: `${TEXT} #${index}`, entities: [{ _: 'messageEntityBold', offset: 0, length: 10 }] };
    peer.server.logCommon({ _: 'updateNewMessage', message, pts: 0, ptsCount: 1 });
  }
  const started = performance.now();
  const cpu = process.cpuUsage();
  const switches = process.resourceUsage();
  const last = peer.incomingText('the update that reveals the gap');
  await last;
  // Counted as they arrive (each capture is offered to the predicate once).
  let messages = 0;
  await peer.waitFor((input) => input.kind === 'message' && ++messages >= ENGINE + 1);
  const perSecond = rate(ENGINE, started);
  const used = process.cpuUsage(cpu);
  const { voluntaryContextSwitches, involuntaryContextSwitches } = process.resourceUsage();
  await peer.stop();
  await recorder.close();
  // CPU time per update (user + system, this process): steadier than the rate on a busy machine.
  return {
    // What stays on disk per update (archive and state): each file was created, and fsynced, once.
    filesPerUpdate: (await countFiles(path.join(dir, 'archive'))) / ENGINE,
    stateFilesPerUpdate: (await countFiles(path.join(dir, 'state'))) / ENGINE,
    perSecond,
    cpuMicros: (used.user + used.system) / ENGINE,
    userMicros: used.user / ENGINE,
    systemMicros: used.system / ENGINE,
    contextSwitches: (voluntaryContextSwitches + involuntaryContextSwitches - switches.voluntaryContextSwitches - switches.involuntaryContextSwitches) / ENGINE,
  };
}

/** Regular files under `dir` (0 if it does not exist). */
async function countFiles(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).length;
}

interface EngineRun {
  readonly perSecond: number;
  /** Files left in the archive (blobs, segments, checkpoints…) and in the state store, per update. */
  readonly filesPerUpdate: number;
  readonly stateFilesPerUpdate: number;
  /** CPU (user + system) of this process per update, µs. */
  readonly cpuMicros: number;
  readonly userMicros: number;
  readonly systemMicros: number;
  /** Context switches of this process (all threads) per update. */
  readonly contextSwitches: number;
}

/** The engine rows' per-update CPU, split (the fs row's system time depends on the file system). */
function engineCpu(memory: EngineRun, fs: EngineRun): Record<string, number> {
  const round = (value: number): number => Math.round(value);
  return {
    engineMemoryCpuMicrosPerUpdate: round(memory.cpuMicros),
    engineFsCpuMicrosPerUpdate: round(fs.cpuMicros),
    engineMemoryUserMicrosPerUpdate: round(memory.userMicros),
    engineMemorySystemMicrosPerUpdate: round(memory.systemMicros),
    engineFsUserMicrosPerUpdate: round(fs.userMicros),
    engineFsSystemMicrosPerUpdate: round(fs.systemMicros),
    engineFsContextSwitchesPerUpdate: Number(fs.contextSwitches.toFixed(1)),
    engineFsArchiveFilesPerUpdate: Number(fs.filesPerUpdate.toFixed(3)),
    engineFsStateFilesPerUpdate: Number(fs.stateFilesPerUpdate.toFixed(3)),
  };
}

/**
 * The file system holding `dir` as `<type>` (Linux: from /proc/self/mountinfo), with
 * `, no journal` for ext4 mounted without one (its sysfs `journal_task` reads `<none>`); `unknown`
 * elsewhere. Reported with the figures because it decides their system-CPU share.
 */
async function workFilesystem(dir: string): Promise<string> {
  try {
    let best: { point: string; type: string; source: string } | undefined;
    for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
      const [left, right] = line.split(' - ');
      const point = left?.split(' ')[4];
      const [type, source] = right?.split(' ') ?? [];
      if (point === undefined || type === undefined || source === undefined) continue;
      const inside = dir === point || dir.startsWith(point === '/' ? '/' : `${point}/`);
      if (inside && (best === undefined || point.length >= best.point.length)) best = { point, type, source };
    }
    if (best === undefined) return 'unknown';
    if (best.type !== 'ext4') return best.type;
    const task = await readFile(`/sys/fs/ext4/${path.basename(best.source)}/journal_task`, 'utf8').catch(() => '');
    return task.trim() === '<none>' ? 'ext4, no journal' : 'ext4';
  } catch {
    return 'unknown';
  }
}

/** `--only engine`: just the two engine rows (for profiling with `node --cpu-prof`). */
async function engineOnly(): Promise<void> {
  const work = await mkdtemp(path.join(values.dir ?? tmpdir(), 'offchannel-telegram-bench-'));
  try {
    const memory = await engineRate(work, 'memory');
    const fs = await engineRate(work, 'fs');
    console.log(JSON.stringify({ engine: ENGINE, index: INDEX, slice: Number.isFinite(SLICE) ? SLICE : 'none', inFlight: IN_FLIGHT ?? 'connector default', engineMemoryPerSecond: Math.round(memory.perSecond), engineFsPerSecond: Math.round(fs.perSecond), ...engineCpu(memory, fs), workFilesystem: await workFilesystem(work) }));
  } finally {
    // `--keep`: see bench/imessage (removing many files slows the next run on journal-less ext4).
    if (values.keep) console.error(`kept ${work}`);
    else await rm(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (values.only === 'engine') return engineOnly();
  const results: Record<string, number | string> = { node: process.version, updates: UPDATES, meanUpdateBytes: Math.round(corpus.reduce((sum, bytes) => sum + bytes.length, 0) / UPDATES) };
  // Warm up the JIT on every path.
  for (const bytes of corpus.slice(0, 2000)) normalize(bytes);

  // The machine may be shared: run the CPU-only paths in interleaved rounds and keep each one's best.
  let decode = 0;
  let map = 0;
  let sink = 0;
  let inputs = 0;
  for (let round = 0; round < ROUNDS; round++) {
    let started = performance.now();
    for (const bytes of corpus) sink += (deserializeObject(bytes) as { _: string })._.length;
    decode = Math.max(decode, rate(UPDATES, started));
    started = performance.now();
    inputs = 0;
    for (const bytes of corpus) inputs += normalize(bytes).length;
    map = Math.max(map, rate(UPDATES, started));
  }
  let t0: number;

  const memorySink = createMemorySink();
  const memoryRecorder = new Recorder({ sink: memorySink, allowVolatileSink: true });
  const memoryWriter = memoryRecorder.writer({ channel: 'telegram', account: 'bench', source });
  t0 = performance.now();
  const pending: Promise<unknown>[] = [];
  for (const bytes of corpus) for (const input of normalize(bytes)) pending.push(memoryWriter.capture(input));
  await Promise.all(pending);
  const recordMemory = rate(UPDATES, t0);
  await memoryRecorder.close();

  const work = await mkdtemp(path.join(values.dir ?? tmpdir(), 'offchannel-telegram-bench-'));
  try {
    const fsSink = await openFsSink({ dir: work });
    const fsRecorder = new Recorder({ sink: fsSink });
    const fsWriter = fsRecorder.writer({ channel: 'telegram', account: 'bench', source });
    t0 = performance.now();
    for (const bytes of corpus.slice(0, FS_UPDATES)) for (const input of normalize(bytes)) await fsWriter.capture(input);
    const recordFs = rate(FS_UPDATES, t0);
    // Same, but up to 64 updates in flight (what group commit could give a pipelined connector).
    t0 = performance.now();
    const inFlight = new Set<Promise<unknown>>();
    for (const bytes of corpus.slice(FS_UPDATES, FS_UPDATES * 6)) {
      for (const input of normalize(bytes)) {
        const capture = fsWriter.capture(input).finally(() => inFlight.delete(capture));
        inFlight.add(capture);
      }
      if (inFlight.size >= 64) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    const recordFsPipelined = rate(FS_UPDATES * 5, t0);
    await fsRecorder.close();

    const engineMemoryRun = await engineRate(work, 'memory');
    const engineFsRun = await engineRate(work, 'fs');
    const engineMemory = engineMemoryRun.perSecond;
    const engine = engineFsRun.perSecond;

    const peerState = await openStateStore({ dir: path.join(work, 'state'), unencrypted: true });
    const reconcileRecorder = new Recorder({ sink: createMemorySink(), allowVolatileSink: true });
    const peer = createLocalTelegramPeer({ account: 'bench' });
    await peer.start({ recorder: reconcileRecorder, state: peerState });
    for (let index = 0; index < RECONCILE; index++) peer.historyOnlyText(`${TEXT} #${index}`);
    const chat = String(LOCAL_IDS.client);
    t0 = performance.now();
    const recorded = await peer.connector.reconcile({ chats: [chat], limit: RECONCILE });
    const reconcileRecord = rate(recorded.messagesChecked, t0);
    t0 = performance.now();
    const compared = await peer.connector.reconcile({ chats: [chat], limit: RECONCILE });
    const reconcileCompare = rate(compared.messagesChecked, t0);
    await peer.stop();
    await reconcileRecorder.close();
    if (recorded.missingRecorded !== RECONCILE || compared.missingRecorded !== 0) throw new Error(`reconcile recorded ${recorded.missingRecorded} then ${compared.missingRecorded}; expected ${RECONCILE} then 0`);
    Object.assign(results, {
      decodePerSecond: Math.round(decode),
      mapPerSecond: Math.round(map),
      recordMemoryPerSecond: Math.round(recordMemory),
      recordFsSequentialPerSecond: Math.round(recordFs),
      recordFsPipelinedPerSecond: Math.round(recordFsPipelined),
      engineMemoryPerSecond: Math.round(engineMemory),
      engineFsPerSecond: Math.round(engine),
      engineInFlight: IN_FLIGHT ?? 'connector default',
      engineSlice: Number.isFinite(SLICE) ? SLICE : 'none',
      engineIndex: INDEX,
      ...engineCpu(engineMemoryRun, engineFsRun),
      workFilesystem: await workFilesystem(work),
      engineTarget: ENGINE_TARGET,
      engineVerdict: engine >= ENGINE_TARGET ? 'PASS' : 'FAIL',
      ratioEngineToDecode: Number((engine / decode).toFixed(4)),
      ratioEngineMemoryToDecode: Number((engineMemory / decode).toFixed(4)),
      reconcileRecordPerSecond: Math.round(reconcileRecord),
      reconcileComparePerSecond: Math.round(reconcileCompare),
      capturesPerUpdate: Number((inputs / UPDATES).toFixed(2)),
      ratioMapToDecode: Number((map / decode).toFixed(3)),
      ratioRecordMemoryToDecode: Number((recordMemory / decode).toFixed(3)),
      ratioRecordFsToDecode: Number((recordFs / decode).toFixed(4)),
      ratioRecordFsPipelinedToDecode: Number((recordFsPipelined / decode).toFixed(4)),
      ratioReconcileRecordToDecode: Number((reconcileRecord / decode).toFixed(4)),
      ratioReconcileCompareToDecode: Number((reconcileCompare / decode).toFixed(4)),
      checksum: sink,
    });
  } finally {
    // `--keep`: see bench/imessage (removing many files slows the next run on journal-less ext4).
    if (values.keep) console.error(`kept ${work}`);
    else await rm(work, { recursive: true, force: true });
  }
  if (values.json) {
    console.log(JSON.stringify(results, null, 2));
    return;
  }
  console.log(`Telegram capture bench (${UPDATES} updates, ~${String(results['meanUpdateBytes'])} TL bytes each, Node ${process.version})`);
  console.log(`  decode (TL only)            ${String(results['decodePerSecond']).padStart(9)} updates/s   1.000`);
  console.log(`  decode + map                ${String(results['mapPerSecond']).padStart(9)} updates/s   ${String(results['ratioMapToDecode'])}`);
  console.log(`  decode + map + Recorder/mem ${String(results['recordMemoryPerSecond']).padStart(9)} updates/s   ${String(results['ratioRecordMemoryToDecode'])}`);
  console.log(`  same, fs sink, sequential   ${String(results['recordFsSequentialPerSecond']).padStart(9)} updates/s   ${String(results['ratioRecordFsToDecode'])}  (${FS_UPDATES} updates, one fsync each)`);
  console.log(`  same, fs sink, 64 in flight ${String(results['recordFsPipelinedPerSecond']).padStart(9)} updates/s   ${String(results['ratioRecordFsPipelinedToDecode'])}  (${FS_UPDATES * 5} updates, group commit)`);
  console.log(`  engine → runtime → mem sink ${String(results['engineMemoryPerSecond']).padStart(9)} updates/s   ${String(results['ratioEngineMemoryToDecode'])}  (the same backlog into an in-memory sink: the Telegram side's ceiling; ${String(results['engineMemoryCpuMicrosPerUpdate'])} µs CPU each)`);
  console.log(`  engine → runtime → fs sink  ${String(results['engineFsPerSecond']).padStart(9)} updates/s   ${String(results['ratioEngineToDecode'])}  (${ENGINE} missed messages via getDifference in slices of ${String(results['engineSlice'])}, pipelined, ${String(results['engineFsCpuMicrosPerUpdate'])} µs CPU each = ${String(results['engineFsUserMicrosPerUpdate'])} user + ${String(results['engineFsSystemMicrosPerUpdate'])} system, on ${String(results['workFilesystem'])}, ${String(results['engineFsArchiveFilesPerUpdate'])} archive files per update; target ${ENGINE_TARGET}: ${String(results['engineVerdict'])})`);
  console.log(`  reconcile, recording        ${String(results['reconcileRecordPerSecond']).padStart(9)} messages/s  ${String(results['ratioReconcileRecordToDecode'])}  (${RECONCILE} history-only messages, memory sink)`);
  console.log(`  reconcile, all archived     ${String(results['reconcileComparePerSecond']).padStart(9)} messages/s  ${String(results['ratioReconcileCompareToDecode'])}  (compare only)`);
}

await main();
