import { spawnSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ArchiveRecord, type CaptureInput, ConfigError, Recorder, type StateStore, createConnectorContext, decodeRecord, openStateStore } from '@offchannel/core';
import { createMemorySink, createRecordingLogger } from '@offchannel/core/testing';
import type { PolicyRules } from './capture-config.ts';
import { CapturePolicy, type IdentifierKey, MAX_POLICY_IDS, identifierHmac, sha256Text } from './capture-policy.ts';

const CONTACT = '+15550199';
const DM = 'dm:+15550199';
const rules: PolicyRules = { excludeContacts: [CONTACT], excludeConversations: [] };
const bytes = new Uint8Array(randomBytes(32));
const key: IdentifierKey = { bytes, id: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A real recorder on a memory sink and a real state store in a temporary directory. */
async function harness(state?: StateStore): Promise<{ state: StateStore; records: () => Promise<ArchiveRecord[]>; policy: (keyFor?: IdentifierKey, rulesFor?: PolicyRules) => CapturePolicy; logger: ReturnType<typeof createRecordingLogger> }> {
  const sink = createMemorySink();
  const logger = createRecordingLogger();
  const recorder = new Recorder({ sink, allowVolatileSink: true, logger });
  let store = state;
  if (!store) {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-policy-'));
    dirs.push(dir);
    store = await openStateStore({ dir, unencrypted: true });
  }
  const ctx = createConnectorContext({ recorder, connector: { channel: 'demo', account: 'alice', source: { package: 'test', version: '0.0.0' } }, state: store, logger, signal: new AbortController().signal });
  return {
    state: store,
    logger,
    policy: (keyFor = key, rulesFor = rules) => new CapturePolicy(ctx, rulesFor, 'policy@1', keyFor),
    records: async () => {
      const out: ArchiveRecord[] = [];
      for await (const stored of sink.read('demo:alice')) out.push(decodeRecord(stored.bytes).record);
      return out;
    },
  };
}

const inbound: CaptureInput = { kind: 'message', key: 'm1', conversation: { id: DM, type: 'direct' }, sender: { id: CONTACT }, direction: 'inbound', sentAt: '2026-01-02T03:04:05.000Z', text: 'dinner?' };
const reply: CaptureInput = { kind: 'message', key: 'm2', conversation: { id: DM, type: 'direct' }, sender: { id: 'alice' }, direction: 'outbound', sentAt: '2026-01-02T03:05:05.000Z', text: 'sure' };

describe('capture policy identifiers', () => {
  it('refuses to exclude anything without an identifier key', async () => {
    const { state } = await harness();
    const recorder = new Recorder({ sink: createMemorySink(), allowVolatileSink: true });
    const ctx = createConnectorContext({ recorder, connector: { channel: 'demo', account: 'alice', source: { package: 'test', version: '0.0.0' } }, state, signal: new AbortController().signal });
    expect(() => new CapturePolicy(ctx, rules, 'policy@1')).toThrow(ConfigError);
    expect(() => new CapturePolicy(ctx, { excludeContacts: [], excludeConversations: [] }, 'policy@1')).not.toThrow();
  });

  it('an examiner holding the key recomputes each identifier by hand with openssl, as docs/capture.md says', async () => {
    const { policy, records } = await harness();
    const running = policy();
    await running.start();
    const ctx = running.wrap();
    expect((await ctx.capture(inbound)).status).toBe('excluded');
    expect((await ctx.capture(reply)).status).toBe('excluded'); // learned: the custodian's reply is excluded too
    await running.report();
    const excluded = (await records()).find((record) => record.system?.event === 'conversation-excluded');
    expect(excluded?.system?.fields).toMatchObject({ 'conversation.hmac-sha256': identifierHmac(key, DM), 'identifier.key-id': key.id, count: '2' });
    const hex = Buffer.from(bytes).toString('hex');
    const byHand = spawnSync('openssl', ['dgst', '-sha256', '-mac', 'HMAC', '-macopt', `hexkey:${hex}`], { input: DM, encoding: 'utf8' });
    expect(byHand.status).toBe(0);
    expect(byHand.stdout.trim().split('= ').at(-1)).toBe(excluded?.system?.fields?.['conversation.hmac-sha256']);
    expect(createHmac('sha256', bytes).update(DM).digest('hex')).toBe(identifierHmac(key, DM));
    const keyId = spawnSync('openssl', ['dgst', '-sha256'], { input: Buffer.from(bytes), encoding: 'utf8' });
    expect(`sha256:${keyId.stdout.trim().split('= ').at(-1) ?? ''}`).toBe(key.id);
  });

  it('re-keys state left by versions that kept plain SHA-256, and never writes those hashes to the archive', async () => {
    const first = await harness();
    // What the previous version left: a pending count and a learned direct conversation, keyed by sha256.
    await first.state.scope('demo:alice').scope('offchannel-policy').setJson('pending-exclusions', {
      [sha256Text(CONTACT)]: { count: 2, first: '2026-01-01T00:00:00.000Z', last: '2026-01-01T01:00:00.000Z' },
      [sha256Text('dm:someone-no-longer-listed')]: { count: 1, first: '2026-01-01T02:00:00.000Z', last: '2026-01-01T02:00:00.000Z' },
    });
    await first.state.scope('demo:alice').scope('offchannel-policy').setJson('excluded-direct-conversations', [sha256Text(CONTACT)]);
    const { policy, records } = await harness(first.state);
    const running = policy();
    await running.start();
    // The learned conversation was re-keyed: the custodian's message there is excluded without a new inbound one.
    expect((await running.wrap().capture({ ...reply, conversation: { id: CONTACT, type: 'direct' } })).status).toBe('excluded');
    await running.report();
    const archived = await records();
    const text = JSON.stringify(archived);
    for (const id of [CONTACT, DM, 'dm:someone-no-longer-listed']) expect(text).not.toContain(sha256Text(id));
    const excluded = archived.filter((record) => record.system?.event === 'conversation-excluded').map((record) => record.system?.fields);
    expect(excluded).toEqual([
      expect.objectContaining({ conversation: expect.stringMatching(/^not recorded: counted before identifiers were keyed/) as string, count: '1' }),
      // The re-keyed count is recorded on start; the new exclusion is counted afresh.
      expect.objectContaining({ 'conversation.hmac-sha256': identifierHmac(key, CONTACT), 'identifier.key-id': key.id, count: '2', from: '2026-01-01T00:00:00.000Z' }),
      expect.objectContaining({ 'conversation.hmac-sha256': identifierHmac(key, CONTACT), count: '1' }),
    ]);
    expect(await first.state.scope('demo:alice').scope('offchannel-policy').getJson('pending-exclusions')).toBeUndefined();
  });

  it('logs an excluded event with no identifier at all', async () => {
    const { policy, logger } = await harness();
    const running = policy();
    await running.start();
    await running.wrap().capture(inbound);
    const line = logger.lines.find((entry) => entry.message === 'event excluded by capture policy; counted, not stored');
    // No per-event field at all — not even one the redacting logger would blank (a renamed field would not be).
    expect(line?.fields).toEqual({ stream: 'demo:alice' });
    const text = JSON.stringify(line);
    const keyed = createHmac('sha256', bytes).update(DM).digest('hex');
    for (const fragment of [CONTACT, DM, sha256Text(DM).slice(0, 12), keyed.slice(0, 12)]) expect(text).not.toContain(fragment);
    expect(text).not.toMatch(/[0-9a-f]{12}/);
  });

  it('records long lists whole, 15 identifiers per field, and refuses lists too long for one record', async () => {
    const contacts = Array.from({ length: 40 }, (_, index) => `+1555000${String(index).padStart(4, '0')}`);
    const conversations = Array.from({ length: 16 }, (_, index) => `group-${index}`);
    const { policy, records } = await harness();
    await policy(key, { excludeContacts: contacts, excludeConversations: conversations }).start();
    const [inForce] = await records();
    expect(inForce?.kind).toBe('policy');
    const fields = inForce?.system?.fields ?? {};
    const joined = (name: string): string[] => Object.keys(fields).filter((field) => field === name || field.startsWith(`${name}.`)).sort((a, b) => a.length - b.length || a.localeCompare(b)).flatMap((field) => (fields[field] ?? '').split(','));
    expect(Object.keys(fields).filter((field) => field.startsWith('exclude.contacts.'))).toEqual(['exclude.contacts.hmac-sha256', 'exclude.contacts.hmac-sha256.2', 'exclude.contacts.hmac-sha256.3']);
    expect(joined('exclude.contacts.hmac-sha256')).toEqual(contacts.map((id) => identifierHmac(key, id)));
    expect(joined('exclude.conversations.hmac-sha256')).toEqual(conversations.map((id) => identifierHmac(key, id)));

    const tooMany = Array.from({ length: MAX_POLICY_IDS + 1 }, (_, index) => `+1666${index}`);
    const other = await harness();
    await expect(other.policy(key, { excludeContacts: tooMany, excludeConversations: [] }).start()).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringMatching(/lists too many ids to record \(at most 915 in all/) as string });
    expect(await other.records()).toEqual([]);
  });
});
