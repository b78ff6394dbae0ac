import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateStateKey, type ConnectorContext } from '@offchannel/core';
import * as whatsapp from '@offchannel/whatsapp';
import { JIDS, createWhatsAppTestDriver, type WhatsAppTestDriver } from '@offchannel/whatsapp/testing';
import type { CliIo } from '../cli-io.ts';
import { coverageCommand } from './coverage-command.ts';
import { reconcileCommand } from './reconcile-command.ts';

const ACCOUNT = 'desk-42';
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const done of cleanup.splice(0).reverse()) await done();
});

async function workspace(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-reconcile-whatsapp-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'state.key'), `${generateStateKey()}\n`, { mode: 0o600 });
  const connector = { channel: 'whatsapp', account: ACCOUNT, reconcile: false };
  await writeFile(path.join(dir, 'offchannel.config.json'), JSON.stringify({ archive: { dir: './archive' }, state: { dir: './state', keyFile: './state.key' }, connectors: [connector] }), { mode: 0o600 });
  return dir;
}

function cliIo(cwd: string) {
  const out = { stdout: '', stderr: '' };
  const io: CliIo = { stdout: { write: (text: string) => (out.stdout += text) }, stderr: { write: (text: string) => (out.stderr += text), isTTY: false }, env: {}, cwd, signal: new AbortController().signal };
  return { io, out };
}

/**
 * The config's WhatsApp connector is the real one on the offline driver. When it connects, the
 * server delivers what queued while it was away: it announces 4 messages and delivers 2 (one of
 * Alice's and one of Bob's are lost), after one live message before the outage. The connector's
 * clock follows the messages' (the driver sends message n at T0 + n s): only messages sent within
 * the gap count as recovered.
 */
async function driverWithOutage(): Promise<WhatsAppTestDriver> {
  // Coverage reports up to the wall clock: the outage is a minute ago (whole seconds).
  const T0 = Math.floor(Date.now() / 1000) * 1000 - 60_000;
  let now = T0;
  const driver = await createWhatsAppTestDriver({ account: ACCOUNT, offlineQuietMs: 100, startTime: T0 / 1000, clock: () => now });
  cleanup.push(() => driver.media.close());
  const start = driver.connector.start.bind(driver.connector);
  (driver.connector as { start: (ctx: ConnectorContext) => Promise<void> }).start = async (ctx) => {
    await start(ctx);
    await driver.incomingText('before the outage');
    await driver.whenCaptured();
    now = T0 + 1500; // last seen online: the gap begins here
    driver.connector.checkCompleteness();
    await driver.offlineText('LOST: BUY 300 ACME');
    const kept = await driver.offlineText('delivered from alice');
    await driver.offlineText('LOST: SELL 40 ACME', { from: JIDS.bob });
    const keptBob = await driver.offlineText('delivered from bob', { from: JIDS.bob });
    now = T0 + 6000;
    await driver.socket().offlineDelivery([kept, keptBob], { announced: 4 });
  };
  return driver;
}

async function run(dir: string, driver: WhatsAppTestDriver, argv: string[]) {
  const { io, out } = cliIo(dir);
  const code = await reconcileCommand(['whatsapp', '--account', ACCOUNT, ...argv], io, async (name) => {
    expect(name).toBe('@offchannel/whatsapp');
    return { ...whatsapp, createWhatsAppConnector: () => driver.connector };
  });
  return { code, ...out };
}

async function coverageGaps(dir: string) {
  const { io, out } = cliIo(dir);
  const code = await coverageCommand([path.join(dir, 'archive'), '--json'], io);
  if (out.stdout === '') throw new Error(`coverage printed nothing (exit ${code}): ${out.stderr}`);
  const report = JSON.parse(out.stdout) as { streams: { stream: string; gaps: { cause: string; detail: string; missing?: number; recovered?: string }[]; daily: { recovered: number }[]; reconciliation?: string }[] };
  return { code, stream: report.streams.find((s) => s.stream === `whatsapp:${ACCOUNT}`) };
}

describe('offchannel reconcile whatsapp', () => {
  it('asks the phone after the gap, records the lost messages once, and coverage shows them recovered against the gap', async () => {
    const dir = await workspace();
    const result = await run(dir, await driverWithOutage(), ['--json', '--timeout', '30s']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ stream: `whatsapp:${ACCOUNT}`, gaps: 1, recovered: 1, notRecovered: [], chatsAsked: 2, chatsAnswered: 2, returned: 3, recorded: 2 });
    expect(result.stdout).not.toContain('ACME');

    const { stream } = await coverageGaps(dir);
    expect(stream?.gaps).toEqual([expect.objectContaining({ cause: 'platform-reported loss', detail: 'offline-count-mismatch', missing: 2, recovered: '2 recovered (fetchMessageHistory)' })]);
    expect(stream?.daily.reduce((sum, day) => sum + day.recovered, 0)).toBe(2);
    expect(stream?.reconciliation).toMatch(/on-demand history fetch from the phone/);
  }, 60_000);

  it('a phone that does not answer: exit 1 within the timeout, "not recovered" in the report and in coverage', async () => {
    const dir = await workspace();
    const driver = await driverWithOutage();
    driver.phone.online = false;
    const started = performance.now();
    const result = await run(dir, driver, ['--timeout', '1s']);
    expect(performance.now() - started).toBeLessThan(30_000);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^reconciled whatsapp:desk-42: 1 pending gap, 0 of 2 chats answered by the phone\n {2}recovered: 0 of 1 gap; 0 missing of 0 messages returned recorded \(\d+ records written in all\)\n {2}not recovered: gap offline-count:\S+ \(phone-did-not-answer\); it stays pending: run again when the phone is online\n$/);
    const { stream } = await coverageGaps(dir);
    expect(stream?.gaps).toEqual([expect.objectContaining({ detail: 'offline-count-mismatch', recovered: 'not recovered: phone-did-not-answer (attempt 1)' })]);
  }, 60_000);
});
