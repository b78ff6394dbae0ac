/**
 * A pass costs what is new: verification resumes at the newest signed checkpoint a pass
 * verified (`<target>.verified.json`), and only the e-mails of records above each stream's
 * cursor are rendered — each byte for byte what the full export renders for that record at
 * that moment (same Message-ID, threading, parties, folded edits, checkpoint header).
 */
import { chmod, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type CaptureInput, type ConversationRef, type Party, Recorder, type Sink, checkpointOrigin, formatCheckpoint, signNote, verifyArchive } from '@offchannel/core';
import { exportArchive } from '@offchannel/export';
import { openFsSink } from '@offchannel/sink-fs';
import { type DelivererOptions, Deliverer } from './deliverer.ts';
import type { DeliveryTarget } from './delivery-target.ts';
import { type FaultServer, startFaultServer } from './__fixtures__/fault-smtp-server.ts';
import { type JournalArchive, PDF, alice, bob, client, createJournalArchive, desk, removeTempDirs, signalChat, tempDir } from './__fixtures__/journal-archive.ts';

const NOW = new Date(Date.UTC(2026, 10, 25, 12));
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

function target(url: string, mode: 'record' | 'day' = 'record'): DeliveryTarget {
  return { name: 'journal', smtp: url, to: 'journal@archive.test', from: 'offchannel@firm.example', allowPlaintextLoopback: true, mode };
}

/** What a pass asked of the archive, per stream (receipts excluded): records yielded, blobs read, bulk reads. */
interface Reads {
  records: number;
  blobs: number;
  segments: number;
}

/** The archive's own fs sink, counting what is read of the captured streams. */
function counting(sink: Sink, reads: Reads): Sink {
  return new Proxy(sink, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function') return value;
      if (property === 'read') {
        return async function* (stream: string, options?: { readonly fromSeq?: number }) {
          for await (const item of sink.read(stream, options)) {
            if (!stream.startsWith('delivery:')) reads.records++;
            yield item;
          }
        };
      }
      if (property === 'readSegments') {
        return async function* (stream: string) {
          for await (const piece of (value as (stream: string) => AsyncIterable<{ readonly bytes: Uint8Array }>).call(target, stream)) {
            if (!stream.startsWith('delivery:')) reads.segments += piece.bytes.filter((byte) => byte === 0x0a).length;
            yield piece;
          }
        };
      }
      if (property === 'getBlob') {
        return (sha256: string) => {
          reads.blobs++;
          return sink.getBlob(sha256);
        };
      }
      return (value as (...args: unknown[]) => unknown).bind(target);
    },
  });
}

async function pass(archive: JournalArchive, options: Partial<DelivererOptions> & { readonly target: DeliveryTarget; readonly stateDir: string }, reads?: Reads) {
  const opened = await openFsSink({ dir: archive.dir });
  const sink = reads ? counting(opened, reads) : opened;
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

const dave: Party = { id: '+15550122@s.whatsapp.net', name: 'Dave Ito' };
const frank: Party = { id: '+15550144@s.whatsapp.net', name: 'Frank Ode' };
const deals: ConversationRef = { id: '120999@g.us', type: 'group', title: 'Deals' };

/**
 * Capture goes on (pass `round`): messages in three conversations (one new, with a new party),
 * an attachment, a reply to an old message, edits, reactions and a deletion of messages from
 * earlier passes and of the fixture's, a Signal message and its edit — under a signed checkpoint.
 */
async function captureRound(archive: JournalArchive, round: number): Promise<void> {
  const sink = await openFsSink({ dir: archive.dir });
  const recorder = new Recorder({ sink, clock: () => new Date(Date.UTC(2026, 10, 22, 13, round)), checkpoints: { signer: archive.key, everyRecords: 7 } });
  const source = { package: '@offchannel/delivery-test', version: '0.0.0' };
  const whatsapp = recorder.writer({ channel: 'whatsapp', account: 'alice', source });
  const signal = recorder.writer({ channel: 'signal', account: 'alice', source });
  const at = (minute: number): string => new Date(Date.UTC(2026, 10, 21 + (round % 2), 10 + round, minute)).toISOString();
  const raw = { bytes: new TextEncoder().encode(`round ${round}`), format: 'test.json' };
  const message = (conversation: ConversationRef, sender: Party, id: string, minute: number, extra: Partial<CaptureInput> = {}): CaptureInput => ({ kind: 'message', key: `message:${id}`, sentAt: at(minute), conversation, sender, direction: sender === alice ? 'outbound' : 'inbound', native: { id, chat: conversation.id }, text: `Round ${round}: ${id}.`, raw, ...extra });
  const r = `r${round}`;
  const previous = `r${round - 1}`;
  const inputs: CaptureInput[] = [
    message(client, bob, `${r}a`, 1),
    message(client, alice, `${r}b`, 2, { replyTo: { id: round === 1 ? 'm1' : `${previous}a`, chat: client.id } }),
    { kind: 'edit', key: `edit:${r}`, sentAt: at(3), conversation: client, sender: bob, direction: 'inbound', native: { id: `${r}-e`, chat: client.id }, target: { id: round === 1 ? 'm3' : `${previous}a`, chat: client.id }, text: `Edited in round ${round}.` },
    { kind: 'reaction', key: `reaction:${r}`, sentAt: at(4), conversation: client, sender: round % 2 === 0 ? dave : bob, direction: 'inbound', target: { id: round === 1 ? 'm4' : `${previous}b`, chat: client.id }, reaction: { value: round % 2 === 0 ? '👀' : '✅', action: 'add' } },
    message(deals, round % 2 === 0 ? dave : alice, `${r}d`, 5, round === 1 ? {} : { attachments: [{ bytes: PDF, mime: 'application/pdf', name: `deal ${round}.pdf` }] }),
    message(desk, alice, `${r}g`, 6),
    { kind: 'delete', key: `delete:${r}`, sentAt: at(7), conversation: desk, sender: alice, direction: 'outbound', target: { id: `${r}g`, chat: desk.id }, deletion: { scope: 'everyone' } },
  ];
  // Out of order: a reaction to a message that arrives only in the next round (an e-mail of its
  // own now; folded into that message's e-mail then), and an edit naming its target by id only
  // (resolved by id within the conversation).
  inputs.push({ kind: 'reaction', key: `reaction:${r}:early`, sentAt: at(10), conversation: client, sender: bob, direction: 'inbound', target: { id: `${r}late`, chat: client.id }, reaction: { value: '⏳', action: 'add' } });
  if (round > 1) inputs.push(message(client, alice, `${previous}late`, 11));
  if (round > 1) inputs.push({ kind: 'edit', key: `edit:${r}:by-id`, sentAt: at(12), conversation: client, sender: alice, direction: 'outbound', native: { id: `${r}-e2`, chat: client.id }, target: { id: `${previous}b` }, text: `Edited by id in round ${round}.` });
  // Parties. Round 2: Frank reacts, in the client chat, to a Deals message that arrives only in
  // round 3 — he is a party of the client chat until then, of Deals after. Round 4: a late
  // arrival from Frank in Deals dated before everything — first in its To list from then on —
  // and a new display name for Bob, dated after everything, in a message that renames the chat.
  if (round === 2) inputs.push({ kind: 'reaction', key: `reaction:${r}:frank`, sentAt: at(13), conversation: client, sender: frank, direction: 'inbound', target: { id: 'r2x', chat: deals.id }, reaction: { value: '💼', action: 'add' } });
  if (round === 3) inputs.push(message(deals, alice, 'r2x', 14));
  if (round === 4) inputs.push(message(deals, frank, `${r}early`, 0, { sentAt: '2026-11-19T08:00:00.000Z' }), message({ ...client, title: 'Bob Chén — desk' }, { id: bob.id, name: 'Bob Chén (desk)' }, `${r}renamed`, 13, { sentAt: '2026-11-23T08:00:00.000Z' }));
  for (const input of inputs) await whatsapp.capture(input);
  await signal.capture(message(signalChat, alice, `${r}s`, 8));
  await signal.capture({ kind: 'edit', key: `edit:${r}s`, sentAt: at(9), conversation: signalChat, sender: alice, direction: 'outbound', native: { id: `${r}s-e`, chat: signalChat.id }, target: { id: round === 1 ? 's1' : `${previous}s`, chat: signalChat.id }, text: `Signal edit ${round}.` });
  await recorder.close();
  await sink.close();
}

/** Every e-mail the full export writes now (both layouts), by Message-ID. */
async function fullExport(archive: JournalArchive, mode: 'message' | 'day'): Promise<Map<string, Buffer>> {
  const sink = await openFsSink({ dir: archive.dir, readOnly: true });
  const out = path.join(await tempDir('offchannel-incremental-full-'), 'out');
  try {
    await exportArchive({ sink, out, formats: ['eml'], emlMode: mode, verifiers: [archive.key.verifier], streams: archive.streams });
  } finally {
    await sink.close();
  }
  const files = new Map<string, Buffer>();
  for (const conversation of await readdir(path.join(out, 'eml'))) {
    for (const name of await readdir(path.join(out, 'eml', conversation))) {
      const bytes = await readFile(path.join(out, 'eml', conversation, name));
      files.set(messageIdOf(bytes), bytes);
    }
  }
  return files;
}

function messageIdOf(bytes: Buffer): string {
  return /^Message-ID: (<[^>]+>)/m.exec(bytes.toString('latin1'))?.[1] ?? 'none';
}

/** The e-mail as the server took it, in the export's line endings (SMTP sends CRLF). */
function asRendered(bytes: Buffer, like: Buffer): Buffer {
  return like.includes('\r\n') ? bytes : Buffer.from(bytes.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
}

describe('a delivery pass costs what is new', () => {
  it('sends, pass after pass, byte for byte what the full export renders for each new record at that moment', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await tempDir('offchannel-incremental-state-');
    let sent = 0;
    for (let round = 0; round <= 4; round++) {
      if (round > 0) await captureRound(archive, round);
      const report = await pass(archive, { target: target(smtp.url), stateDir: state });
      const full = await fullExport(archive, 'message');
      const now = smtp.received.slice(sent).map((item) => item.bytes);
      sent = smtp.received.length;
      expect(report.sent).toBe(now.length);
      expect(report.backlog).toBe(0);
      expect(now.length).toBe(round === 0 ? 14 : added(round));
      for (const bytes of now) {
        const expected = full.get(messageIdOf(bytes));
        expect(expected, `round ${round}: ${messageIdOf(bytes)} is in the full export`).toBeDefined();
        expect(asRendered(bytes, expected ?? Buffer.alloc(0)).equals(expected ?? Buffer.alloc(0)), `round ${round}: ${messageIdOf(bytes)} byte for byte`).toBe(true);
      }
    }
    // Every e-mail of the full export went out exactly once over the five passes.
    const ids = smtp.received.map((item) => messageIdOf(item.bytes));
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids)).toEqual(new Set((await fullExport(archive, 'message')).keys()));
  }, 120_000);

  it('day mode: each transcript and late record sent is the full export’s of that moment, and every record is sent once', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await tempDir('offchannel-incremental-state-');
    let sent = 0;
    for (let round = 0; round <= 3; round++) {
      if (round > 0) await captureRound(archive, round);
      await pass(archive, { target: target(smtp.url, 'day'), stateDir: state });
      const full = new Map([...(await fullExport(archive, 'message')), ...(await fullExport(archive, 'day'))]);
      for (const { bytes } of smtp.received.slice(sent)) {
        const expected = full.get(messageIdOf(bytes));
        expect(expected, `round ${round}: ${messageIdOf(bytes)}`).toBeDefined();
        expect(asRendered(bytes, expected ?? Buffer.alloc(0)).equals(expected ?? Buffer.alloc(0)), `round ${round}: ${messageIdOf(bytes)} byte for byte`).toBe(true);
      }
      sent = smtp.received.length;
    }
    const carried = new Map<string, number>();
    for (const { bytes } of smtp.received) {
      const text = bytes.toString('latin1');
      const stream = /^X-Offchannel-Stream: (\S+)/m.exec(text)?.[1] ?? '';
      const seqs = (/^X-Offchannel-Records: ([\d ]+)/m.exec(text)?.[1] ?? /^X-Offchannel-Seq: (\d+)/m.exec(text)?.[1] ?? '').split(' ');
      for (const seq of seqs) carried.set(`${stream}/${seq}`, (carried.get(`${stream}/${seq}`) ?? 0) + 1);
    }
    expect([...carried.values()].every((count) => count === 1)).toBe(true);
  }, 120_000);

  it('keeps the newest verified checkpoint per stream beside the cursor, and verifies only what came after it', async () => {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await tempDir('offchannel-incremental-state-');
    await pass(archive, { target: target(smtp.url), stateDir: state });
    const saved = JSON.parse(await readFile(path.join(state, 'journal.verified.json'), 'utf8')) as { format: string; streams: Record<string, { size: number; root: string }> };
    expect(saved.format).toBe('offchannel-verified-state/1');
    for (const stream of archive.streams) expect(saved.streams[stream]?.size).toBe(archive.counts[stream]);

    await captureRound(archive, 1);
    const reads: Reads = { records: 0, blobs: 0, segments: 0 };
    const report = await pass(archive, { target: target(smtp.url), stateDir: state }, reads);
    expect(report.sent).toBe(added(1));
    // The pass read the new records three times (for their hashes, to verify them, to index
    // them) and the record at the saved size once per stream; nothing in bulk, no old blob.
    expect(reads.records).toBeLessThanOrEqual(3 * added(1) + archive.streams.length);
    expect(reads.segments).toBe(0);
    expect(reads.blobs).toBeLessThanOrEqual(1);
  }, 60_000);
});

/** Records a round adds: 7 + 1 early reaction (+ the late message and an edit by id from round 2, + the party changes of rounds 2–4) on WhatsApp, 2 on Signal. */
function added(round: number): number {
  return (round > 1 ? 12 : 10) + ([0, 0, 1, 1, 2][round] ?? 0);
}

describe('the cost of a pass does not grow with history', () => {
  it('after 200 or 2,000 records of history, a pass with the same new records reads and sends the same', async () => {
    const costs: Reads[] = [];
    for (const history of [200, 2000]) {
      const archive = await createJournalArchive(history);
      const smtp = await server();
      const state = await tempDir('offchannel-incremental-state-');
      expect((await pass(archive, { target: target(smtp.url), stateDir: state })).sent).toBeGreaterThan(history);
      await captureRound(archive, 1);
      const reads: Reads = { records: 0, blobs: 0, segments: 0 };
      expect((await pass(archive, { target: target(smtp.url), stateDir: state }, reads)).sent).toBe(added(1));
      costs.push(reads);
    }
    expect(costs[1]).toEqual(costs[0]);
    expect(costs[0]?.records).toBeLessThanOrEqual(3 * added(1) + 2);
  }, 300_000);
});

describe('what a saved verified state does not cover is refused', () => {
  async function delivered(): Promise<{ archive: JournalArchive; smtp: FaultServer; state: string }> {
    const archive = await createJournalArchive();
    const smtp = await server();
    const state = await tempDir('offchannel-incremental-state-');
    await pass(archive, { target: target(smtp.url), stateDir: state });
    return { archive, smtp, state };
  }

  /** The segment file of `stream` that holds `text`, made writable. */
  async function segmentWith(archive: JournalArchive, stream: string, text: string): Promise<string> {
    const dir = path.join(archive.dir, 'streams', stream);
    for (const name of await readdir(dir)) {
      const file = path.join(dir, name);
      if ((await readFile(file, 'utf8').catch(() => '')).includes(text)) {
        await chmod(file, 0o600);
        return file;
      }
    }
    throw new Error(`no segment of ${stream} holds ${text}`);
  }

  it('a tampered new record: nothing is sent', async () => {
    const { archive, smtp, state } = await delivered();
    await captureRound(archive, 1);
    const stream = archive.streams.find((name) => name.startsWith('whatsapp:')) ?? '';
    const file = await segmentWith(archive, stream, 'Round 1: r1a.');
    await writeFile(file, (await readFile(file, 'utf8')).replace('Round 1: r1a.', 'Round 1: r1A.'));
    const before = smtp.received.length;
    await expect(pass(archive, { target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_UNVERIFIED' });
    expect(smtp.received.length).toBe(before);
  }, 60_000);

  it('a record altered below the saved state is not read again (the audit finds it); the new records still go out', async () => {
    const { archive, smtp, state } = await delivered();
    await captureRound(archive, 1);
    const stream = archive.streams.find((name) => name.startsWith('whatsapp:')) ?? '';
    const file = await segmentWith(archive, stream, 'can you send the term sheet?');
    await writeFile(file, (await readFile(file, 'utf8')).replace('can you send the term sheet?', 'can you send the term sheet!'));
    // By design (docs/delivery.md): the pass resumes verification after it and indexes only the
    // new records, whose e-mails carry what was verified; the full check is the audit's.
    expect((await pass(archive, { target: target(smtp.url), stateDir: state })).sent).toBe(added(1));
    const sink = await openFsSink({ dir: archive.dir, readOnly: true });
    try {
      const audit = await verifyArchive(sink, { verifiers: [archive.key.verifier] });
      expect(audit.ok).toBe(false);
    } finally {
      await sink.close();
    }
  }, 60_000);

  it('a newer checkpoint that rewrites what was verified (validly signed, another root): nothing is sent', async () => {
    const { archive, smtp, state } = await delivered();
    await captureRound(archive, 1);
    const stream = archive.streams.find((name) => name.startsWith('whatsapp:')) ?? '';
    const sink = await openFsSink({ dir: archive.dir, readOnly: true });
    const newest = (await sink.checkpoints(stream)).at(-1) ?? 0;
    await sink.close();
    const file = path.join(archive.dir, 'checkpoints', stream, `${String(newest).padStart(16, '0')}.note`);
    const forged = signNote(formatCheckpoint({ origin: checkpointOrigin(archive.key.name, stream), size: newest, root: Uint8Array.from(Buffer.alloc(32, 7)) }), [archive.key]);
    await chmod(file, 0o600);
    await writeFile(file, forged);
    const before = smtp.received.length;
    await expect(pass(archive, { target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_UNVERIFIED' });
    expect(smtp.received.length).toBe(before);
  }, 60_000);

  it('a saved state of another archive: nothing is sent', async () => {
    const { archive, smtp, state } = await delivered();
    const other = { state: await tempDir('offchannel-incremental-state-') };
    await pass(await createJournalArchive(4), { target: target(smtp.url), stateDir: other.state });
    await captureRound(archive, 1);
    await writeFile(path.join(state, 'journal.verified.json'), await readFile(path.join(other.state, 'journal.verified.json')));
    const before = smtp.received.length;
    await expect(pass(archive, { target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_UNVERIFIED' });
    expect(smtp.received.length).toBe(before);
  }, 60_000);

  it('the kept working index: lost, or of another archive, it is rebuilt and the e-mails are the same; a link in its place is refused', async () => {
    const { archive, smtp, state } = await delivered();
    const index = path.join(state, 'journal.render-index.sqlite');
    const elsewhere = await tempDir('offchannel-incremental-state-');
    await pass(await createJournalArchive(4), { target: target(smtp.url), stateDir: elsewhere });
    const sentBefore = smtp.received.length;
    for (const [round, change] of [[1, 'lost'], [2, 'other']] as const) {
      await captureRound(archive, round);
      for (const suffix of ['', '-wal', '-shm']) await rm(`${index}${suffix}`, { force: true });
      if (change === 'other') for (const suffix of ['', '-wal', '-shm']) await writeFile(`${index}${suffix}`, await readFile(path.join(elsewhere, `journal.render-index.sqlite${suffix}`)).catch(() => Buffer.alloc(0)));
      const sent = smtp.received.length;
      expect((await pass(archive, { target: target(smtp.url), stateDir: state })).sent).toBe(added(round));
      const full = await fullExport(archive, 'message');
      for (const { bytes } of smtp.received.slice(sent)) expect(asRendered(bytes, full.get(messageIdOf(bytes)) ?? Buffer.alloc(0)).equals(full.get(messageIdOf(bytes)) ?? Buffer.alloc(0))).toBe(true);
    }
    expect(smtp.received.length - sentBefore).toBe(added(1) + added(2));
    await captureRound(archive, 3);
    for (const suffix of ['', '-wal', '-shm']) await rm(`${index}${suffix}`, { force: true });
    await symlink(path.join(elsewhere, 'journal.render-index.sqlite'), index);
    const before = smtp.received.length;
    await expect(pass(archive, { target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_STATE' });
    expect(smtp.received.length).toBe(before);
  }, 90_000);

  it('a damaged saved state is refused; a lost one costs one full verification, then passes are incremental again', async () => {
    const { archive, smtp, state } = await delivered();
    const file = path.join(state, 'journal.verified.json');
    const good = await readFile(file);
    await writeFile(file, '{"format":"offchannel-verified-state/1","streams":{"x":1}}');
    await captureRound(archive, 1);
    await expect(pass(archive, { target: target(smtp.url), stateDir: state })).rejects.toMatchObject({ code: 'DELIVERY_STATE' });
    await writeFile(file, good);
    expect((await pass(archive, { target: target(smtp.url), stateDir: state })).sent).toBe(added(1));

    await rm(file);
    await captureRound(archive, 2);
    const full: Reads = { records: 0, blobs: 0, segments: 0 };
    expect((await pass(archive, { target: target(smtp.url), stateDir: state }, full)).sent).toBe(added(2));
    const total = Object.values(archive.counts).reduce((sum, count) => sum + count, 0) + added(1) + added(2);
    expect(full.records + full.segments).toBeGreaterThanOrEqual(total);
    await captureRound(archive, 3);
    const next: Reads = { records: 0, blobs: 0, segments: 0 };
    expect((await pass(archive, { target: target(smtp.url), stateDir: state }, next)).sent).toBe(added(3));
    expect(next.records).toBeLessThanOrEqual(3 * added(3) + archive.streams.length);
  }, 90_000);
});
