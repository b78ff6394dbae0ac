/**
 * Coverage evidence written by `offchannel capture`: every connection change a connector
 * reports is a record with the platform's reason, each stream's first record of a process names
 * the host's last attestation before it, and the host attests all its streams on a schedule —
 * one signed note per interval, chained, verified by `verifyArchive` with the public key.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type ArchiveRecord,
  type EventSourceIo,
  type StoredAttestation,
  createConnectorRuntime,
  decodeRecord,
  generateEd25519NoteKey,
  generateStateKey,
  readAttestations,
  verifyArchive,
} from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { openFsSink } from '@offchannel/sink-fs';
import { parseCaptureConfig } from './capture-config.ts';
import { CaptureRunner, defaultHostId } from './capture-runner.ts';

interface Event {
  readonly id: string;
  readonly raw: Uint8Array;
  readonly format: string;
}

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A stand-in "whatsapp" package built on the connector runtime; `io` is the open event source, to drive transitions. */
function runtimePackage(): { module: Record<string, unknown>; io: (account: string) => EventSourceIo<Event> | undefined } {
  const open = new Map<string, EventSourceIo<Event>>();
  const module = {
    parseWhatsAppConnectorConfig: (entry: { account: string }) => ({ account: entry.account }),
    createWhatsAppConnector: (options: { account: string }) =>
      createConnectorRuntime<Event>({
        channel: 'whatsapp',
        account: options.account,
        source: { package: 'runtime-whatsapp', version: '0.0.0' },
        events: {
          async open(io) {
            open.set(options.account, io);
            io.transition('connected');
          },
          async acknowledge() {},
          async close() {
            open.delete(options.account);
          },
        },
        map: () => [],
      }),
  };
  return { module, io: (account) => open.get(account) };
}

async function workspace(): Promise<{ dir: string; config: string; key: ReturnType<typeof generateEd25519NoteKey> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-attest-'));
  dirs.push(dir);
  const key = generateEd25519NoteKey('attest-test.offchannel.example');
  await writeFile(path.join(dir, 'signing.key'), `${key.signerKeyText()}\n`, { mode: 0o600 });
  await writeFile(path.join(dir, 'state.key'), `${generateStateKey()}\n`, { mode: 0o600 });
  const config = path.join(dir, 'offchannel.config.json');
  await writeFile(
    config,
    JSON.stringify({
      archive: { dir: './archive' },
      state: { dir: './state', keyFile: './state.key' },
      signing: { keyFile: './signing.key', everyRecords: 10 },
      coverage: { attestEveryMs: 1000, host: 'cap-test' },
      connectors: [
        { channel: 'whatsapp', account: 'alice' },
        { channel: 'whatsapp', account: 'bob' },
      ],
    }),
    { mode: 0o600 },
  );
  return { dir, config, key };
}

async function records(dir: string, stream: string): Promise<ArchiveRecord[]> {
  const sink = await openFsSink({ dir, readOnly: true });
  const out: ArchiveRecord[] = [];
  try {
    for await (const stored of sink.read(stream)) out.push(decodeRecord(stored.bytes).record);
  } finally {
    await sink.close();
  }
  return out;
}

async function attestations(dir: string): Promise<StoredAttestation[]> {
  const sink = await openFsSink({ dir, readOnly: true });
  const out: StoredAttestation[] = [];
  try {
    for await (const attestation of readAttestations(sink)) out.push(attestation);
  } finally {
    await sink.close();
  }
  return out;
}

async function until(check: () => Promise<boolean> | boolean, what: string, ms = 40_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const system = (record: ArchiveRecord): { event: string; fields: Record<string, string> } => {
  const detail = (record as { system?: { event: string; fields?: Record<string, string> } }).system;
  return { event: detail?.event ?? '', fields: detail?.fields ?? {} };
};

describe('capture coverage evidence', () => {
  it('records connection changes with reasons, attests every interval, and names the last attestation at the next process start', { timeout: 120_000 }, async () => {
    const { dir, config: file, key } = await workspace();
    const archive = path.join(dir, 'archive');
    const config = parseCaptureConfig(JSON.parse(await readFile(file, 'utf8')), file);
    const platform = runtimePackage();
    const first = new CaptureRunner(config, createRecordingLogger(), { load: async () => platform.module, watchEveryMs: 20 });
    await first.start();
    await until(async () => (await attestations(archive)).length >= 2, 'two attestations');
    // The platform drops the connection (Baileys' close code 428), then it comes back.
    const io = platform.io('alice');
    expect(io).toBeDefined();
    io?.transition('disconnected', '428');
    io?.transition('reconnecting');
    io?.transition('connected');
    await until(async () => (await records(archive, 'whatsapp:alice')).filter((record) => system(record).event === 'connector-connected').length >= 2, 'the reconnection recorded');
    await first.stop();

    const afterFirst = await attestations(archive);
    const lastOfFirst = afterFirst.at(-1) as StoredAttestation;
    // One note per interval for all streams, chained; the clean stop says `stopped` at the final heads.
    expect(afterFirst.map((attestation) => attestation.seq)).toEqual(afterFirst.map((_, index) => index + 1));
    expect(afterFirst.every((attestation) => attestation.host === 'cap-test' && attestation.streams.length === 2)).toBe(true);
    expect(afterFirst[0]?.streams.map((line) => line.state)).toEqual(['connected', 'connected']);
    expect(lastOfFirst.streams.map((line) => [line.stream, line.state])).toEqual([
      ['whatsapp:alice', 'stopped'],
      ['whatsapp:bob', 'stopped'],
    ]);
    const alice = await records(archive, 'whatsapp:alice');
    expect(lastOfFirst.streams[0]?.size).toBe(alice.length);
    const events = alice.map(system);
    // The connector's own `connected` (reported while it starts) precedes the supervisor's `capture-started`.
    expect(events.map((entry) => entry.event)).toEqual([
      'connector-connected',
      'capture-started',
      'connector-disconnected',
      'connector-reconnecting',
      'connector-connected',
      'connector-stopped',
      'capture-stopped',
    ]);
    expect(events.find((entry) => entry.event === 'connector-disconnected')?.fields.reason).toBe('428');
    // The first process had no attestation before it.
    expect(events[1]?.fields).toMatchObject({ processStart: 'true', attestationHost: 'cap-test' });
    expect(events[1]?.fields.lastAttestation).toBeUndefined();

    // The next process: each stream's first record names the last attestation before it.
    const second = new CaptureRunner(config, createRecordingLogger(), { load: async () => platform.module, watchEveryMs: 20 });
    await second.start();
    await second.stop();
    for (const stream of ['whatsapp:alice', 'whatsapp:bob']) {
      const started = (await records(archive, stream)).map(system).filter((entry) => entry.fields.processStart === 'true');
      expect(started).toHaveLength(2);
      expect(started[1]?.fields).toMatchObject({ lastAttestation: String(lastOfFirst.seq), lastAttestationHash: lastOfFirst.hash, lastAttestationAt: lastOfFirst.time });
    }
    const day = lastOfFirst.id.day;
    const file2 = path.join(archive, 'attestations', 'cap-test', day, `${String(lastOfFirst.seq).padStart(16, '0')}.note`);
    expect(createHash('sha256').update(await readFile(file2)).digest('hex')).toBe(lastOfFirst.hash);

    const sink = await openFsSink({ dir: archive, readOnly: true });
    try {
      const report = await verifyArchive(sink, { verifiers: [key.verifier] });
      expect(report.failures).toEqual([]);
      expect(report.attestations?.[0]).toMatchObject({ host: 'cap-test', verified: (await attestations(archive)).length });
    } finally {
      await sink.close();
    }
    expect(await readdir(path.join(archive, 'attestations'))).toEqual(['cap-test']);
  });

  it('derives a default host id that names no one, one per shard', () => {
    expect(defaultHostId(undefined, 'alice-macbook')).toMatch(/^h-[0-9a-f]{12}$/);
    expect(defaultHostId(undefined, 'alice-macbook')).not.toContain('alice');
    expect(defaultHostId({ index: 2, count: 4 }, 'alice-macbook')).toBe(`${defaultHostId(undefined, 'alice-macbook')}-s2of4`);
  });
});
