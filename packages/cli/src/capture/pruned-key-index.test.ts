/**
 * An account whose key index was lost, on a spool that pruned its oldest records after
 * forwarding (`archive.spoolPrune`): its supervisor claims the stream, which rebuilds the index
 * through the archive of record (capture's recorder sits on the forwarder's sink). While the
 * archive cannot be read the account is `restarting` with `PRUNED_READ_UNAVAILABLE`, its
 * connector not started and nothing written; once it answers the account runs, and the demo
 * connector's replay of messages already archived — pruned ones included — is all duplicates.
 * Real fs spool, real Forwarder, real fs archive of record; the outage is the error the S3 sink
 * throws when it cannot connect.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Forwarder, type KeyIndex, Recorder, type Sink, SinkUnavailableError, decodeRecord, generateEd25519NoteKey, openKeyIndex, openStateStore } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { openFsSink } from '@offchannel/sink-fs';
import { afterEach, describe, expect, it } from 'vitest';
import { AccountSupervisor } from './account-supervisor.ts';
import { parseCaptureConfig } from './capture-config.ts';

const stream = 'demo:alice';
const key = generateEd25519NoteKey('archive.example/offchannel');
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function until(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The archive of record; while `down.value`, every read fails as an unreachable S3 does. */
function reachable(sink: Sink, down: { value: boolean }): Sink {
  return new Proxy(sink, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      if (property === 'read') {
        return (name: string, options?: { readonly fromSeq?: number }) => {
          if (down.value) throw new SinkUnavailableError('the archive could not be reached (test)');
          return target.read(name, options);
        };
      }
      return (value as (...args: unknown[]) => unknown).bind(target);
    },
  });
}

describe('a lost key index on a pruned spool, in capture', () => {
  it('the claim rebuilds it through the archive of record: restarting while the archive is unreachable, then running, replays all duplicates', { timeout: 90_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-pruned-index-'));
    dirs.push(dir);
    const config = parseCaptureConfig({ state: { unencrypted: true }, connectors: [{ channel: 'demo', account: 'alice', intervalMs: 1, repeat: true }] }, path.join(dir, 'offchannel.config.json'));
    const entry = config.connectors[0];
    if (!entry) throw new Error('no connector entry');
    const state = await openStateStore({ dir: path.join(dir, 'state'), unencrypted: true });
    const spool = await openFsSink({ dir: path.join(dir, 'spool'), segmentBytes: 8_000 });
    const target = await openFsSink({ dir: path.join(dir, 's3') });
    const down = { value: false };
    const forwarder = new Forwarder({ spool, targets: [{ name: 's3', sink: reachable(target, down) }], pollMs: 600_000, prune: { minAgeMs: 0, now: () => new Date('2100-01-01T00:00:00Z') } });
    forwarder.start();
    const logger = createRecordingLogger();
    let records = 0;
    const supervise = (index: KeyIndex) => {
      const recorder = new Recorder({ sink: forwarder.sink, keyIndex: index, logger, checkpoints: { signer: key, everyRecords: 50 } });
      const supervisor = new AccountSupervisor({ entry, recorder, state, logger, policyVersion: undefined, runId: 'r', nextRecord: () => ++records, restart: { initialMs: 100, maxMs: 400 }, watchEveryMs: 20 });
      return { recorder, supervisor };
    };
    const indexFile = path.join(dir, 'state', 'key-index.sqlite');

    // Capture for a while, forward everything to the archive of record, prune the spool.
    const firstIndex = openKeyIndex({ file: indexFile });
    const first = supervise(firstIndex);
    await first.supervisor.start();
    await until(() => first.supervisor.snapshot().captured >= 300, '300 captures');
    await first.supervisor.stop('shutdown');
    await first.recorder.close();
    firstIndex.close();
    await forwarder.drain({ timeoutMs: 30_000 });
    await forwarder.prune();
    const pruned = (await spool.pruned(stream))?.seq ?? 0;
    expect(pruned).toBeGreaterThan(100);
    const head = (await spool.head(stream)).seq;
    for (const suffix of ['', '-wal', '-shm']) await rm(`${indexFile}${suffix}`, { force: true });

    // The index lost and the archive of record unreachable: the claim fails retryably.
    down.value = true;
    const index = openKeyIndex({ file: indexFile });
    const second = supervise(index);
    await second.supervisor.start();
    expect(second.supervisor.snapshot()).toMatchObject({ state: 'restarting', code: 'PRUNED_READ_UNAVAILABLE' });
    await until(() => second.supervisor.snapshot().attempt >= 2, 'a second attempt');
    expect(second.supervisor.snapshot()).toMatchObject({ state: 'restarting', code: 'PRUNED_READ_UNAVAILABLE', captured: 0 });
    expect((await spool.head(stream)).seq).toBe(head);

    // Reachable again: the next attempt rebuilds the index and the account runs.
    down.value = false;
    await until(() => second.supervisor.snapshot().state === 'running', 'the account to run');
    // The demo connector replays its events and ticks from the first: each one a duplicate.
    await until(() => second.supervisor.snapshot().duplicates >= 300, '300 replays');
    await second.supervisor.stop('shutdown');
    await second.recorder.close();
    index.close();
    await forwarder.drain({ timeoutMs: 30_000 });
    await forwarder.stop();
    await spool.close();

    const keys: string[] = [];
    for await (const stored of target.read(stream)) keys.push(decodeRecord(stored.bytes).record.key);
    await target.close();
    const messages = keys.filter((name) => name.startsWith('message:'));
    expect(messages.length).toBeGreaterThan(250);
    expect(new Set(messages).size).toBe(messages.length);
    expect(logger.text()).toContain('PRUNED_READ_UNAVAILABLE');
  });
});
