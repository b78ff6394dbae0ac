import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SinkUnavailableError, createConnectorContext, type Sink } from '@offchannel/core';
import { createMemorySink } from '@offchannel/core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { parseTelegramConnectorConfig } from '../config.ts';
import { createTestRig, type TestRig } from '../test-support.ts';
import { createTelegramBusinessConnector, type TelegramBusinessHandle, type TelegramBusinessOptions } from './business-connector.ts';
import { BOT_API_RAW_FORMAT } from './map-business.ts';

const SECRET = 'test-secret-token-0123456789abcdef';
const fixtures = JSON.parse(await readFile(new URL('./__fixtures__/business-updates.json', import.meta.url), 'utf8')) as object[];

interface Running {
  readonly rig: TestRig;
  readonly connector: TelegramBusinessHandle;
  readonly post: (body: string | object, options?: { secret?: string | null; path?: string; method?: string }) => Promise<number>;
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const task of cleanup.splice(0).reverse()) await task();
});

async function running(options: Partial<TelegramBusinessOptions> = {}, sink?: Sink): Promise<Running> {
  const rig = await createTestRig(sink ? { sink } : undefined);
  const connector = createTelegramBusinessConnector({ account: 'alice', secretToken: SECRET, listen: { port: 0 }, ...options });
  cleanup.push(() => rig.close());
  const ctx = createConnectorContext({ recorder: rig.recorder, connector, state: rig.state, logger: rig.logger, signal: new AbortController().signal });
  await connector.start(ctx);
  cleanup.push(() => connector.stop());
  const address = connector.address();
  if (!address) throw new Error('not listening');
  const post: Running['post'] = (body, postOptions = {}) =>
    new Promise((resolve, reject) => {
      const payload = typeof body === 'string' ? body : JSON.stringify(body);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      const secret = postOptions.secret === undefined ? SECRET : postOptions.secret;
      if (secret !== null) headers['x-telegram-bot-api-secret-token'] = secret;
      const req = request({ host: address.host, port: address.port, path: postOptions.path ?? address.path, method: postOptions.method ?? 'POST', headers }, (response) => {
        response.resume();
        response.on('end', () => {
          resolve(response.statusCode ?? 0);
        });
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'ECONNRESET' || error.code === 'EPIPE') resolve(-1);
        else reject(error);
      });
      req.end(payload);
    });
  return { rig, connector, post };
}

describe('Bot API Business webhook', () => {
  it('records connection, messages in both directions, the edit and the deletes — 200 each', async () => {
    const { rig, post, connector } = await running();
    for (const update of fixtures) expect(await post(update)).toBe(200);
    const records = await rig.records();
    expect(records.map((record) => record.kind)).toEqual(['system', 'message', 'message', 'edit', 'delete', 'delete']);
    expect(records[0]).toMatchObject({ system: { event: 'business-connected', fields: { connectionId: 'BCONN-test-1', userId: '777000111', enabled: 'true' } } });
    expect(records[1]).toMatchObject({
      key: 'message:123456789:4101',
      direction: 'inbound',
      conversation: { id: '123456789', type: 'direct', title: 'Dana Client' },
      sender: { id: '123456789', name: 'Dana Client', aliases: ['@dana_client'] },
      native: { id: '4101', peer: '123456789' },
      text: 'Buy 100 ACME @ 12.34 — confirm?',
      raw: { format: BOT_API_RAW_FORMAT },
      meta: { businessConnection: 'BCONN-test-1' },
    });
    expect(records[2]).toMatchObject({ direction: 'outbound', sender: { id: '777000111' }, replyTo: { id: '4101', peer: '123456789' } });
    expect(records[3]).toMatchObject({ text: 'Buy 200 ACME @ 12.34 — confirm?', target: { id: '4101', peer: '123456789' }, sentAt: '2023-11-14T22:14:20.000Z' });
    expect(records.slice(4).map((record) => record.target)).toEqual([{ id: '4101', peer: '123456789' }, { id: '4102', peer: '123456789' }]);
    // The raw blob is exactly the body Telegram sent.
    expect(Buffer.from((await rig.blob(records[1]?.raw?.sha256 ?? '')) ?? []).toString('utf8')).toBe(JSON.stringify(fixtures[1]));
    expect(rig.logger.text()).not.toContain('ACME');
    expect(connector.status()).toMatchObject({ state: 'running', captured: 6, errors: 0 });
  });

  it('refuses a wrong or missing secret token with 401 and records nothing', async () => {
    const { rig, post } = await running();
    expect(await post(fixtures[1] ?? {}, { secret: 'wrong-secret-token-0123456789abcdef' })).toBe(401);
    expect(await post(fixtures[1] ?? {}, { secret: null })).toBe(401);
    expect(await post(fixtures[1] ?? {}, { secret: SECRET.slice(0, -1) })).toBe(401);
    expect(await rig.records()).toEqual([]);
  });

  it('handles hostile bodies: unreadable authenticated bodies are kept as unsupported, oversize is refused, other routes 404/405', async () => {
    const { rig, post } = await running({ maxBodyBytes: 4096 });
    expect(await post('{"update_id": 1, "business_message": ')).toBe(200);
    expect(await post('[1,2,3]')).toBe(200);
    expect(await post({ update_id: 'x' })).toBe(200);
    expect(await post({ update_id: 7, message: { message_id: 1, chat: { id: 1, type: 'private' }, date: 1 } })).toBe(200);
    expect(await post({ update_id: 8, business_message: { message_id: 'nope' } })).toBe(200);
    expect(await post({ update_id: 9, business_message: { message_id: 5, chat: { id: 1, type: 'private' }, date: 1, text: 'x', entities: 'not a list' } })).toBe(200);
    expect([413, -1]).toContain(await post('x'.repeat(10_000)));
    expect(await post(fixtures[1] ?? {}, { path: '/other' })).toBe(404);
    expect(await post(fixtures[1] ?? {}, { method: 'PUT' })).toBe(405);
    const records = await rig.records();
    expect(records.map((record) => [record.kind, record.problem?.reason])).toEqual([
      ['unsupported', 'malformed-update'],
      ['unsupported', 'malformed-update'],
      ['unsupported', 'malformed-update'],
      ['unsupported', 'not-a-business-update'],
      ['unsupported', 'mapping-failed'],
      ['unsupported', 'mapping-failed'],
    ]);
    expect(Buffer.from((await rig.blob(records[0]?.raw?.sha256 ?? '')) ?? []).toString('utf8')).toBe('{"update_id": 1, "business_message": ');
  });

  it('answers only after the record is durable: 500 while the archive is down, then 200 and one record on redelivery', async () => {
    const memory = createMemorySink();
    let down = true;
    let release: () => void = () => undefined;
    let gate: Promise<void> | undefined;
    const openGate = (): void => {
      gate = new Promise((resolve) => (release = resolve));
    };
    const flaky = Object.create(memory) as Sink;
    Object.assign(flaky, {
      appendBatch: async (batch: Parameters<Sink['appendBatch']>[0]) => {
        if (down) throw new SinkUnavailableError('test outage');
        if (gate) await gate;
        return memory.appendBatch(batch);
      },
    });
    const first = await running({}, flaky);
    expect(await first.post(fixtures[1] ?? {})).toBe(500);
    expect(first.connector.status().errors).toBe(1);

    // Archive back, but slow: the response must wait for the durable append.
    const { rig, post } = await running({}, flaky);
    down = false;
    openGate();
    let answered = false;
    const pending = post(fixtures[1] ?? {}).then((status) => {
      answered = true;
      return status;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(answered).toBe(false);
    release();
    expect(await pending).toBe(200);
    expect(await post(fixtures[1] ?? {})).toBe(200); // Telegram redelivers: recorded once
    const records = await rig.records();
    expect(records.map((record) => record.key)).toEqual(['message:123456789:4101']);
  });

  it('skips edits that do not change the content, and alerts when the owner disconnects the bot', async () => {
    const { rig, post, connector } = await running();
    await post(fixtures[1] ?? {});
    const cosmetic = { update_id: 900010, edited_business_message: { ...(fixtures[1] as { business_message: object }).business_message, edit_date: 1700000099 } };
    expect(await post(cosmetic)).toBe(200);
    const disconnected = { update_id: 900011, business_connection: { ...(fixtures[0] as { business_connection: object }).business_connection, date: 1700000100, is_enabled: false } };
    expect(await post(disconnected)).toBe(200);
    const records = await rig.records();
    expect(records.map((record) => record.kind)).toEqual(['message', 'system']);
    expect(records[1]?.system?.event).toBe('business-disconnected');
    expect(connector.status().detail).toContain('disabled by the account owner');
  });

  it('downloads media through the downloader seam, and records it as unavailable without a bot token', async () => {
    const photo = {
      update_id: 900020,
      business_message: {
        business_connection_id: 'BCONN-test-1',
        message_id: 4200,
        from: { id: 123456789, is_bot: false, first_name: 'Dana' },
        chat: { id: 123456789, type: 'private', first_name: 'Dana' },
        date: 1700000200,
        caption: 'chart',
        photo: [
          { file_id: 'small', file_unique_id: 'u-small', width: 90, height: 90, file_size: 10 },
          { file_id: 'large', file_unique_id: 'u-large', width: 1280, height: 960, file_size: 3 },
        ],
        location: { latitude: 51.5, longitude: -0.12 },
      },
    };
    const asked: string[] = [];
    const withSeam = await running({ downloadFile: async (file) => (asked.push(file.fileId), new Uint8Array([1, 2, 3])) });
    expect(await withSeam.post(photo)).toBe(200);
    const [stored] = await withSeam.rig.records();
    expect(asked).toEqual(['large']);
    expect(stored?.attachments).toMatchObject([
      { status: 'stored', mime: 'image/jpeg', size: 3 },
      { status: 'stored', mime: 'application/json', name: 'location.json' },
    ]);
    const without = await running();
    expect(await without.post(photo)).toBe(200);
    const [unavailable] = await without.rig.records();
    expect(unavailable?.attachments?.[0]).toMatchObject({ status: 'unavailable', reason: 'no-bot-token: media downloads need the bot token', size: 3 });
  });

  it('rejects a weak secret token at construction', () => {
    expect(() => createTelegramBusinessConnector({ account: 'alice', secretToken: 'short', listen: { port: 0 } })).toThrow(/secret token/);
  });

  it('takes its secret token from the environment or a 0600 file, end to end through the config parser', { timeout: 60_000 }, async () => {
    const fromEnv = 'token-from-environment-0123456789';
    const fromFile = 'token-from-private-file-0123456789';
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-business-secrets-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(path.join(dir, 'webhook-token'), `${fromFile}\n`, { mode: 0o600 });
    for (const [entry, token] of [
      [{ secretTokenEnv: 'OFFCHANNEL_TEST_WEBHOOK_TOKEN' }, fromEnv],
      [{ secretTokenFile: './webhook-token' }, fromFile],
    ] as const) {
      const options = parseTelegramConnectorConfig({ route: 'business', account: 'alice', listen: { port: 8443 }, ...entry }, 'config.connectors[0]', { baseDir: dir, env: { OFFCHANNEL_TEST_WEBHOOK_TOKEN: fromEnv } });
      if (options.route !== 'business') throw new Error('wrong route');
      const { rig, post } = await running({ ...options, listen: { port: 0 } }); // an ephemeral port for the test
      expect(await post(fixtures[1] ?? {}, { secret: SECRET })).toBe(401);
      expect(await post(fixtures[1] ?? {}, { secret: token })).toBe(200);
      expect((await rig.records()).map((record) => record.key)).toEqual(['message:123456789:4101']);
      expect(rig.logger.text()).not.toContain(token);
    }
  });
});
