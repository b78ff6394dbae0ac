import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { verifyArchive, type ArchiveRecord } from '@offchannel/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RelayHarness, type RunningRelay } from './__fixtures__/relay-harness.ts';
import { playDemoConversation, waitForKeys } from './testing/index.ts';

/** Every event must be archived within this long of its commit by the writer process. */
const WITHIN_MS = 2000;

let harness: RelayHarness;
let relay: RunningRelay | undefined;

beforeEach(async () => {
  harness = await RelayHarness.create();
});

afterEach(() => harness.dispose());

const captured = async (key: string): Promise<ArchiveRecord> => {
  await waitForKeys((k) => relay!.ctx.lookup(k), [key], { timeoutMs: WITHIN_MS });
  return harness.byKey(key);
};

describe('iMessage relay on a live macOS 26 chat.db changed by another process', () => {
  it('records each event as the right record within 2 s, exactly once, and the archive verifies', async () => {
    const db = await harness.chatDb('mac', { schema: 'macos26' });
    relay = await harness.start(db);

    const hello = await db.receive({ from: '+15550100', text: 'Can you confirm the block trade?' });
    const incoming = await captured(hello.key);
    expect(incoming).toMatchObject({ kind: 'message', direction: 'inbound', text: 'Can you confirm the block trade?', sender: { id: '+15550100' }, native: { id: hello.guid } });
    expect(incoming.conversation).toEqual({ id: 'iMessage;-;+15550100', type: 'direct' });
    expect(incoming.meta).toMatchObject({ 'imessage.service': 'iMessage' });
    expect(incoming.sentAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    const raw = await harness.raw(incoming);
    expect(raw).toMatchObject({ format: 'imessage.chat-db-row.json', version: 1, message: { guid: hello.guid, text: 'Can you confirm the block trade?' } });
    expect((raw['message'] as Record<string, unknown>)['attributedBody']).toHaveProperty('base64');

    const reply = await db.send({ to: '+15550100', text: 'Confirmed at 101.25', bodyOnly: true });
    expect(await captured(reply.key)).toMatchObject({ kind: 'message', direction: 'outbound', text: 'Confirmed at 101.25', sender: { id: 'alice@firm.example' } });

    const threaded = await db.receive({ from: '+15550100', text: 'Thanks @Alice', replyTo: hello.guid, mention: 'alice@firm.example', bodyOnly: true });
    expect(await captured(threaded.key)).toMatchObject({ text: 'Thanks @Alice', replyTo: { id: hello.guid }, mentions: ['alice@firm.example'] });

    const sms = await db.receive({ from: '+15550199', text: 'green bubble', service: 'SMS' });
    expect(await captured(sms.key)).toMatchObject({ conversation: { id: 'SMS;-;+15550199' }, meta: { 'imessage.service': 'SMS' } });

    const edit = await db.edit(reply.guid, 'Confirmed at 101.30');
    expect(await captured(edit.key)).toMatchObject({ kind: 'edit', target: { id: reply.guid }, text: 'Confirmed at 101.30', direction: 'outbound' });
    const again = await db.edit(reply.guid, 'Confirmed at 101.35');
    expect(again.key).toBe(`edit:${reply.guid}:0:2`);
    expect(await captured(again.key)).toMatchObject({ kind: 'edit', text: 'Confirmed at 101.35', meta: { 'imessage.version': 2 } });

    const unsend = await db.unsend(hello.guid);
    expect(await captured(unsend.key)).toMatchObject({ kind: 'delete', target: { id: hello.guid }, deletion: { scope: 'everyone' }, sender: { id: '+15550100' } });

    const love = await db.tapback({ target: reply.guid, from: '+15550100', value: 'love' });
    expect(await captured(love.key)).toMatchObject({ kind: 'reaction', target: { id: reply.guid }, reaction: { value: 'love', action: 'add' } });
    const unlove = await db.tapback({ target: reply.guid, from: '+15550100', value: 'love', remove: true });
    expect(await captured(unlove.key)).toMatchObject({ kind: 'reaction', reaction: { value: 'love', action: 'remove' } });

    const photo = await db.receiveAttachment({ from: '+15550100', name: 'term-sheet.pdf', mime: 'application/pdf', text: 'see attached' });
    const pending = await captured(photo.key);
    expect(pending.attachments).toEqual([{ status: 'unavailable', reason: 'transfer-pending', mime: 'application/pdf', name: 'term-sheet.pdf' }]);
    expect(pending.text).toBe('\uFFFCsee attached');
    const bytes = new TextEncoder().encode('%PDF-1.7 term sheet');
    const done = await db.completeTransfer(photo, bytes);
    const completed = await captured(done.key);
    expect(completed).toMatchObject({ kind: 'edit', target: { id: photo.guid }, meta: { 'imessage.reason': 'attachment-transfer-complete' } });
    expect(completed.attachments?.[0]).toMatchObject({ status: 'stored', size: bytes.length, mime: 'application/pdf', name: 'term-sheet.pdf' });
    expect(await harness.sink.getBlob((completed.attachments?.[0] as { sha256: string }).sha256)).toEqual(bytes);

    const group = await db.createGroup({ name: 'Rates desk', members: ['+15550100', 'bob@client.example'] });
    const created = await captured(group.key);
    expect(created).toMatchObject({ kind: 'membership', conversation: { id: group.chat, type: 'group', title: 'Rates desk' }, membership: { action: 'create', value: 'Rates desk' } });
    expect(created.membership?.members?.map((m) => m.id)).toEqual(['+15550100', 'bob@client.example']);
    const inGroup = await db.receive({ from: 'bob@client.example', chat: group.chat, text: 'morning all' });
    expect(await captured(inGroup.key)).toMatchObject({ conversation: { id: group.chat, type: 'group' }, sender: { id: 'bob@client.example' } });
    const renamed = await db.renameGroup(group.chat, 'Rates desk EU', 'bob@client.example');
    expect(await captured(renamed.key)).toMatchObject({ kind: 'membership', membership: { action: 'title', value: 'Rates desk EU' } });

    const delivered = await db.delivered(reply.guid);
    expect(await captured(delivered.key)).toMatchObject({ kind: 'receipt', target: { id: reply.guid }, receipt: { status: 'delivered' }, sender: { id: '+15550100' } });

    // Exactly once: every key once, nothing else recorded.
    const records = await harness.records();
    const keys = records.map((r) => r.key);
    expect(new Set(keys).size).toBe(keys.length);
    const expected = [hello, reply, threaded, sms, edit, again, unsend, love, unlove, photo, done, group, inGroup, renamed, delivered].map((e) => e.key);
    expect(keys.sort()).toEqual(expected.sort());
    expect(relay.connector.status()).toMatchObject({ state: 'running', errors: 0, captured: expected.length });
    expect(relay.connector.status().detail).toMatch(/cursor ROWID \d+; last poll/);

    const report = await verifyArchive(harness.sink);
    expect(report.failures).toEqual([]);
    expect(report.ok).toBe(true);

    const logs = harness.logger.text();
    for (const text of ['block trade', '101.25', '101.30', '101.35', 'Thanks', 'green bubble', 'see attached', 'morning all', 'Rates desk']) expect(logs).not.toContain(text);
  });

  it('records a hostile attributedBody as unsupported with the raw row, keeps running, and stores a huge body as a text blob', async () => {
    const db = await harness.chatDb('mac', { schema: 'macos26' });
    relay = await harness.start(db);
    const hostile = await db.receive({ from: '+15550100', text: '', body: Uint8Array.from([4, 11, ...new TextEncoder().encode('streamtyped'), 0x81, 0xe8, 0x03, 0x84, 0x01, 0x40, 0x84, 0x84, 0x84, 0xff, 0xff]) });
    const rejected = await captured(hostile.key);
    expect(rejected).toMatchObject({ kind: 'unsupported', native: { id: hostile.guid }, problem: { reason: 'attributed-body-undecodable', detail: 'TYPEDSTREAM_TRUNCATED' } });
    expect(rejected.text).toBeUndefined();
    expect(((await harness.raw(rejected))['message'] as Record<string, unknown>)['attributedBody']).toHaveProperty('base64');
    const next = await db.receive({ from: '+15550100', text: 'still here' });
    expect(await captured(next.key)).toMatchObject({ kind: 'message', text: 'still here' });

    const long = 'A very long disclosure. '.repeat(3000); // 72,000 bytes, only in attributedBody
    const huge = await db.receive({ from: '+15550100', text: long, bodyOnly: true });
    const record = await captured(huge.key);
    expect(record.text).toBeUndefined();
    expect(new TextDecoder().decode(await harness.sink.getBlob(record.textBlob?.sha256 ?? ''))).toBe(long);
  });
});

describe('rows as real Macs and hostile writers leave them', () => {
  it('records a message whose text column is the empty string from its attributedBody', async () => {
    const db = await harness.chatDb('mac', { schema: 'macos26' });
    relay = await harness.start(db);
    const event = await db.receive({ from: '+15550100', text: 'only in the body', emptyText: true });
    const record = await captured(event.key);
    expect(record).toMatchObject({ kind: 'message', text: 'only in the body' });
    expect(((await harness.raw(record))['message'] as Record<string, unknown>)['text']).toBe('');
  });

  it('records an attachment row naming a file outside the attachments directory as unavailable, and keeps capturing', async () => {
    const db = await harness.chatDb('mac', { schema: 'macos26' });
    const key = path.join(harness.dir, 'signing.key');
    await writeFile(key, 'PRIVATE KEY MATERIAL');
    relay = await harness.start(db);
    const names = [key, '~/offchannel-test-no-such-dir/id_ed25519', '~/Library/Messages/Attachments/../../signing.key'];
    for (const filename of names) {
      const event = await db.receiveAttachment({ from: '+15550100', name: 'photo.jpg', mime: 'image/jpeg', filename });
      await captured(event.key);
      const done = await db.completeTransfer(event, new TextEncoder().encode('not written for hostile names'));
      expect((await captured(done.key)).attachments).toEqual([{ status: 'unavailable', reason: 'outside-attachments', mime: 'image/jpeg', name: 'photo.jpg' }]);
    }
    const next = await db.receive({ from: '+15550100', text: 'still capturing' });
    expect(await captured(next.key)).toMatchObject({ kind: 'message', text: 'still capturing' });
    const hashes = (await harness.records()).flatMap((record) => [record.raw?.sha256, ...(record.attachments ?? []).map((a) => ('sha256' in a ? a.sha256 : undefined))]);
    const blobs = await Promise.all(hashes.filter((hash) => hash !== undefined).map((hash) => harness.sink.getBlob(hash)));
    expect(blobs.some((bytes) => bytes !== undefined && Buffer.from(bytes).includes('PRIVATE KEY'))).toBe(false);
    expect(relay.connector.status()).toMatchObject({ state: 'running', errors: 0 });
  }, 60_000);
});

describe('the demo script', () => {
  it('plays a whole scripted day that the relay records step by step, and the archive verifies', async () => {
    const db = await harness.chatDb();
    relay = await harness.start(db);
    const lookup = (key: string) => relay!.ctx.lookup(key);
    const steps = await playDemoConversation(db, { captured: (key) => waitForKeys(lookup, [key], { timeoutMs: WITHIN_MS }) });
    expect(steps).toHaveLength(13);
    expect(await waitForKeys(lookup, steps.map((step) => step.event.key))).toHaveLength(13);
    const kinds = (await harness.records()).map((record) => record.kind);
    expect(kinds.filter((kind) => kind === 'edit')).toHaveLength(2); // the text edit and the completed attachment
    expect(kinds).toContain('delete');
    expect((await verifyArchive(harness.sink)).ok).toBe(true);
  });
});

describe('restart in the middle', () => {
  it('misses nothing and duplicates nothing across a stop, writes while stopped, and a start', async () => {
    let db = await harness.chatDb('mac', { schema: 'macos26' });
    relay = await harness.start(db);
    const first = await db.receive({ from: '+15550100', text: 'before the restart' });
    await captured(first.key);
    await relay.stop();
    await db.close(); // Messages restarts too: a new writer process on the same database
    db = await harness.chatDb('mac', { reopen: true });

    const whileDown = await db.receive({ from: '+15550100', text: 'while the relay was down', bodyOnly: true });
    const edited = await db.edit(first.guid, 'before the restart (edited)');
    const tapback = await db.tapback({ target: first.guid, chat: first.chat!, value: 'like' });
    const quick = await db.receive({ from: '+15550100', text: 'sent and unsent while down' });
    const gone = await db.unsend(quick.guid);

    relay = await harness.start(db);
    expect(await captured(whileDown.key)).toMatchObject({ text: 'while the relay was down' });
    expect(await captured(edited.key)).toMatchObject({ kind: 'edit', text: 'before the restart (edited)' });
    expect(await captured(tapback.key)).toMatchObject({ kind: 'reaction', direction: 'outbound', reaction: { value: 'like', action: 'add' } });
    // Unsent before the relay saw it: the content is gone from chat.db, so the record says so.
    expect(await captured(quick.key)).toMatchObject({ kind: 'gap', gap: { reason: 'unsent-before-capture' }, native: { id: quick.guid } });
    expect(await captured(gone.key)).toMatchObject({ kind: 'delete', target: { id: quick.guid } });

    const after = await db.receive({ from: '+15550100', text: 'after the restart' });
    await captured(after.key);
    const keys = (await harness.records()).map((r) => r.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys.sort()).toEqual([first, whileDown, edited, tapback, quick, gone, after].map((e) => e.key).sort());
    expect((await verifyArchive(harness.sink)).ok).toBe(true);
  });
});

describe('older macOS layout (no edit/unsend columns, upgraded in place)', () => {
  it('discovers the columns and records messages, tapbacks and groups', async () => {
    const db = await harness.chatDb('mac', { schema: 'macos12' });
    relay = await harness.start(db);
    const hello = await db.receive({ from: 'carol@client.example', text: 'old Mac, same capture', bodyOnly: true });
    expect(await captured(hello.key)).toMatchObject({ kind: 'message', text: 'old Mac, same capture' });
    const like = await db.tapback({ target: hello.guid, chat: hello.chat!, value: 'like' });
    expect(await captured(like.key)).toMatchObject({ kind: 'reaction', target: { id: hello.guid } });
    const group = await db.createGroup({ name: 'Legacy desk', members: ['carol@client.example'] });
    expect(await captured(group.key)).toMatchObject({ membership: { action: 'create' } });
    const raw = await harness.raw(await harness.byKey(hello.key));
    expect(raw['message']).not.toHaveProperty('date_edited');
    expect(raw['message']).toHaveProperty('sr_ck_sync_state');
    await expect(db.unsend(hello.guid)).rejects.toThrow(/fixture writer/);
  });
});
