/**
 * The capture host's witness client against real witnesses on loopback (in-process servers):
 * the 409 dance after a restart, a witness that refuses the log, one that answers with a bad
 * cosignature, one that never answers, and the verifier's policy on the result.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type CaptureInput,
  type Cosigner,
  Recorder,
  WitnessClient,
  cosignedFile,
  cosignerFromSeed,
  ed25519KeyFromSeed,
  generateCosigner,
  verifyArchive,
} from '@offchannel/core';
import { MemoryStorage, createMemorySink, createRecordingLogger } from '@offchannel/core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { type RunningWitnessServer, startWitnessServer } from './witness-server.ts';
import { WitnessService } from './witness-service.ts';
import { SnapshotKey } from './witness-snapshot.ts';
import { WitnessState } from './witness-state.ts';

const LOG_KEY = ed25519KeyFromSeed('archive.example/offchannel', new Uint8Array(32).fill(1));
const STREAM = 'demo:alice';
const source = { package: '@offchannel/test', version: '0.0.0' };

function message(index: number): CaptureInput {
  return { kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` };
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function witness(key: Cosigner, accept = [LOG_KEY.verifier]): Promise<RunningWitnessServer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-witness-client-'));
  const state = await WitnessState.open(dir, { key: SnapshotKey.fromCosigner(key) });
  const service = new WitnessService({ key, accept, state, now: () => 1_765_000_000 });
  const server = await startWitnessServer({ service, host: '127.0.0.1', port: 0 });
  cleanups.push(async () => {
    await server.close();
    state.close();
    await rm(dir, { recursive: true, force: true });
  });
  return server;
}

/** A loopback server that answers every request with `status` and `body` (or never, when `status` is 0). */
async function fakeWitness(status: number, body = ''): Promise<string> {
  const server: Server = createServer((request, response) => {
    request.resume();
    if (status === 0) return;
    response.writeHead(status, { 'content-type': 'text/plain' });
    response.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

async function run(storage: MemoryStorage, client: WitnessClient, records: number, from = 0): Promise<{ logger: ReturnType<typeof createRecordingLogger>; recorder: Recorder }> {
  const logger = createRecordingLogger();
  const recorder = new Recorder({ sink: createMemorySink(storage), allowVolatileSink: true, logger, checkpoints: { signer: LOG_KEY, everyRecords: 5, witnesses: client } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source });
  for (let index = from; index < from + records; index++) await writer.capture(message(index));
  await recorder.close();
  await client.settled();
  return { logger, recorder };
}

describe('witness client', () => {
  it('after a restart, learns the witness size from its 409 and resends with the consistency proof', { timeout: 60_000 }, async () => {
    const key = cosignerFromSeed('witness.example/w1', new Uint8Array(32).fill(2));
    const server = await witness(key);
    const storage = new MemoryStorage();
    await run(storage, new WitnessClient({ witnesses: [{ url: server.url, key: key.verifier }], sink: createMemorySink(storage), logger: createRecordingLogger() }), 12);
    // A new process (a new client knows nothing): it sends "old 0", is told 12, proves 12 → 22.
    await run(storage, new WitnessClient({ witnesses: [{ url: server.url, key: key.verifier }], sink: createMemorySink(storage), logger: createRecordingLogger() }), 10, 12);
    const sink = createMemorySink(storage);
    const sizes = await sink.checkpoints(STREAM);
    expect(sizes).toEqual([5, 10, 12, 17, 22]);
    for (const size of sizes) expect(await sink.getCheckpoint(STREAM, size, cosignedFile(key.verifier))).toBeDefined();
    const report = await verifyArchive(sink, { verifiers: [LOG_KEY.verifier], witnesses: [key.verifier] });
    expect(report.failures).toEqual([]);
    expect(report.streams[0]?.checkpoints?.at(-1)?.cosignedBy).toEqual([{ witness: 'witness.example/w1', time: new Date(1_765_000_000_000).toISOString() }]);
  });

  it('a witness that does not accept the log (404/403) is logged and not retried; capture and signing go on', { timeout: 60_000 }, async () => {
    const key = generateCosigner('witness.example/w1');
    const other = ed25519KeyFromSeed('elsewhere.example', new Uint8Array(32).fill(5));
    const server = await witness(key, [other.verifier]);
    const storage = new MemoryStorage();
    const logger = createRecordingLogger();
    await run(storage, new WitnessClient({ witnesses: [{ url: server.url, key: key.verifier }], sink: createMemorySink(storage), logger }), 12);
    expect(await createMemorySink(storage).checkpoints(STREAM)).toEqual([5, 10, 12]);
    expect(logger.lines.filter((line) => /the witness refuses this log \(unknown origin\)/.test(line.message ?? '')).map((line) => line.level)).toEqual(['error']);
    const report = await verifyArchive(createMemorySink(storage), { verifiers: [LOG_KEY.verifier], witnesses: [key.verifier] });
    expect(report.failures.map((failure) => failure.code)).toEqual(['WITNESS_QUORUM', 'UNWITNESSED_RECORDS']);
    expect(report.failures[0]?.message).toMatch(/has 0 valid witness cosignatures, the policy needs 1 \(missing: witness\.example\/w1\)/);
  });

  it('stores nothing from a witness whose 200 carries no valid cosignature by its key, and never waits on a silent one', { timeout: 60_000 }, async () => {
    const key = generateCosigner('witness.example/w1');
    const impostor = generateCosigner('witness.example/w1');
    const liar = await fakeWitness(200, impostor.cosign('x\n', 1));
    const silent = await fakeWitness(0);
    const storage = new MemoryStorage();
    const logger = createRecordingLogger();
    const client = new WitnessClient({
      witnesses: [
        { url: liar, key: key.verifier },
        { url: silent, key: impostor.verifier },
      ],
      sink: createMemorySink(storage),
      logger,
      timeoutMs: 500,
      retryMs: 60_000,
    });
    const began = performance.now();
    await run(storage, client, 12);
    client.close();
    // Capture never waited on the silent witness: 12 records and 3 checkpoints took far less than its timeouts would add up to.
    expect(performance.now() - began).toBeLessThan(20_000);
    const files = [...storage.checkpoints.keys()].filter((name) => name.includes('cosigned'));
    expect(files).toEqual([]);
    expect(logger.lines.some((line) => /without a valid cosignature by its configured key/.test(line.message ?? ''))).toBe(true);
  });

  it('refuses witness URLs that are not https or loopback http, or carry credentials', () => {
    const key = generateCosigner('witness.example/w1').verifier;
    for (const url of ['http://witness.example', 'ftp://127.0.0.1', 'https://user:pass@witness.example', 'not a url', 'https://witness.example/?token=1']) {
      expect(() => new WitnessClient({ witnesses: [{ url, key }], sink: createMemorySink(new MemoryStorage()), logger: createRecordingLogger() })).toThrow(/witness url/);
    }
  });
});
