/**
 * The archive log written to the spool reaches every forward target — tiles, notes, and the
 * witnesses' cosigned copies that arrive later — and verifies there under the witness policy;
 * a target that was down receives what it missed.
 */
import { describe, expect, it } from 'vitest';
import { generateCosigner } from '../note/cosignature.ts';
import { generateEd25519NoteKey } from '../note/ed25519-key.ts';
import { parseNote } from '../note/signed-note.ts';
import { Recorder } from '../recorder/recorder.ts';
import { ARCHIVE_LOG } from '../sink/log-name.ts';
import type { Sink } from '../sink/sink.ts';
import { MemoryStorage, createMemorySink } from '../testing/memory-sink.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { verifyArchive } from '../verify/verify-archive.ts';
import { ArchiveLog } from '../witness/archive-log.ts';
import { cosignedFile } from '../witness/witness-client.ts';
import { outageSink } from './__fixtures__/outage-sink.ts';
import { Forwarder } from './forwarder.ts';

const key = generateEd25519NoteKey('archive.example/offchannel');
const witness = generateCosigner('w1.witness.example');
const source = { package: '@offchannel/test', version: '0.0.0' };

/**
 * The spool, counting copy rounds: each round lists the attestation hosts, then copies the
 * archive logs (the archive log itself is listed only once per forwarder).
 */
function counting(sink: Sink, rounds: { value: number; listings?: number }): Sink {
  return new Proxy(sink, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (property === 'checkpointFiles' && typeof value === 'function') {
        return (log: string, range?: unknown) => {
          if (log === ARCHIVE_LOG) rounds.listings = (rounds.listings ?? 0) + 1;
          return (value as (log: string, range?: unknown) => unknown).call(target, log, range);
        };
      }
      if (property !== 'attestationHosts' || typeof value !== 'function') return value;
      return () => {
        rounds.value++;
        return (value as () => unknown).call(target);
      };
    },
  });
}

describe('Forwarder and the archive log', () => {
  it('copies the archive log (tiles, notes, late cosignatures) to every target, where it verifies; a target that was down catches up', { timeout: 30_000 }, async () => {
    const spool = createMemorySink(new MemoryStorage());
    const upStorage = new MemoryStorage();
    const laggingStorage = new MemoryStorage();
    const down = { value: true };
    const forwarder = new Forwarder({ spool, targets: [{ name: 'up', sink: createMemorySink(upStorage) }, { name: 'lagging', sink: outageSink(createMemorySink(laggingStorage), down) }], archiveLogs: [ARCHIVE_LOG], pollMs: 3_600_000, minRetryMs: 10, maxRetryMs: 20 });
    forwarder.start();
    const archiveLog = await ArchiveLog.open({ sink: forwarder.sink, signer: key, logger: createRecordingLogger(), everyMs: 3_600_000 });
    const recorder = new Recorder({ sink: forwarder.sink, allowVolatileSink: true, logger: createRecordingLogger(), checkpoints: { signer: key, everyRecords: 2, witnesses: archiveLog } });
    // 300 streams: the archive log's first level-0 tile is full, so full and partial tiles both travel.
    for (let stream = 0; stream < 300; stream++) {
      const writer = recorder.writer({ channel: 'demo', account: `u${String(stream).padStart(3, '0')}`, source });
      for (let index = 0; index < 2; index++) await writer.capture({ kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` });
    }
    await recorder.close();
    await archiveLog.close();
    const size = archiveLog.signedSize;
    expect(size).toBe(300);
    await expect(forwarder.drain({ timeoutMs: 500 })).rejects.toThrow();
    down.value = false;
    await forwarder.drain({ timeoutMs: 20_000 });
    expect(await createMemorySink(laggingStorage).checkpoints(ARCHIVE_LOG)).toEqual([size]);
    // The witness answers after the note was copied: its cosigned copy follows.
    const note = new TextDecoder().decode(await spool.getCheckpoint(ARCHIVE_LOG, size, 'note'));
    await forwarder.sink.putCheckpoint(ARCHIVE_LOG, size, cosignedFile(witness.verifier), new TextEncoder().encode(`${note}${witness.cosign(parseNote(note).text, 1_795_000_000)}`));
    await forwarder.drain({ timeoutMs: 20_000 });
    await forwarder.stop();
    for (const storage of [upStorage, laggingStorage]) {
      const target = createMemorySink(storage, { readOnly: true });
      expect(await target.checkpoints(ARCHIVE_LOG)).toEqual([size]);
      expect(await target.getCheckpoint(ARCHIVE_LOG, size, cosignedFile(witness.verifier))).toBeDefined();
      const report = await verifyArchive(target, { verifiers: [key.verifier], witnesses: [witness.verifier], quorum: 1 });
      expect(report.failures).toEqual([]);
      expect(report.archiveLogs?.map((log) => log.witnessedSize)).toEqual([size]);
    }
  });

  it('copies an archive checkpoint to a target only after the stream checkpoints it includes: a lagging lane is no false ARCHIVE_LOG_ENTRY_MISSING', { timeout: 60_000 }, async () => {
    const rounds: { value: number; listings?: number } = { value: 0 };
    const spool = counting(createMemorySink(new MemoryStorage()), rounds);
    const upStorage = new MemoryStorage();
    const heldStorage = new MemoryStorage();
    const held = { value: true };
    const forwarder = new Forwarder({ spool, targets: [{ name: 'up', sink: createMemorySink(upStorage) }, { name: 'held', sink: outageSink(createMemorySink(heldStorage), held, 'demo:b') }], archiveLogs: [ARCHIVE_LOG], pollMs: 20, minRetryMs: 10, maxRetryMs: 20 });
    forwarder.start();
    const archiveLog = await ArchiveLog.open({ sink: forwarder.sink, signer: key, logger: createRecordingLogger(), everyMs: 3_600_000 });
    const recorder = new Recorder({ sink: forwarder.sink, allowVolatileSink: true, logger: createRecordingLogger(), checkpoints: { signer: key, everyRecords: 2, witnesses: archiveLog } });
    for (const account of ['a', 'b']) {
      const writer = recorder.writer({ channel: 'demo', account, source });
      for (let index = 0; index < 2; index++) await writer.capture({ kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` });
    }
    await recorder.close();
    await archiveLog.close();
    const size = archiveLog.signedSize;
    expect(size).toBe(2); // one entry per stream: demo:a's and demo:b's checkpoint
    const note = new TextDecoder().decode(await spool.getCheckpoint(ARCHIVE_LOG, size, 'note'));
    await forwarder.sink.putCheckpoint(ARCHIVE_LOG, size, cosignedFile(witness.verifier), new TextEncoder().encode(`${note}${witness.cosign(parseNote(note).text, 1_795_000_000)}`));
    const policy = { verifiers: [key.verifier], witnesses: [witness.verifier], quorum: 1 };
    const up = createMemorySink(upStorage, { readOnly: true });
    const lagging = createMemorySink(heldStorage, { readOnly: true });
    // Wait until demo:a is on the held target and two more copy rounds have run after that.
    const deadline = Date.now() + 30_000;
    await waitUntil(async () => (await lagging.checkpoints('demo:a')).length > 0 && (await up.checkpoints(ARCHIVE_LOG)).length > 0, deadline, 'the forwarder made no progress');
    await twoMoreRounds(rounds, deadline);
    // The target that is up holds everything; the held one holds demo:a but neither demo:b nor the archive checkpoint (nor its tiles).
    expect(await up.checkpoints(ARCHIVE_LOG)).toEqual([size]);
    expect(await lagging.checkpoints('demo:b')).toEqual([]);
    expect(await lagging.checkpointFiles?.(ARCHIVE_LOG)).toEqual([]);
    expect(await lagging.getTile(ARCHIVE_LOG, { level: 0, index: 0, width: size })).toBeUndefined();
    const before = await verifyArchive(lagging, policy);
    expect(before.failures.filter((failure) => failure.code.startsWith('ARCHIVE_LOG'))).toEqual([]);
    // The lane catches up: then the archive checkpoint follows, its cosigned copy after it.
    held.value = false;
    await forwarder.drain({ timeoutMs: 20_000 });
    await forwarder.stop();
    // Listed by ArchiveLog.open and by the copier's first round, not at every round: later files came from the spooling sink.
    expect(rounds.value).toBeGreaterThan(3);
    expect(rounds.listings).toBeLessThanOrEqual(2);
    for (const target of [up, lagging]) {
      expect((await target.checkpointFiles?.(ARCHIVE_LOG))?.map((entry) => `${entry.size}.${entry.file}`).sort()).toEqual([`${size}.${cosignedFile(witness.verifier)}`, `${size}.note`]);
      const report = await verifyArchive(target, policy);
      expect(report.failures).toEqual([]);
      expect(report.archiveLogs?.map((log) => log.witnessedSize)).toEqual([size]);
    }
  });

  it('after a restart, a newer archive checkpoint waits behind a lagging lane while the older one stays; none is copied out of order', { timeout: 60_000 }, async () => {
    const spoolStorage = new MemoryStorage();
    const targetStorage = new MemoryStorage();
    const held = { value: false };
    const rounds = { value: 0 };
    const open = () => new Forwarder({ spool: counting(createMemorySink(spoolStorage), rounds), targets: [{ name: 't', sink: outageSink(createMemorySink(targetStorage), held, 'demo:b') }], archiveLogs: [ARCHIVE_LOG], pollMs: 20, minRetryMs: 10, maxRetryMs: 20 });
    const capture = async (sink: Sink, from: number) => {
      const archiveLog = await ArchiveLog.open({ sink, signer: key, logger: createRecordingLogger(), everyMs: 3_600_000 });
      const recorder = new Recorder({ sink, allowVolatileSink: true, logger: createRecordingLogger(), checkpoints: { signer: key, everyRecords: 2, witnesses: archiveLog } });
      for (const account of ['a', 'b']) {
        const writer = recorder.writer({ channel: 'demo', account, source });
        for (let index = from; index < from + 2; index++) await writer.capture({ kind: 'message', sentAt: '2026-11-21T09:00:00.000Z', conversation: { id: 'c', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `message ${index}` });
      }
      await recorder.close();
      await archiveLog.close();
      const size = archiveLog.signedSize;
      const note = new TextDecoder().decode(await sink.getCheckpoint(ARCHIVE_LOG, size, 'note'));
      await sink.putCheckpoint(ARCHIVE_LOG, size, cosignedFile(witness.verifier), new TextEncoder().encode(`${note}${witness.cosign(parseNote(note).text, 1_795_000_000)}`));
      return size;
    };
    const first = open();
    first.start();
    expect(await capture(first.sink, 0)).toBe(2);
    await first.drain({ timeoutMs: 20_000 });
    await first.stop();
    const target = createMemorySink(targetStorage, { readOnly: true });
    expect(await target.checkpoints(ARCHIVE_LOG)).toEqual([2]);
    // Captured while no forwarder ran; the new one finds demo:b's lane held back.
    expect(await capture(createMemorySink(spoolStorage), 2)).toBe(4);
    held.value = true;
    const second = open();
    second.start();
    const deadline = Date.now() + 30_000;
    await waitUntil(async () => (await target.checkpoints('demo:a')).at(-1) === 4, deadline, 'the forwarder made no progress');
    await twoMoreRounds(rounds, deadline);
    expect(await target.checkpoints(ARCHIVE_LOG)).toEqual([2]);
    expect(await target.getTile(ARCHIVE_LOG, { level: 0, index: 0, width: 4 })).toBeUndefined();
    const policy = { verifiers: [key.verifier], witnesses: [witness.verifier], quorum: 1 };
    // True and not critical: demo:a's newest checkpoint on the target is not witnessed there yet. No entry is missing.
    const before = await verifyArchive(target, policy);
    expect(before.failures.map((failure) => `${failure.code} ${failure.stream}`)).toEqual(['ARCHIVE_LOG_INCLUSION_MISSING demo:a', 'UNWITNESSED_RECORDS demo:a']);
    held.value = false;
    await second.drain({ timeoutMs: 20_000 });
    await second.stop();
    expect(await target.checkpoints(ARCHIVE_LOG)).toEqual([2, 4]);
    const report = await verifyArchive(target, policy);
    expect(report.failures).toEqual([]);
    expect(report.archiveLogs?.map((log) => log.witnessedSize)).toEqual([4]);
  });
});

/** Polls `done` every 10 ms until it holds; throws `message` after `deadline` (ms since the epoch). */
async function waitUntil(done: () => Promise<boolean> | boolean, deadline: number, message: string): Promise<void> {
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(message);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Waits until two more copy rounds than now have run. */
async function twoMoreRounds(rounds: { readonly value: number }, deadline: number): Promise<void> {
  const after = rounds.value;
  await waitUntil(() => rounds.value >= after + 2, deadline, 'no copy round ran');
}
