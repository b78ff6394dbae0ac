/**
 * What capture's delivery targets hold in a pruned spool (`CaptureDeliveries.holdFrom`, the
 * forwarder's `PruneOptions.holds`): the lowest record any target still needs; a target that
 * could not even open holds everything. Real fs archive, real SMTP server on loopback.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Recorder, type Sink, SinkUnavailableError, generateEd25519NoteKey } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { openFsSink } from '@offchannel/sink-fs';
import { startFaultServer } from '../../../delivery/src/__fixtures__/fault-smtp-server.ts';
import { CaptureDeliveries, parseDeliveryConfig } from './capture-deliveries.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function until(check: () => boolean, ms = 45_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A signed fs archive in a fresh folder: its writer, its read-only handle, and `capture(from, to)`
 * recording messages `from`…`to` of stream demo:alice, then a checkpoint (signed every 5).
 */
async function signedArchive(prefix: string, keyName: string) {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  const key = generateEd25519NoteKey(keyName);
  const sink = await openFsSink({ dir: path.join(dir, 'archive') });
  const recorder = new Recorder({ sink, clock: () => new Date(Date.UTC(2026, 10, 20, 12)), checkpoints: { signer: key, everyRecords: 5 } });
  const writer = recorder.writer({ channel: 'demo', account: 'alice', source: { package: '@offchannel/cli-test', version: '0.0.0' } });
  const capture = async (from: number, to: number): Promise<void> => {
    for (let n = from; n <= to; n++) await writer.capture({ kind: 'message', key: `m${n}`, sentAt: new Date(Date.UTC(2026, 10, 20, 9, n)).toISOString(), conversation: { id: 'client', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${n}` }, text: `Message ${n}` });
    await recorder.checkpoint();
  };
  return { dir, key, sink, recorder, writer, capture };
}

describe('CaptureDeliveries.holdFrom', () => {
  it('is the lowest record any target still needs; a target that could not open holds everything', { timeout: 60_000 }, async () => {
    const { dir, key, sink, recorder, writer, capture } = await signedArchive('offchannel-delivery-holds-', 'holds.offchannel.example');
    await capture(1, 10);
    const archive = await openFsSink({ dir: path.join(dir, 'archive'), readOnly: true });
    const smtp = await startFaultServer();
    const logger = createRecordingLogger();
    const target = { to: 'journal@archive.test', from: 'offchannel@firm.example', allowPlaintextLoopback: true, pollMs: 100, stateDir: './delivery' };
    const start = (entries: unknown[]): Promise<CaptureDeliveries> => CaptureDeliveries.start(parseDeliveryConfig(entries, (relative) => path.resolve(dir, relative)), { archive, receipts: sink, env: {}, verifiers: [key.verifier], checkpoints: { signer: key }, generator: 'offchannel test', logger });
    let deliveries: CaptureDeliveries | undefined;
    try {
      // The second target's plaintext SMTP to a host that is not loopback is refused at open.
      deliveries = await start([
        { ...target, name: 'journal', smtp: smtp.url },
        { ...target, name: 'broken', smtp: 'smtp://journal.archive.example:25' },
      ]);
      const journal = (): number => deliveries?.snapshot().find((item) => item.name === 'journal')?.status?.streams[0]?.delivered ?? 0;
      await until(() => journal() === 10);
      expect(deliveries.snapshot().find((item) => item.name === 'broken')).toMatchObject({ state: 'failed' });
      expect(deliveries.holdFrom(writer.stream)).toBe(1);
      expect(deliveries.holdFrom('delivery:journal')).toBe(1);
      await deliveries.stop();

      deliveries = await start([{ ...target, name: 'journal', smtp: smtp.url }]);
      expect(deliveries.holdFrom(writer.stream)).toBe(11);
      // Its own receipts: from the one at the cursor's count; another target's: not its concern.
      expect(deliveries.holdFrom('delivery:journal')).toBe(10);
      expect(deliveries.holdFrom('delivery:broken')).toBeUndefined();
    } finally {
      await deliveries?.stop();
      await smtp.close();
      await recorder.close();
      await archive.close();
      await sink.close();
    }
    expect(smtp.received).toHaveLength(10);
  });

  it('a target whose receipts store is unreachable at open is opened again with backoff, and a pass that fails for a reason that may pass is tried again: neither stops the target', { timeout: 90_000 }, async () => {
    const { dir, key, sink, recorder, writer, capture } = await signedArchive('offchannel-delivery-retry-', 'retry.offchannel.example');
    await capture(1, 5);
    const archive = await openFsSink({ dir: path.join(dir, 'archive'), readOnly: true });
    // Real sinks, made unreachable on purpose: each call while "down" fails as a store that does not answer.
    const outage = { receipts: true, archive: false };
    const failing = (inner: Sink, down: () => boolean): Sink =>
      new Proxy(inner, {
        get(target, property) {
          const value = Reflect.get(target, property, target) as unknown;
          if (typeof value !== 'function') return value;
          return (...args: unknown[]) => {
            if (down()) throw new SinkUnavailableError('the store did not answer (test outage)');
            return (value as (...args: unknown[]) => unknown).apply(target, args);
          };
        },
      });
    const smtp = await startFaultServer();
    const logger = createRecordingLogger();
    const entries = parseDeliveryConfig([{ name: 'journal', smtp: smtp.url, to: 'journal@archive.test', from: 'offchannel@firm.example', allowPlaintextLoopback: true, pollMs: 100, stateDir: './delivery' }], (relative) => path.resolve(dir, relative));
    let deliveries: CaptureDeliveries | undefined;
    try {
      deliveries = await CaptureDeliveries.start(entries, { archive: failing(archive, () => outage.archive), receipts: failing(sink, () => outage.receipts), env: {}, verifiers: [key.verifier], checkpoints: { signer: key }, generator: 'offchannel test', logger });
      expect(deliveries.snapshot()[0]).toMatchObject({ name: 'journal', state: 'retrying', error: 'SINK_UNAVAILABLE' });
      expect(deliveries.holdFrom(writer.stream)).toBe(1);
      outage.receipts = false;
      const delivered = (): number => deliveries?.snapshot()[0]?.status?.streams[0]?.delivered ?? 0;
      await until(() => delivered() === 5);
      expect(deliveries.snapshot()[0]).toMatchObject({ state: 'running' });
      // The archive stops answering while new records wait: passes fail and are tried again.
      outage.archive = true;
      await capture(6, 10);
      await until(() => logger.lines.filter((line) => line.message?.startsWith('a delivery pass failed for a reason that may pass')).length >= 2);
      expect(deliveries.snapshot()[0]).toMatchObject({ state: 'running' });
      outage.archive = false;
      await until(() => delivered() === 10);
    } finally {
      await deliveries?.stop();
      await smtp.close();
      await recorder.close();
      await archive.close();
      await sink.close();
    }
    expect(smtp.received).toHaveLength(10);
    expect(logger.lines.some((line) => line.message?.startsWith('delivery target could not open for a reason that may pass'))).toBe(true);
    expect(logger.lines.some((line) => line.message?.startsWith('delivery target stopped'))).toBe(false);
  });
});
