/**
 * Delivery from a spool that the forwarder prunes (capture with an S3 archive and `delivery`
 * targets): a real fs spool and an fs forward target, the real Forwarder with pruning, real
 * Deliverers and an SMTP server on loopback that is down, then back.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readdir, rm } from 'node:fs/promises';
import { Forwarder, type PrunedEvent, Recorder, type Sink, type StreamWriter, blobRefs, decodeRecord, generateEd25519NoteKey } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { type FsSink, openFsSink } from '@offchannel/sink-fs';
import { Deliverer } from './deliverer.ts';
import { checkDelivery } from './check-delivery.ts';
import { MISSED_EVENT, readReceipts, receiptStream } from './delivery-receipts.ts';
import type { DeliveryTarget } from './delivery-target.ts';
import { type FaultServer, seqOf, startFaultServer } from './__fixtures__/fault-smtp-server.ts';
import { removeTempDirs, tempDir } from './__fixtures__/journal-archive.ts';
import { freePort } from './__fixtures__/postfix-instance.ts';

const key = generateEd25519NoteKey('spool-prune.offchannel.example');
const source = { package: '@offchannel/delivery-test', version: '0.0.0' };
/** Capture time; the deliverer's clock is a day later (day mode: every day closed). */
const CAPTURED = new Date(Date.UTC(2026, 10, 20, 9));
const NOW = new Date(Date.UTC(2026, 10, 23, 12));
const STREAM = 'whatsapp:alice';
/** The forwarder's clock: every sealed segment is old enough (`minAgeMs` 0 either way). */
const PRUNE_NOW = new Date('2100-01-01T00:00:00Z');
const servers: FaultServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});
afterAll(removeTempDirs);

/** A capture host in miniature: the recorder writes to an fs spool that a forwarder copies to an fs target and prunes. */
class Host {
  readonly spool: FsSink;
  readonly target: FsSink;
  /** Delivery's read-only handle on the spool, as capture opens it. */
  readonly archive: FsSink;
  readonly forwarder: Forwarder;
  readonly recorder: Recorder;
  readonly writer: StreamWriter;
  readonly pruned: PrunedEvent[] = [];
  readonly stateDir: string;
  readonly logger = createRecordingLogger();
  hold: ((stream: string) => number | undefined) | undefined;

  private constructor(spool: FsSink, target: FsSink, archive: FsSink, stateDir: string, maxBytes: number | undefined, dir: string) {
    this.dir = dir;
    this.spool = spool;
    this.target = target;
    this.archive = archive;
    this.stateDir = stateDir;
    this.forwarder = new Forwarder({
      spool,
      targets: [{ name: 'record', sink: target }],
      pollMs: 600_000,
      logger: this.logger,
      onPruned: (event) => this.pruned.push(event),
      prune: { minAgeMs: 0, now: () => PRUNE_NOW, holds: (stream) => this.hold?.(stream), ...(maxBytes === undefined ? {} : { maxBytes }) },
    });
    this.recorder = new Recorder({ sink: this.forwarder.sink, clock: () => CAPTURED, checkpoints: { signer: key, everyRecords: 5 } });
    this.writer = this.recorder.writer({ channel: 'whatsapp', account: 'alice', source });
  }

  readonly dir: string;

  static async open(options: { readonly maxBytes?: number } = {}): Promise<Host> {
    const dir = await tempDir('offchannel-spool-prune-');
    const spool = await openFsSink({ dir: `${dir}/spool`, segmentBytes: 3_000 });
    const target = await openFsSink({ dir: `${dir}/record` });
    const archive = await openFsSink({ dir: `${dir}/spool`, readOnly: true });
    const host = new Host(spool, target, archive, `${dir}/delivery`, options.maxBytes, dir);
    host.forwarder.start();
    return host;
  }

  /**
   * Captures messages `from` to `from + count - 1`: ten a UTC day from 2026-11-18 (message 0),
   * every fifth with an attachment (a blob of its own); then a checkpoint is signed.
   */
  async capture(from: number, count: number): Promise<void> {
    for (let index = from; index < from + count; index++) {
      const sentAt = new Date(Date.UTC(2026, 10, 18 + Math.floor(index / 10), 9, index % 10)).toISOString();
      const attachments = index % 5 === 0 ? [{ bytes: new TextEncoder().encode(`statement ${index}`), mime: 'text/plain', name: `statement-${index}.txt` }] : undefined;
      await this.writer.capture({ kind: 'message', key: `m${index}`, sentAt, conversation: { id: 'client', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', native: { id: `m${index}` }, text: `Message ${index}: settlement details follow.`, ...(attachments ? { attachments } : {}) });
    }
    await this.recorder.checkpoint();
  }

  /** Sealed and active segment files of `stream` in the spool. */
  async segments(stream = STREAM): Promise<number> {
    return (await readdir(`${this.dir}/spool/streams/${stream}`)).filter((name) => name.endsWith('.jsonl')).length;
  }

  /** Per seq of the spool's records from `fromSeq`, the blobs it names. */
  async blobsOf(fromSeq: number, sink: FsSink = this.spool): Promise<Map<number, string[]>> {
    const out = new Map<number, string[]>();
    for await (const stored of sink.read(STREAM, { fromSeq })) {
      const { record } = decodeRecord(stored.bytes);
      out.set(record.seq, blobRefs(record).map(([, ref]) => ref.sha256));
    }
    return out;
  }

  /** Forwards everything, then prunes as a poll does. */
  async forwardAndPrune(): Promise<readonly PrunedEvent[]> {
    await this.forwarder.drain({ timeoutMs: 30_000 });
    return this.forwarder.prune();
  }

  async prunedThrough(stream = STREAM): Promise<number> {
    return (await this.spool.pruned(stream))?.seq ?? 0;
  }

  /** `keyed`: with verifier keys (a pass verifies from its last checkpoint); without, each pass verifies the held records in full. */
  deliverer(smtp: string, extra: Partial<DeliveryTarget> = {}, clock: () => Date = () => NOW, archive: Sink = this.archive, keyed = true): Promise<Deliverer> {
    const target: DeliveryTarget = { name: 'journal', smtp, to: 'journal@archive.test', from: 'offchannel@firm.example', allowPlaintextLoopback: true, ...extra };
    return Deliverer.open({ archive, receipts: this.forwarder.sink, prunedSpool: true, target, stateDir: this.stateDir, ...(keyed ? { verifiers: [key.verifier] } : {}), checkpoints: { signer: key }, clock, sleep: () => Promise.resolve(), retry: { attempts: 2, initialMs: 1 }, logger: this.logger });
  }

  /** The events of the receipts stream `delivery:journal` on `sink`. */
  static async receiptEvents(sink: FsSink): Promise<{ event: string | undefined; fields: Readonly<Record<string, string>> | undefined }[]> {
    const out = [];
    for await (const stored of sink.read(receiptStream('journal'))) {
      const { system } = decodeRecord(stored.bytes).record;
      out.push({ event: system?.event, fields: system?.fields });
    }
    return out;
  }

  async close(): Promise<void> {
    await this.recorder.close();
    await this.forwarder.stop();
    await this.archive.close();
    await this.spool.close();
    await this.target.close();
  }
}

async function server(port?: number): Promise<FaultServer> {
  const started = await startFaultServer(port === undefined ? {} : { port });
  servers.push(started);
  return started;
}


const seqs = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, index) => from + index);

/** What the archive of record (the forward target) holds once the host is closed. */
async function ofRecord<T>(host: Host, read: (sink: FsSink) => Promise<T>): Promise<T> {
  const sink = await openFsSink({ dir: `${host.dir}/record`, readOnly: true });
  try {
    return await read(sink);
  } finally {
    await sink.close();
  }
}

/** The records the receipts on the archive of record name. */
function receiptSeqs(host: Host): Promise<number[]> {
  return ofRecord(host, async (sink) => {
    const out: number[] = [];
    for await (const receipt of readReceipts(sink, 'journal')) out.push(...receipt.seqs);
    return out.sort((a, b) => a - b);
  });
}

describe('delivery from a spool the forwarder prunes', () => {
  it('holds what the target has not delivered while SMTP is down (the spool grows), delivers all of it when SMTP is back, then lets it go', { timeout: 60_000 }, async () => {
    const host = await Host.open();
    const port = await freePort();
    let deliverer = await host.deliverer(`smtp://127.0.0.1:${port}`);
    host.hold = (stream) => deliverer.holdFrom(stream);
    try {
      await host.capture(0, 40);
      await expect(deliverer.deliverPending()).rejects.toMatchObject({ code: 'DELIVERY_UNAVAILABLE' });
      expect(deliverer.holdFrom(STREAM)).toBe(1);
      const blobs = await host.blobsOf(1);
      expect([...blobs.values()].flat()).toHaveLength(8);
      // Forwarded, signed, sealed and old enough (minAgeMs 0) — but not delivered: kept.
      expect(await host.forwardAndPrune()).toEqual([]);
      const early = await host.segments();
      await host.capture(40, 40);
      expect(await host.forwardAndPrune()).toEqual([]);
      expect(await host.prunedThrough()).toBe(0);
      const grown = await host.segments();
      expect(grown).toBeGreaterThan(early);
      // The blob pass ran (the first prune runs one): the blobs of held records stay.
      for (const names of blobs.values()) for (const sha256 of names) expect(await host.spool.statBlob(sha256)).toBeDefined();

      const up = await server(port);
      const report = await deliverer.deliverPending();
      expect(report).toMatchObject({ sent: 80, backlog: 0, missed: [] });
      expect(up.received.map((item) => seqOf(item.bytes))).toEqual(seqs(1, 80));
      expect(deliverer.holdFrom(STREAM)).toBe(81);
      expect(deliverer.holdFrom(receiptStream('journal'))).toBe(80);
      expect(deliverer.holdFrom(receiptStream('another-journal'))).toBeUndefined();
      const [pruned] = await host.forwardAndPrune();
      expect(pruned?.stream).toBe(STREAM);
      expect(pruned?.passedHold).toBeUndefined();
      const through = await host.prunedThrough();
      expect(through).toBeGreaterThan(60);
      console.log(`held: ${early} segments after 40 records, ${grown} after 80, none pruned; after delivery ${pruned?.segments} pruned (through seq ${through}), ${await host.segments()} left`);
      // Blobs of pruned records went; those of kept records stay.
      const kept = new Set([...(await host.blobsOf(through + 1)).values()].flat());
      for (const [seq, names] of blobs) for (const sha256 of names) expect(await host.spool.statBlob(sha256), `blob of seq ${seq}`).toEqual(seq <= through && !kept.has(sha256) ? undefined : expect.anything());

      // The receipts stream: held from the receipt a restart reads first (the cursor's count).
      await deliverer.close();
      await host.forwardAndPrune();
      const receiptsThrough = await host.prunedThrough(receiptStream('journal'));
      expect(receiptsThrough).toBeGreaterThan(0);
      expect(receiptsThrough).toBeLessThan(80);
      console.log(`receipts: 80 in delivery:journal, held from seq 80 (the cursor's count), pruned through seq ${receiptsThrough}`);
      deliverer = await host.deliverer(`smtp://127.0.0.1:${port}`);
      await host.capture(80, 5);
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 5, missed: [] });
      // The kept working index and the saved verification lost on a pruned spool: both are
      // rebuilt from the spool's pruned prefix on; only the new records are sent.
      await deliverer.close();
      for (const name of ['journal.render-index.sqlite', 'journal.render-index.sqlite-wal', 'journal.render-index.sqlite-shm', 'journal.verified.json']) await rm(`${host.dir}/delivery/${name}`, { force: true });
      deliverer = await host.deliverer(`smtp://127.0.0.1:${port}`);
      await host.capture(85, 5);
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 5, missed: [] });
      // Only the kept index lost, the saved verification kept (its checkpoint above the pruned
      // prefix): the index is built again from the prefix on all the same.
      await host.forwardAndPrune();
      await deliverer.close();
      for (const name of ['journal.render-index.sqlite', 'journal.render-index.sqlite-wal', 'journal.render-index.sqlite-shm']) await rm(`${host.dir}/delivery/${name}`, { force: true });
      deliverer = await host.deliverer(`smtp://127.0.0.1:${port}`);
      await host.capture(90, 5);
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 5, missed: [] });
    } finally {
      await deliverer.close();
      await host.close();
    }
    expect(await receiptSeqs(host)).toEqual(seqs(1, 95));
  });

  it('when the size cap prunes past the hold: the records lost are reported loudly and durably, never receipted, and the rest is delivered', { timeout: 60_000 }, async () => {
    const host = await Host.open({ maxBytes: 6_000 });
    const port = await freePort();
    let deliverer = await host.deliverer(`smtp://127.0.0.1:${port}`);
    host.hold = (stream) => deliverer.holdFrom(stream);
    let through: number;
    try {
      await host.capture(0, 40);
      await expect(deliverer.deliverPending()).rejects.toMatchObject({ code: 'DELIVERY_UNAVAILABLE' });
      const [event] = await host.forwardAndPrune();
      through = await host.prunedThrough();
      expect(through).toBeGreaterThan(10);
      expect(event?.passedHold).toEqual({ fromSeq: 1, throughSeq: through });
      expect(host.logger.lines.find((line) => line.message?.startsWith('the spool exceeded maxBytes'))?.fields).toEqual({ stream: STREAM, fromSeq: 1, throughSeq: through });

      const up = await server(port);
      const report = await deliverer.deliverPending();
      expect(report).toMatchObject({ sent: 40 - through, backlog: 0, missed: [{ stream: STREAM, seqs: `1-${through}` }] });
      expect(up.received.map((item) => seqOf(item.bytes))).toEqual(seqs(through + 1, 40));
      const error = host.logger.lines.find((line) => line.level === 'error' && line.message?.startsWith('records were pruned from the spool before this target delivered them'));
      expect(error?.fields).toEqual({ deliveryTarget: 'journal', stream: STREAM, fromSeq: 1, throughSeq: through });
      expect(error?.message).toContain('offchannel deliver <s3://… archive> --check --target journal');
      console.log(`size cap: pruned seqs 1–${through} of 40 before delivery; delivered ${report.sent}`);
      // Said once: a restart keeps the report (the cursor) and records nothing twice.
      await deliverer.close();
      deliverer = await host.deliverer(`smtp://127.0.0.1:${port}`);
      expect(deliverer.status().missed).toEqual([{ stream: STREAM, seqs: `1-${through}` }]);
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 0, missed: [{ stream: STREAM, seqs: `1-${through}` }] });
    } finally {
      await deliverer.close();
      await host.forwarder.drain({ timeoutMs: 30_000 });
      await host.close();
    }
    // The archive of record: a `delivery-missed` record, receipts only for what was sent, and
    // `deliver --check` lists the lost records as not delivered.
    const events = await ofRecord(host, (sink) => Host.receiptEvents(sink));
    expect(events.filter((item) => item.event === MISSED_EVENT)).toEqual([{ event: MISSED_EVENT, fields: expect.objectContaining({ target: 'journal', stream: STREAM, seqs: `1-${through}` }) as unknown }]);
    expect(await receiptSeqs(host)).toEqual(seqs(through + 1, 40));
    const check = await ofRecord(host, (sink) => checkDelivery({ archive: sink, target: 'journal', verifiers: [key.verifier] }));
    expect(check.ok).toBe(false);
    expect(check.missed).toEqual([{ stream: STREAM, seqs: `1-${through}` }]);
    expect(check.streams[0]?.undelivered.map((item) => item.seq)).toEqual(seqs(1, through));
  });

  it('day mode: the records of a day not yet sent are held; sent days are let go; every receipt is held (a start reads them all)', { timeout: 60_000 }, async () => {
    const host = await Host.open();
    const up = await server();
    let now = new Date(Date.UTC(2026, 10, 20, 12));
    const deliverer = await host.deliverer(up.url, { mode: 'day' }, () => now);
    host.hold = (stream) => deliverer.holdFrom(stream);
    try {
      await host.capture(0, 40);
      const attachmentOf0 = (await host.blobsOf(1)).get(1)?.[0] ?? '';
      // 18 and 19 November are closed (seqs 1–20), 20 and 21 are not.
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 2, notDue: 20 });
      expect(deliverer.holdFrom(STREAM)).toBe(21);
      expect(deliverer.holdFrom(receiptStream('journal'))).toBe(1);
      await host.forwardAndPrune();
      const first = await host.prunedThrough();
      expect(first).toBeGreaterThan(0);
      expect(first).toBeLessThan(21);
      now = NOW;
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 2, notDue: 0, missed: [] });
      await host.forwardAndPrune();
      expect(await host.prunedThrough()).toBeGreaterThan(first);
      expect(await host.prunedThrough(receiptStream('journal'))).toBe(0);
      console.log(`day mode: pruned through seq ${first} while days 20–21 waited, through ${await host.prunedThrough()} after`);
      // A late reaction to the first message (18 November, sent; its record and attachment since
      // pruned from the spool): it follows as its own e-mail. The day is not rendered again from
      // what the kept index held of the spool before it pruned (its attachment is gone).
      expect(await host.spool.statBlob(attachmentOf0)).toBeUndefined();
      await host.writer.capture({ kind: 'reaction', key: 'late-reaction', sentAt: new Date(Date.UTC(2026, 10, 18, 9, 30)).toISOString(), conversation: { id: 'client', type: 'direct' }, sender: { id: 'bob' }, direction: 'inbound', target: { id: 'm0', chat: 'client' }, reaction: { value: '👍', action: 'add' } });
      await host.recorder.checkpoint();
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 1, missed: [] });
    } finally {
      await deliverer.close();
      await host.close();
    }
    expect(up.received).toHaveLength(5);
  });

  it('a target stopped by a refusal keeps holding where it stopped, and resumes there', { timeout: 60_000 }, async () => {
    const host = await Host.open();
    const up = await server();
    up.decide = (message) => (seqOf(message) === 6 ? { code: 550, text: '5.7.1 Refused by policy' } : 'accept');
    let deliverer = await host.deliverer(up.url);
    host.hold = (stream) => deliverer.holdFrom(stream);
    try {
      await host.capture(0, 40);
      await expect(deliverer.deliverPending()).rejects.toMatchObject({ code: 'DELIVERY_REFUSED' });
      const hold = deliverer.holdFrom(STREAM) ?? 0;
      expect(hold).toBeLessThanOrEqual(6);
      await host.forwardAndPrune();
      const held = await host.prunedThrough();
      expect(held).toBeLessThan(6);
      up.decide = () => 'accept';
      await deliverer.close();
      deliverer = await host.deliverer(up.url);
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 35, backlog: 0, missed: [] });
      await host.forwardAndPrune();
      expect(await host.prunedThrough()).toBeGreaterThan(20);
      console.log(`refused at seq 6: held from seq ${hold}, pruned through ${held}; after the restart delivered 35, pruned through ${await host.prunedThrough()}`);
    } finally {
      await deliverer.close();
      await host.close();
    }
    expect(await receiptSeqs(host)).toEqual(seqs(1, 40));
  });

  it('a prune between reading the new records and rendering them (the size cap) starts the pass again: the records it took are recorded as missed, never passed in silence', { timeout: 60_000 }, async () => {
    const host = await Host.open();
    const up = await server();
    let deliverer = await host.deliverer(up.url);
    let armed = false;
    let verified = false;
    let through = 0;
    // The size cap prunes past the cursor once the pass has read its records and its export has
    // verified them (it read tiles), as the export next looks at the spool's pruned prefix.
    const racing = new Proxy(host.archive, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (property === 'getTile' && armed) verified = true;
        if (property !== 'pruned') return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        return async (stream: string) => {
          if (armed && verified) {
            armed = false;
            await host.spool.prune(STREAM, { below: 47, sealedBefore: PRUNE_NOW });
            through = await host.prunedThrough();
          }
          return target.pruned(stream);
        };
      },
    });
    try {
      await host.capture(0, 40);
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 40 });
      await deliverer.close();
      deliverer = await host.deliverer(up.url, {}, () => NOW, racing);
      await host.capture(40, 10);
      armed = true;
      const report = await deliverer.deliverPending();
      expect(through).toBeGreaterThan(40);
      expect(report).toMatchObject({ sent: 50 - through, missed: [{ stream: STREAM, seqs: through > 41 ? `41-${through}` : '41' }] });
    } finally {
      await deliverer.close();
      await host.close();
    }
    expect(up.received.map((item) => seqOf(item.bytes))).toEqual([...seqs(1, 40), ...seqs(through + 1, 50)]);
  });

  it('a prune that runs while a pass reads the spool starts the pass again; it is not an archive that fails to verify', { timeout: 60_000 }, async () => {
    const host = await Host.open();
    const up = await server();
    // Without verifier keys a pass verifies every record the spool holds (with keys it reads
    // only above its last verified checkpoint and cursor, which the hold keeps).
    let deliverer = await host.deliverer(up.url, {}, () => NOW, host.archive, false);
    host.hold = (stream) => deliverer.holdFrom(stream);
    let raced = 0;
    // A forwarder that asked for the holds just before the pass began, pruning in the middle of
    // the pass's verified export (between its look at the pruned prefix and its bulk read).
    const racing = new Proxy(host.archive, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (property !== 'readSegments') return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        return async function* (stream: string) {
          if (stream === STREAM && raced === 0) raced = (await host.spool.prune(STREAM, { below: 41, sealedBefore: PRUNE_NOW })).segments;
          yield* target.readSegments(stream);
        };
      },
    });
    try {
      await host.capture(0, 40);
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 40 });
      await deliverer.close();
      deliverer = await host.deliverer(up.url, {}, () => NOW, racing, false);
      await host.capture(40, 10);
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 10, backlog: 0, missed: [] });
      expect(raced).toBeGreaterThan(0);
      expect(host.logger.lines.filter((line) => line.message === 'the spool was pruned while a delivery pass read it; starting the pass again')).toHaveLength(1);
    } finally {
      await deliverer.close();
      await host.close();
    }
    expect(up.received.map((item) => seqOf(item.bytes))).toEqual(seqs(1, 50));
  });
});
