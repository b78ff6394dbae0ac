/**
 * Cost that must not grow with history: a restart of a record-mode deliverer reads only the
 * receipts written since its cursor (plus the one the cursor counted last), never the whole
 * `delivery:<target>` stream; a record delivered above its stream's cursor by a pass that
 * stopped midway is found by its receipt's idempotency key, so it is still never sent twice —
 * also when the on-disk key index was lost (it is rebuilt from the archive), including in
 * capture when the receipts spool pruned older receipts (they are read from the archive of
 * record the spool forwards to).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Forwarder, OffchannelError, Recorder, type Sink, decodeRecord } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type DelivererOptions, Deliverer } from './deliverer.ts';
import { readReceipts, receiptStream } from './delivery-receipts.ts';
import type { DeliveryTarget } from './delivery-target.ts';
import { type FaultServer, seqOf, startFaultServer, streamOf } from './__fixtures__/fault-smtp-server.ts';
import { type JournalArchive, alice, bob, client, createJournalArchive, removeTempDirs, tempDir } from './__fixtures__/journal-archive.ts';

const NOW = new Date(Date.UTC(2026, 10, 23, 12));
const RECEIPTS = receiptStream('journal');
const servers: FaultServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});
afterAll(removeTempDirs);

async function server(): Promise<FaultServer> {
  const started = await startFaultServer();
  servers.push(started);
  return started;
}

function target(url: string): DeliveryTarget {
  return { name: 'journal', smtp: url, to: 'journal@archive.test', from: 'offchannel@firm.example', allowPlaintextLoopback: true };
}

/** Where each read of the receipts stream started (`readSegments` reads from seq 1). */
type Reads = number[];

/** The archive's own fs sink, with every read of the receipts stream noted. */
function noting(sink: Sink, reads: Reads): Sink {
  return new Proxy(sink, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      if (property === 'read') {
        return (stream: string, options?: { readonly fromSeq?: number }) => {
          if (stream === RECEIPTS) reads.push(options?.fromSeq ?? 1);
          return sink.read(stream, options);
        };
      }
      if (property === 'readSegments') {
        return (stream: string) => {
          if (stream === RECEIPTS) reads.push(1);
          return (value as (stream: string) => unknown).call(target, stream);
        };
      }
      return (value as (...args: unknown[]) => unknown).bind(target);
    },
  });
}

async function run(archive: JournalArchive, options: Partial<DelivererOptions> & { readonly target: DeliveryTarget; readonly stateDir: string }, reads?: Reads) {
  const opened = await openFsSink({ dir: archive.dir });
  const sink = reads ? noting(opened, reads) : opened;
  try {
    const deliverer = await Deliverer.open({ archive: sink, verifiers: [archive.key.verifier], checkpoints: { signer: archive.key }, clock: () => NOW, sleep: () => Promise.resolve(), retry: { attempts: 2, initialMs: 10 }, ...options });
    try {
      return await deliverer.deliverPending();
    } finally {
      await deliverer.close();
    }
  } finally {
    await opened.close();
  }
}

/** Capture goes on: `count` more WhatsApp messages, under a signed checkpoint. */
async function captureMore(archive: JournalArchive, count: number, from: number): Promise<void> {
  const sink = await openFsSink({ dir: archive.dir });
  const recorder = new Recorder({ sink, clock: () => new Date(Date.UTC(2026, 10, 22, 13)), checkpoints: { signer: archive.key, everyRecords: 10 } });
  const whatsapp = recorder.writer({ channel: 'whatsapp', account: 'alice', source: { package: '@offchannel/delivery-test', version: '0.0.0' } });
  for (let index = from; index < from + count; index++) {
    const id = `later${index}`;
    await whatsapp.capture({ kind: 'message', key: `message:${id}`, sentAt: new Date(Date.UTC(2026, 10, 21, 15, index % 60)).toISOString(), conversation: client, sender: index % 2 === 0 ? bob : alice, direction: index % 2 === 0 ? 'inbound' : 'outbound', native: { id, chat: client.id }, text: `Later ${index}.`, raw: { bytes: new TextEncoder().encode(JSON.stringify({ id })), format: 'test.json' } });
  }
  await recorder.close();
  await sink.close();
}

/** Every receipt, and how many receipts name each record. */
async function receiptsOf(archive: JournalArchive): Promise<{ readonly count: number; readonly perRecord: Map<string, number>; readonly head: number }> {
  const sink = await openFsSink({ dir: archive.dir, readOnly: true });
  try {
    const perRecord = new Map<string, number>();
    let count = 0;
    for await (const receipt of readReceipts(sink, 'journal')) {
      count++;
      for (const seq of receipt.seqs) perRecord.set(`${receipt.stream}/${seq}`, (perRecord.get(`${receipt.stream}/${seq}`) ?? 0) + 1);
    }
    return { count, perRecord, head: (await sink.head(RECEIPTS)).seq };
  } finally {
    await sink.close();
  }
}

const FAR_FUTURE = new Date('2100-01-01T00:00:00Z');

/**
 * Capture's receipts sink with an S3 archive: a spool forwarded to an archive of record (here an
 * fs archive) by a real Forwarder that prunes it; reads of the receipts stream on the archive of
 * record are noted. `prune()` forwards everything and prunes what the archive holds.
 */
async function receiptSpool(segmentBytes: number) {
  const spoolDir = await tempDir('offchannel-delivery-spool-');
  const recordDir = await tempDir('offchannel-delivery-record-');
  const spool = await openFsSink({ dir: spoolDir, segmentBytes });
  const record = await openFsSink({ dir: recordDir });
  const reads: Reads = [];
  const forwarder = new Forwarder({ spool, targets: [{ name: 's3', sink: noting(record, reads) }], pollMs: 60_000, prune: { minAgeMs: 0, now: () => FAR_FUTURE } });
  forwarder.start();
  return {
    spool,
    recordDir,
    forwarder,
    reads,
    prune: async () => {
      await forwarder.drain({ timeoutMs: 30_000 });
      await forwarder.prune();
      return (await spool.pruned(RECEIPTS)) ?? { seq: 0, hash: '' };
    },
    close: async () => {
      await forwarder.stop();
      await spool.close();
      await record.close();
    },
  };
}

async function loseReceiptKeys(state: string): Promise<void> {
  for (const suffix of ['', '-wal', '-shm']) await rm(path.join(state, `journal.receipt-keys.sqlite${suffix}`), { force: true });
}

describe('delivery cost does not grow with the receipts already written', () => {
  it('a restart reads only the receipts after its cursor, sends only what is new, and still reports the last delivery', async () => {
    const archive = await createJournalArchive(60);
    const smtp = await server();
    const state = await tempDir('offchannel-delivery-state-');
    const first = await run(archive, { target: target(smtp.url), stateDir: state });
    const written = await receiptsOf(archive);
    expect(first.sent).toBe(written.count);
    expect(written.count).toBeGreaterThan(60);

    // Nothing new: the restart reads at most the receipt its cursor counted last.
    const idleReads: Reads = [];
    const idle = await run(archive, { target: target(smtp.url), stateDir: state }, idleReads);
    expect(idle.sent).toBe(0);
    expect(idle.lastDeliveredAt).toBe(NOW.toISOString());
    // Every message delivered to the target, all time — not only what this start read.
    expect(idle.delivered).toBe(written.count);
    // It did read (the receipt its cursor counted, to check it is the same): Math.min of no reads is Infinity.
    expect(idleReads.length).toBeGreaterThan(0);
    expect(Math.min(...idleReads)).toBeGreaterThanOrEqual(written.head);

    await captureMore(archive, 3, 0);
    const reads: Reads = [];
    const from = smtp.received.length;
    const second = await run(archive, { target: target(smtp.url), stateDir: state }, reads);
    expect(second.sent).toBe(3);
    expect(second.delivered).toBe(written.count + 3);
    expect(second.backlog).toBe(0);
    expect(smtp.received.slice(from).map((item) => `${streamOf(item.bytes)}/${seqOf(item.bytes)}`)).toEqual([72, 73, 74].map((seq) => `whatsapp:alice/${seq}`));
    // None of the receipts before the cursor's last one was read again (the old deliverer read
    // the whole stream from seq 1 at every start, and its recorder read it a second time).
    expect(reads.length).toBeGreaterThan(0);
    expect(Math.min(...reads)).toBeGreaterThanOrEqual(written.head);
    const after = await receiptsOf(archive);
    expect(after.count).toBe(written.count + 3);
    expect([...after.perRecord.values()].every((count) => count === 1)).toBe(true);
  }, 120_000);

  it('records delivered above the cursor by a pass that stopped midway are not sent again, even with the key index lost', async () => {
    const archive = await createJournalArchive(5);
    const smtp = await server();
    // The pass stops at whatsapp:alice seq 4 (a permanent refusal), after signal 1–3 and
    // whatsapp 1–3 went out: the cursor still says 0 for both streams but counts their receipts.
    smtp.decide = (message) => (streamOf(message) === 'whatsapp:alice' && seqOf(message) === 4 ? { code: 554, text: '5.7.1 Message rejected by policy' } : 'accept');
    const state = await tempDir('offchannel-delivery-state-');
    await expect(run(archive, { target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_REFUSED' });
    expect((await receiptsOf(archive)).count).toBe(6);

    for (const lost of [false, true]) {
      if (lost) {
        // Derived data: without it the first lookup rebuilds it from the receipts stream.
        await rm(path.join(state, 'journal.receipt-keys.sqlite'), { force: true });
        await rm(path.join(state, 'journal.receipt-keys.sqlite-wal'), { force: true });
        await rm(path.join(state, 'journal.receipt-keys.sqlite-shm'), { force: true });
      }
      const from = smtp.received.length;
      await expect(run(archive, { target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_REFUSED' });
      expect(smtp.received.slice(from).map((item) => `${streamOf(item.bytes)}/${seqOf(item.bytes)}`)).toEqual(['whatsapp:alice/4']);
    }

    smtp.decide = () => 'accept';
    const from = smtp.received.length;
    const report = await run(archive, { target: target(smtp.url), stateDir: state });
    const resent = smtp.received.slice(from).map((item) => `${streamOf(item.bytes)}/${seqOf(item.bytes)}`);
    expect(resent[0]).toBe('whatsapp:alice/4');
    expect(resent.filter((key) => key.startsWith('signal:') || /\/[1-3]$/.test(key))).toEqual([]);
    expect(report.backlog).toBe(0);
    const receipts = await receiptsOf(archive);
    expect([...receipts.perRecord.values()].every((count) => count === 1)).toBe(true);
    const sink = await openFsSink({ dir: archive.dir, readOnly: true });
    try {
      let records = 0;
      for (const stream of archive.streams) for await (const stored of sink.read(stream)) if (decodeRecord(stored.bytes).record.seq > 0) records++;
      // Every record has one receipt, except those the export renders no e-mail for.
      expect(receipts.perRecord.size).toBe(records - report.noEmail);
    } finally {
      await sink.close();
    }
  }, 120_000);

  it('counts every delivery of a cursor written before it kept the count by reading the receipts once', async () => {
    const archive = await createJournalArchive(10);
    const smtp = await server();
    const state = await tempDir('offchannel-delivery-state-');
    await run(archive, { target: target(smtp.url), stateDir: state });
    const written = await receiptsOf(archive);
    const file = path.join(state, 'journal.cursor.json');
    const { readFile } = await import('node:fs/promises');
    await writeFile(file, (await readFile(file, 'utf8')).replace(/"delivered":\d+,/, ''));
    const reads: Reads = [];
    const upgraded = await run(archive, { target: target(smtp.url), stateDir: state }, reads);
    expect(upgraded).toMatchObject({ sent: 0, delivered: written.count, lastDeliveredAt: NOW.toISOString() });
    expect(reads).toContain(1);
    // The cursor keeps the count from then on: the next start reads only from its last receipt.
    const after: Reads = [];
    expect(await run(archive, { target: target(smtp.url), stateDir: state }, after)).toMatchObject({ sent: 0, delivered: written.count });
    expect(after.length).toBeGreaterThan(0);
    expect(Math.min(...after)).toBeGreaterThanOrEqual(written.head);
  }, 120_000);

  it('in capture, a lost receipt key index on a pruned receipts stream is rebuilt through the archive of record: nothing is sent again; `deliver <spool>` without it is refused', async () => {
    const archive = await createJournalArchive(40);
    const smtp = await server();
    const state = await tempDir('offchannel-delivery-state-');
    const receipts = await receiptSpool(4_000);
    try {
      const first = await run(archive, { target: target(smtp.url), stateDir: state, receipts: receipts.forwarder.sink });
      const pruned = await receipts.prune();
      expect(pruned.seq).toBeGreaterThan(10);
      const sent = smtp.received.length;
      expect(sent).toBe(first.sent);

      // With the index: the normal path, which never reads the archive of record.
      expect((await run(archive, { target: target(smtp.url), stateDir: state, receipts: receipts.forwarder.sink })).sent).toBe(0);
      expect(receipts.reads).toEqual([]);

      // Lost: rebuilt through the archive of record (the pruned receipts from it, the rest from the spool).
      await loseReceiptKeys(state);
      const whatsapp = archive.counts['whatsapp:alice'] ?? 0;
      await captureMore(archive, 3, 0);
      const again = await run(archive, { target: target(smtp.url), stateDir: state, receipts: receipts.forwarder.sink });
      expect(again.sent).toBe(3);
      expect(again.delivered).toBe(first.sent + 3);
      expect(receipts.reads).toContain(1);
      expect(smtp.received.slice(sent).map((item) => `${streamOf(item.bytes)}/${seqOf(item.bytes)}`)).toEqual([1, 2, 3].map((added) => `whatsapp:alice/${whatsapp + added}`));

      // `offchannel deliver <spool>` (the spool alone, no archive of record): refused, nothing sent.
      await loseReceiptKeys(state);
      const error = await run(archive, { target: target(smtp.url), stateDir: state, receipts: receipts.spool }).catch((caught: unknown) => caught);
      expect(OffchannelError.hasCode(error, 'DELIVERY_STATE'), String(error)).toBe(true);
      expect((error as Error).message).toContain(`seqs 1–${(await receipts.spool.pruned(RECEIPTS))?.seq} were pruned`);
      expect((error as Error).message).toContain('journal.receipt-keys.sqlite');
      expect(smtp.received).toHaveLength(sent + 3);
    } finally {
      await receipts.close();
    }
    // Every record has exactly one receipt: in the archive of record, which holds them all.
    const all = await receiptsOf({ ...archive, dir: receipts.recordDir });
    expect([...all.perRecord.values()].every((count) => count === 1)).toBe(true);
    expect(all.count).toBe(smtp.received.length);
  }, 120_000);

  it('day mode in capture reads every receipt of a pruned receipts stream through the archive of record; `deliver <spool>` in day mode is refused', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await tempDir('offchannel-delivery-state-');
    const day = target(smtp.url);
    const days: DeliveryTarget = { ...day, mode: 'day' };
    // Tiny segments: each receipt its own, so the few transcripts make a prefix to prune.
    const receipts = await receiptSpool(200);
    try {
      const first = await run(archive, { target: days, stateDir: state, receipts: receipts.forwarder.sink });
      expect(first.sent).toBeGreaterThan(2);
      const pruned = await receipts.prune();
      expect(pruned.seq).toBeGreaterThan(0);
      const sent = smtp.received.length;
      // Before the read-through this start failed with RECORDS_PRUNED (it reads from seq 1).
      expect((await run(archive, { target: days, stateDir: state, receipts: receipts.forwarder.sink })).sent).toBe(0);
      expect(receipts.reads).toContain(1);
      expect(smtp.received).toHaveLength(sent);
      const error = await run(archive, { target: days, stateDir: state, receipts: receipts.spool }).catch((caught: unknown) => caught);
      expect(OffchannelError.hasCode(error, 'DELIVERY_STATE'), String(error)).toBe(true);
      expect((error as Error).message).toContain('day mode reads every receipt at start');
      expect((error as Error).message).toContain(`seqs 1–${pruned.seq} of ${RECEIPTS} were pruned`);
      expect(smtp.received).toHaveLength(sent);
    } finally {
      await receipts.close();
    }
  }, 120_000);

  it('refuses a link or directory in place of the receipt key index, and rebuilds it once moved aside', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const elsewhere = await tempDir('offchannel-delivery-elsewhere-');
    await writeFile(path.join(elsewhere, 'victim'), 'not an index');
    const plants: Record<string, (file: string) => Promise<void>> = {
      link: (file) => symlink(path.join(elsewhere, 'victim'), file),
      directory: (file) => mkdir(file),
    };
    let sent = 0;
    for (const [kind, plant] of Object.entries(plants)) {
      const state = await tempDir('offchannel-delivery-state-');
      await plant(path.join(state, 'journal.receipt-keys.sqlite'));
      const error = await run(archive, { target: target(smtp.url), stateDir: state }).catch((caught: unknown) => caught);
      expect(OffchannelError.hasCode(error, 'DELIVERY_STATE'), kind).toBe(true);
      expect((error as Error).message).toContain('journal.receipt-keys.sqlite');
      expect(smtp.received, kind).toHaveLength(sent);
      // Moved aside, the same state directory works (the refusal released the target's lock)
      // and the index is rebuilt from the receipts: nothing already delivered goes out again.
      await rm(path.join(state, 'journal.receipt-keys.sqlite'), { recursive: true, force: true });
      expect((await run(archive, { target: target(smtp.url), stateDir: state })).backlog, kind).toBe(0);
      sent = smtp.received.length;
    }
    expect(smtp.received.map((item) => `${streamOf(item.bytes)}/${seqOf(item.bytes)}`)).toHaveLength(new Set(smtp.received.map((item) => `${streamOf(item.bytes)}/${seqOf(item.bytes)}`)).size);
    expect((await receiptsOf(archive)).count).toBe(sent);
  }, 120_000);

  it.each(['', '-wal', '-shm'])('refuses a FIFO at the receipt key index%s without waiting on it (in a child with a deadline)', async (suffix) => {
    // SQLite blocked reading a FIFO cannot be interrupted in the test's own thread: a hang
    // kills the child and fails the test.
    const archive = await createJournalArchive();
    const state = await tempDir('offchannel-delivery-state-');
    const fifo = path.join(state, `journal.receipt-keys.sqlite${suffix}`);
    execFileSync('mkfifo', ['-m', '600', fifo], { timeout: 10_000 });
    const script = `
      import { openFsSink } from '@offchannel/sink-fs';
      import { Deliverer } from ${JSON.stringify(fileURLToPath(new URL('./deliverer.ts', import.meta.url)))};
      const sink = await openFsSink({ dir: ${JSON.stringify(archive.dir)}, readOnly: true });
      try {
        const deliverer = await Deliverer.open({ archive: sink, target: ${JSON.stringify(target('smtp://127.0.0.1:2525'))}, stateDir: ${JSON.stringify(state)} });
        await deliverer.close();
        console.log(JSON.stringify({ message: 'opened' }));
      } catch (error) {
        console.log(JSON.stringify({ code: error.code, message: error.message }));
      } finally {
        await sink.close();
      }`;
    const child = spawnSync(process.execPath, ['--conditions=@offchannel/source', '--no-warnings', '--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('..', import.meta.url)), timeout: 30_000, encoding: 'utf8' });
    expect(child.signal, `the child hung and was killed (${child.stderr})`).toBeNull();
    const outcome = JSON.parse(child.stdout) as { code?: string; message: string };
    expect(outcome.code, outcome.message).toBe('DELIVERY_STATE');
    expect(outcome.message).toContain(`${fifo} is a FIFO`);
    expect(outcome.message).toContain('journal.receipt-keys.sqlite-wal');
  }, 60_000);
});
