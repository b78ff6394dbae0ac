/**
 * Fault injection with a scriptable SMTP server on loopback: temporary refusals (4xx) and
 * dropped connections are retried with backoff; a permanent refusal (5xx) stops delivery at
 * the record, names it, is recorded, and delivery resumes from that record once fixed. Plus the
 * state's safety rails: one deliverer per target, no state from another archive, no unverified
 * archive, no insecure target settings, rate limits honoured.
 */
import { chmod, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { OffchannelError, Recorder, type Sink, decodeRecord } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { type DelivererOptions, Deliverer } from './deliverer.ts';
import { readReceipts, receiptStream } from './delivery-receipts.ts';
import { type DeliveryTarget, checkTarget } from './delivery-target.ts';
import { type FaultServer, seqOf, startFaultServer, streamOf } from './__fixtures__/fault-smtp-server.ts';
import { type JournalArchive, createJournalArchive, removeTempDirs, tempDir } from './__fixtures__/journal-archive.ts';
import { freePort } from './__fixtures__/postfix-instance.ts';

const NOW = new Date(Date.UTC(2026, 10, 23, 12));
const servers: FaultServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});
afterAll(removeTempDirs);

async function server(options: Parameters<typeof startFaultServer>[0] = {}): Promise<FaultServer> {
  const started = await startFaultServer(options);
  servers.push(started);
  return started;
}

function target(url: string, extra: Partial<DeliveryTarget> = {}): DeliveryTarget {
  return { name: 'journal', smtp: url, to: 'journal@archive.test', from: 'offchannel@firm.example', allowPlaintextLoopback: true, ...extra };
}

async function run(archive: JournalArchive, options: Partial<DelivererOptions> & { readonly target: DeliveryTarget; readonly stateDir: string }) {
  const sink = await openFsSink({ dir: archive.dir });
  try {
    const deliverer = await Deliverer.open({ archive: sink, verifiers: [archive.key.verifier], checkpoints: { signer: archive.key }, clock: () => NOW, sleep: () => Promise.resolve(), retry: { attempts: 4, initialMs: 10 }, ...options });
    try {
      return await deliverer.deliverPending();
    } finally {
      await deliverer.close();
    }
  } finally {
    await sink.close();
  }
}

async function receiptsOf(archive: JournalArchive, name = 'journal') {
  const sink = await openFsSink({ dir: archive.dir, readOnly: true });
  try {
    const receipts = [];
    for await (const receipt of readReceipts(sink, name)) receipts.push(receipt);
    const events = [];
    if ((await sink.streams()).includes(receiptStream(name))) for await (const stored of sink.read(receiptStream(name))) events.push(decodeRecord(stored.bytes).record.system);
    return { receipts, events };
  } finally {
    await sink.close();
  }
}

const total = (archive: JournalArchive): number => Object.values(archive.counts).reduce((sum, count) => sum + count, 0);
const stateDir = (): Promise<string> => tempDir('offchannel-delivery-state-');

describe('retries and refusals', () => {
  it('retries a temporary refusal (4xx) with backoff and delivers after it', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    smtp.decide = (_message, index) => (index < 2 ? { code: 451, text: '4.3.0 Try again later' } : 'accept');
    const slept: number[] = [];
    const report = await run(archive, { target: target(smtp.url), stateDir: await stateDir(), sleep: (ms) => (slept.push(ms), Promise.resolve()) });
    expect(report.sent).toBe(total(archive));
    expect(slept).toEqual([10, 20]);
    const { receipts } = await receiptsOf(archive);
    expect(receipts).toHaveLength(total(archive));
    // The first message was refused twice and then accepted: one receipt, three attempts, not in doubt.
    expect(receipts[0]).toMatchObject({ inDoubt: false });
    expect(smtp.received.filter((item) => item.decision === 'accept')).toHaveLength(total(archive));
  });

  it('gives up after the attempt budget with DELIVERY_UNAVAILABLE, naming the record, and sends it next time', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    smtp.decide = () => ({ code: 421, text: '4.7.0 Rate limit exceeded' });
    const state = await stateDir();
    const error = await run(archive, { target: target(smtp.url), stateDir: state }).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'DELIVERY_UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toMatch(/signal:alice seq 1, Message-ID <[0-9a-f]{64}@signal\.offchannel\.invalid>/);
    expect((await receiptsOf(archive)).receipts).toHaveLength(0);
    smtp.decide = () => 'accept';
    await run(archive, { target: target(smtp.url), stateDir: state });
    expect(seqOf(smtp.received.filter((item) => item.decision === 'accept')[0]?.bytes ?? Buffer.alloc(0))).toBe(1);
  });

  it('retries when the server cannot be reached, then delivers', async () => {
    const archive = await createJournalArchive();
    const port = await freePort();
    const state = await stateDir();
    await expect(run(archive, { target: target(`smtp://127.0.0.1:${port}`), stateDir: state, retry: { attempts: 2, initialMs: 10 } })).rejects.toMatchObject({ code: 'DELIVERY_UNAVAILABLE' });
    const smtp = await server({ port });
    let started = false;
    const report = await run(archive, {
      target: target(smtp.url),
      stateDir: state,
      sleep: () => {
        started = true;
        return Promise.resolve();
      },
    });
    expect(started).toBe(false);
    expect(report.sent).toBe(total(archive));
  });

  it('stops on a permanent refusal (5xx), names the record, records the refusal, and resumes from that record', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    smtp.decide = (message) => (streamOf(message) === 'whatsapp:alice' && seqOf(message) === 4 ? { code: 554, text: '5.7.1 Message rejected by policy' } : 'accept');
    const state = await stateDir();
    const error = await run(archive, { target: target(smtp.url), stateDir: state }).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'DELIVERY_REFUSED')).toBe(true);
    expect((error as Error).message).toContain('whatsapp:alice seq 4');
    expect((error as Error).message).toContain('554 5.7.1 Message rejected by policy');
    // Signal's 3 records and WhatsApp's 1–3 went out; nothing after the refused record did.
    const accepted = smtp.received.filter((item) => item.decision === 'accept').map((item) => `${streamOf(item.bytes)}/${seqOf(item.bytes)}`);
    expect(accepted).toEqual(['signal:alice/1', 'signal:alice/2', 'signal:alice/3', 'whatsapp:alice/1', 'whatsapp:alice/2', 'whatsapp:alice/3']);
    const first = await receiptsOf(archive);
    expect(first.receipts).toHaveLength(6);
    expect(first.events.at(-1)).toMatchObject({ event: 'delivery-refused', fields: { stream: 'whatsapp:alice', seqs: '4', reply: '554 5.7.1 Message rejected by policy' } });
    // Still refused: stops again at the same record, skips nothing.
    await expect(run(archive, { target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_REFUSED' });
    // Fixed: resumes exactly at whatsapp:alice seq 4; nothing delivered before is sent again.
    smtp.decide = () => 'accept';
    const from = smtp.received.length;
    const report = await run(archive, { target: target(smtp.url), stateDir: state });
    const resumed = smtp.received.slice(from).map((item) => seqOf(item.bytes));
    expect(resumed[0]).toBe(4);
    expect(resumed).toEqual(Array.from({ length: archive.counts['whatsapp:alice'] as number - 3 }, (_, index) => index + 4));
    expect(report.backlog).toBe(0);
    expect((await receiptsOf(archive)).receipts).toHaveLength(total(archive));
  });

  it('a dropped connection after the data is resent with the same Message-ID and its receipt says in doubt', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    smtp.decide = (_message, index) => (index === 0 ? 'drop' : 'accept');
    const report = await run(archive, { target: target(smtp.url), stateDir: await stateDir() });
    expect(report.inDoubt).toBe(1);
    const [dropped, resent] = smtp.received;
    const id = (bytes: Buffer | undefined): string | undefined => /^Message-ID: (\S+)/m.exec(bytes?.toString('latin1') ?? '')?.[1];
    expect(id(dropped?.bytes)).toBe(id(resent?.bytes));
    const { receipts } = await receiptsOf(archive);
    expect(receipts[0]).toMatchObject({ inDoubt: true, messageId: id(resent?.bytes) });
    expect(receipts.slice(1).every((receipt) => !receipt.inDoubt)).toBe(true);
  });

  it('targets are independent: one refusing everything does not stop another', async () => {
    const archive = await createJournalArchive();
    const [bad, good] = [await server(), await server()];
    bad.decide = () => ({ code: 550, text: '5.1.1 Mailbox unavailable' });
    await expect(run(archive, { target: target(bad.url, { name: 'bad' }), stateDir: await stateDir() })).rejects.toMatchObject({ code: 'DELIVERY_REFUSED' });
    const report = await run(archive, { target: target(good.url, { name: 'good' }), stateDir: await stateDir() });
    expect(report.sent).toBe(total(archive));
  });

  it('honours a rate limit between messages', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    let now = NOW.getTime();
    const slept: number[] = [];
    await run(archive, {
      target: target(smtp.url, { maxPerSecond: 4 }),
      stateDir: await stateDir(),
      clock: () => new Date(now),
      sleep: (ms) => {
        slept.push(ms);
        now += ms;
        return Promise.resolve();
      },
    });
    expect(slept).toHaveLength(total(archive) - 1);
    expect(slept.every((ms) => ms === 250)).toBe(true);
  });

  it('refuses wrong credentials with DELIVERY_AUTH and never echoes the password', async () => {
    const archive = await createJournalArchive();
    const smtp = await server({ auth: { user: 'svc', password: 'right-horse-battery' } });
    const error = await run(archive, { target: target(smtp.url, { user: 'svc', password: 'wrong-horse-staple' }), stateDir: await stateDir() }).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'DELIVERY_AUTH')).toBe(true);
    expect(JSON.stringify({ message: (error as Error).message, reply: (error as { reply?: string }).reply })).not.toContain('wrong-horse-staple');
    const report = await run(archive, { target: target(smtp.url, { user: 'svc', password: 'right-horse-battery' }), stateDir: await stateDir() });
    expect(report.sent).toBe(total(archive));
  });
});

describe('following a live archive', () => {
  it('leaves records appended while a pass renders for the next pass, in order', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const sink = await openFsSink({ dir: archive.dir });
    const recorder = new Recorder({ sink });
    const writer = recorder.writer({ channel: 'whatsapp', account: 'alice', source: { package: '@offchannel/delivery-test', version: '0.0.0' } });
    let appended = false;
    // Capture keeps writing: right after the deliverer has read a stream, one more record lands.
    const live: Sink = Object.create(sink, {
      read: {
        value: (stream: string, options?: { readonly fromSeq?: number }) => {
          const inner = sink.read(stream, options);
          return (async function* () {
            yield* inner;
            if (stream === 'whatsapp:alice' && !appended) {
              appended = true;
              await writer.capture({ kind: 'message', key: 'message:late', sentAt: '2026-11-21T10:00:00.000Z', conversation: { id: 'late-chat', type: 'direct' }, sender: { id: 'late@firm.example' }, direction: 'inbound', native: { id: 'late' }, text: 'arrived mid-pass' });
            }
          })();
        },
      },
    }) as Sink;
    try {
      const deliverer = await Deliverer.open({ archive: live, receipts: sink, target: target(smtp.url), stateDir: await stateDir(), clock: () => NOW });
      try {
        const first = await deliverer.deliverPending();
        expect(first.sent).toBe(total(archive));
        const second = await deliverer.deliverPending();
        expect(second).toMatchObject({ sent: 1, backlog: 0 });
      } finally {
        await deliverer.close();
      }
    } finally {
      await recorder.close();
      await sink.close();
    }
    const order = smtp.received.filter((item) => streamOf(item.bytes) === 'whatsapp:alice').map((item) => seqOf(item.bytes));
    expect(order).toEqual(Array.from({ length: (archive.counts['whatsapp:alice'] ?? 0) + 1 }, (_, index) => index + 1));
  });
});

describe('day mode', () => {
  it('sends a record that arrives after its day went out as its own e-mail, once its day has closed', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await stateDir();
    const first = await run(archive, { target: target(smtp.url, { mode: 'day' }), stateDir: state });
    expect(first.backlog).toBe(0);
    const before = smtp.received.length;
    // A late record for 2026-11-20 (history sync), captured an hour before "now".
    const sink = await openFsSink({ dir: archive.dir });
    const recorder = new Recorder({ sink, clock: () => new Date(NOW.getTime() - 3_600_000) });
    await recorder.writer({ channel: 'whatsapp', account: 'alice', source: { package: '@offchannel/delivery-test', version: '0.0.0' } }).capture({ kind: 'message', key: 'message:m-late', sentAt: '2026-11-20T09:30:00.000Z', conversation: { id: '+15550100@s.whatsapp.net', type: 'direct' }, sender: { id: '+15550100@s.whatsapp.net' }, direction: 'inbound', native: { id: 'm-late', chat: '+15550100@s.whatsapp.net' }, text: 'late arrival' });
    await recorder.close();
    await sink.close();
    // Before its day has closed by the clock, it waits.
    const waiting = await run(archive, { target: target(smtp.url, { mode: 'day' }), stateDir: state, clock: () => new Date(Date.UTC(2026, 10, 20, 23, 0)) });
    expect(waiting).toMatchObject({ sent: 0, notDue: 1, backlog: 1 });
    const late = await run(archive, { target: target(smtp.url, { mode: 'day' }), stateDir: state });
    expect(late).toMatchObject({ sent: 1, backlog: 0, lagMs: 0 });
    const mail = smtp.received.slice(before).map((item) => item.bytes.toString('latin1'));
    expect(mail).toHaveLength(1);
    expect(mail[0]).toMatch(/^X-Offchannel-Seq: 12$/m);
    expect(mail[0]).toMatch(/^X-Offchannel-Native-Id: m-late$/m);
    const { receipts } = await receiptsOf(archive);
    expect(receipts.at(-1)).toMatchObject({ stream: 'whatsapp:alice', seqs: [12] });
  });

  it('reports the lag of the oldest undelivered record and does not re-render while only open days wait', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    // Records were captured at 2026-11-22T12:00Z; a day-mode pass at 23:30 that day has sent nothing of day 22.
    let now = Date.UTC(2026, 10, 22, 23, 30);
    let renders = 0;
    const sink = await openFsSink({ dir: archive.dir });
    const counted: Sink = Object.create(sink, {
      streams: {
        value: () => {
          renders++;
          return sink.streams();
        },
      },
    }) as Sink;
    const deliverer = await Deliverer.open({ archive: counted, receipts: sink, target: target(smtp.url, { mode: 'day' }), stateDir: await stateDir(), clock: () => new Date(now), sleep: () => Promise.resolve() });
    try {
      const report = await deliverer.deliverPending();
      expect(report.notDue).toBeGreaterThan(0);
      expect(report.lagMs).toBe(11.5 * 3_600_000);
      // Nothing new and the day still open: the next pass does not render the archive again.
      const before = renders;
      now += 60_000;
      expect(await deliverer.deliverPending()).toMatchObject({ sent: 0, notDue: report.notDue, lagMs: 11.5 * 3_600_000 + 60_000 });
      expect(renders - before).toBe(1);
      // Once the day has closed, it is sent.
      now = Date.UTC(2026, 10, 23, 0, 16);
      expect(await deliverer.deliverPending()).toMatchObject({ notDue: 0, backlog: 0 });
      expect(renders - before).toBeGreaterThan(2);
    } finally {
      await deliverer.close();
      await sink.close();
    }
  });
});

describe('state and safety rails', () => {
  it('allows one deliverer per target and state directory', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await stateDir();
    const sink = await openFsSink({ dir: archive.dir });
    const first = await Deliverer.open({ archive: sink, target: target(smtp.url), stateDir: state });
    try {
      await expect(Deliverer.open({ archive: sink, target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_STATE' });
    } finally {
      await first.close();
      await sink.close();
    }
  });

  it('keeps the last delivery time across refusals and restarts', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    smtp.decide = (message) => (streamOf(message) === 'whatsapp:alice' && seqOf(message) === 4 ? { code: 554, text: '5.7.1 Message rejected by policy' } : 'accept');
    const state = await stateDir();
    let at = NOW;
    const open = async () => {
      const sink = await openFsSink({ dir: archive.dir });
      const deliverer = await Deliverer.open({ archive: sink, target: target(smtp.url), stateDir: state, verifiers: [archive.key.verifier], checkpoints: { signer: archive.key }, clock: () => at, sleep: () => Promise.resolve(), retry: { attempts: 2, initialMs: 10 } });
      return { deliverer, close: async () => { await deliverer.close(); await sink.close(); } };
    };
    // Refused, and refused again an hour later (each refusal is a receipt-stream record of its own).
    for (let pass = 0; pass < 3; pass++) {
      const { deliverer, close } = await open();
      try {
        if (pass > 0) expect(deliverer.status().lastDeliveredAt, `after restart ${pass}`).toBe(NOW.toISOString());
        await expect(deliverer.deliverPending()).rejects.toMatchObject({ code: 'DELIVERY_REFUSED' });
        expect(deliverer.status().lastDeliveredAt).toBe(NOW.toISOString());
      } finally {
        await close();
      }
      at = new Date(at.getTime() + 3_600_000);
    }
    const { events } = await receiptsOf(archive);
    expect(events.slice(-3).map((event) => event?.event)).toEqual(['delivery-refused', 'delivery-refused', 'delivery-refused']);
  });

  it('trusts the receipts over the cursor: a lost or stale cursor resends nothing', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await stateDir();
    await run(archive, { target: target(smtp.url), stateDir: state });
    const sent = smtp.received.length;
    const { readFile, rm } = await import('node:fs/promises');
    const cursor = await readFile(path.join(state, 'journal.cursor.json'), 'utf8');
    // As if killed after the receipts were durable but before the cursor moved: an older cursor
    // (counting two receipts, with the second one's hash), then none.
    const sink = await openFsSink({ dir: archive.dir, readOnly: true });
    let second = '';
    for await (const stored of sink.read(receiptStream('journal'), { fromSeq: 2 })) {
      second = decodeRecord(stored.bytes).hash;
      break;
    }
    await sink.close();
    await writeFile(path.join(state, 'journal.cursor.json'), cursor.replace(/"receipts":\d+/, '"receipts":2').replace(/"delivered":\d+/, '"delivered":2').replace(/"receiptsHash":"[0-9a-f]{64}"/, `"receiptsHash":"${second}"`).replace(/"whatsapp:alice":\d+/, '"whatsapp:alice":1'));
    expect((await run(archive, { target: target(smtp.url), stateDir: state })).sent).toBe(0);
    await rm(path.join(state, 'journal.cursor.json'));
    expect((await run(archive, { target: target(smtp.url), stateDir: state })).sent).toBe(0);
    expect(smtp.received.length).toBe(sent);
  });

  it('refuses a state directory that belongs to another archive, and a damaged cursor', async () => {
    const [one, two] = [await createJournalArchive(), await createJournalArchive()];
    const smtp = await server();
    const state = await stateDir();
    await run(one, { target: target(smtp.url), stateDir: state });
    const sent = smtp.received.length;
    await expect(run(two, { target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_STATE' });
    await expect(run(one, { target: target(smtp.url, { to: 'other@archive.test' }), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_STATE' });
    await writeFile(path.join(state, 'journal.cursor.json'), '{"format":"offchannel-delivery-cursor",');
    await expect(run(one, { target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_STATE' });
    expect(smtp.received.length).toBe(sent);
  });

  it('refuses the cursor of another archive whose receipts stream is as long (by the counted receipt\'s hash)', async () => {
    const [one, two] = [await createJournalArchive(), await createJournalArchive()];
    const smtp = await server();
    const [stateOne, stateTwo] = [await stateDir(), await stateDir()];
    await run(one, { target: target(smtp.url), stateDir: stateOne });
    // The same records delivered a day later: as many receipts, other records.
    await run(two, { target: target(smtp.url), stateDir: stateTwo, clock: () => new Date(NOW.getTime() + 86_400_000) });
    const sent = smtp.received.length;
    const error = await run(two, { target: target(smtp.url), stateDir: stateOne }).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'DELIVERY_STATE')).toBe(true);
    expect((error as Error).message).toContain('belongs to another archive');
    expect((error as Error).message).toContain('journal.cursor.json');
    expect(smtp.received.length).toBe(sent);
    // Each with its own state directory: nothing to send, nothing refused.
    expect((await run(one, { target: target(smtp.url), stateDir: stateOne })).sent).toBe(0);
    expect((await run(two, { target: target(smtp.url), stateDir: stateTwo })).sent).toBe(0);
  });

  it.each([-1, 1.5, 2 ** 53, 1e300])('refuses a cursor counting %s receipts', async (count) => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await stateDir();
    await run(archive, { target: target(smtp.url), stateDir: state });
    const sent = smtp.received.length;
    const { readFile } = await import('node:fs/promises');
    const cursor = await readFile(path.join(state, 'journal.cursor.json'), 'utf8');
    await writeFile(path.join(state, 'journal.cursor.json'), cursor.replace(/"receipts":\d+/, `"receipts":${JSON.stringify(count)}`));
    const error = await run(archive, { target: target(smtp.url), stateDir: state }).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'DELIVERY_STATE')).toBe(true);
    expect((error as Error).message).toContain('is not a delivery cursor');
    expect(smtp.received.length).toBe(sent);
  });

  it.each([['record', 'day'], ['day', 'record']] as const)('refuses receipts written in %s mode when the cursor is gone and the target now says %s', async (before, after) => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await stateDir();
    // The first record arrives on 2026-11-20: the day after its day closes, every day is due.
    const later = { clock: () => new Date(Date.UTC(2026, 11, 1)) };
    await run(archive, { target: target(smtp.url, { mode: before }), stateDir: state, ...later });
    const sent = smtp.received.length;
    expect(sent).toBeGreaterThan(0);
    const { rm } = await import('node:fs/promises');
    await rm(path.join(state, 'journal.cursor.json'));
    const error = await run(archive, { target: target(smtp.url, { mode: after }), stateDir: state, ...later }).catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'DELIVERY_STATE')).toBe(true);
    expect((error as Error).message).toContain(`written in ${before} mode, not ${after}`);
    expect(smtp.received.length).toBe(sent);
    // The mode it was delivered in still finds everything delivered.
    expect((await run(archive, { target: target(smtp.url, { mode: before }), stateDir: state, ...later })).sent).toBe(0);
  });

  it('closes the receipt key index and releases the lock when the receipts sink is refused', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await stateDir();
    const index = path.join(state, 'journal.receipt-keys.sqlite');
    const { readdir: list, readlink } = await import('node:fs/promises');
    /** Descriptors this process holds on the index (Linux: /proc/self/fd). */
    const held = async (): Promise<number> => {
      let count = 0;
      for (const fd of await list('/proc/self/fd')) {
        const to = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
        if (to.startsWith(index)) count++;
      }
      return count;
    };
    const readOnly = await openFsSink({ dir: archive.dir, readOnly: true });
    try {
      const error = await run(archive, { target: target(smtp.url), stateDir: state, receipts: readOnly }).catch((caught: unknown) => caught);
      expect(OffchannelError.hasCode(error, 'SINK_UNSUITABLE'), String(error)).toBe(true);
      expect(await held()).toBe(0);
    } finally {
      await readOnly.close();
    }
    expect((await run(archive, { target: target(smtp.url), stateDir: state })).backlog).toBe(0);
  });

  it('sends nothing from an archive that does not verify', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const blobs = path.join(archive.dir, 'blobs', 'sha256');
    const [blob] = await readdir(blobs);
    await chmod(path.join(blobs, blob ?? ''), 0o600);
    await writeFile(path.join(blobs, blob ?? ''), 'tampered');
    await expect(run(archive, { target: target(smtp.url), stateDir: await stateDir() })).rejects.toMatchObject({ code: 'DELIVERY_UNVERIFIED' });
    expect(smtp.received).toHaveLength(0);
  });

  it('writes the cursor 0600 and keeps no secret in it', async () => {
    const archive = await createJournalArchive();
    const smtp = await server({ auth: { user: 'svc', password: 'right-horse-battery' } });
    const state = await stateDir();
    await run(archive, { target: target(smtp.url, { user: 'svc', password: 'right-horse-battery' }), stateDir: state });
    const { stat, readFile } = await import('node:fs/promises');
    const file = path.join(state, 'journal.cursor.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).not.toContain('right-horse-battery');
  });

  it('rejects insecure or malformed targets', () => {
    const base = target('smtp://127.0.0.1:2525');
    expect(() => checkTarget({ ...base, smtp: 'smtp://mail.example.com:25' })).toThrow(/loopback servers only/);
    expect(() => checkTarget({ ...base, smtp: 'smtp://10.0.0.1:25' })).toThrow(/loopback servers only/);
    expect(() => checkTarget({ ...base, smtp: 'smtp://svc:secret@127.0.0.1:25' })).toThrow(/never go in the smtp URL/);
    expect(() => checkTarget({ ...base, smtp: 'http://127.0.0.1:25' })).toThrow(/smtp:\/\//);
    expect(() => checkTarget({ ...base, to: 'a@b.example, c@d.example' })).toThrow(/one plain address/);
    expect(() => checkTarget({ ...base, to: 'journal@archive.test\r\nRCPT TO:<x@y.test>' })).toThrow(/one plain address/);
    expect(() => checkTarget({ ...base, name: '../etc' })).toThrow(/target name/);
    expect(() => checkTarget({ ...base, user: 'svc' })).toThrow(/needs a password/);
    expect(checkTarget({ ...base, allowPlaintextLoopback: false, smtp: 'smtps://mail.example.com' })).toEqual({ host: 'mail.example.com', port: 465, implicitTls: true });
  });
});
