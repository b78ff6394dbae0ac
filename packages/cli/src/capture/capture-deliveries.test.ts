/**
 * The capture config's `delivery` section: `offchannel capture` feeds SMTP journaling targets
 * while it captures (a real Postfix on loopback), and a target that fails (here: a server
 * without STARTTLS) stops alone — capture and the other target carry on.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEd25519NoteKey, generateStateKey } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { checkDelivery } from '@offchannel/delivery';
import { openFsSink } from '@offchannel/sink-fs';
import { JOURNAL, type PostfixInstance, startPostfix } from '../../../delivery/src/__fixtures__/postfix-instance.ts';
import { demoExchange } from '../demo/demo-exchange.ts';
import { parseCaptureConfig } from './capture-config.ts';
import { CaptureRunner } from './capture-runner.ts';

let tls: PostfixInstance;
let plain: PostfixInstance;
const dirs: string[] = [];
beforeAll(async () => {
  execFileSync('bash', [path.resolve(import.meta.dirname, '../../../../scripts/postfix/ensure.sh')], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000 });
  [tls, plain] = await Promise.all([startPostfix('starttls'), startPostfix('plain')]);
}, 180_000);
afterAll(async () => {
  await Promise.all([tls?.stop(), plain?.stop()]);
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
}, 60_000);

async function until(check: () => Promise<boolean> | boolean, ms = 45_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('capture with delivery targets', () => {
  it('delivers what capture records, and a failing target stops alone', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-capture-delivery-'));
    dirs.push(dir);
    const key = generateEd25519NoteKey('capture-delivery.offchannel.example');
    await writeFile(path.join(dir, 'signing.key'), `${key.signerKeyText()}\n`, { mode: 0o600 });
    await writeFile(path.join(dir, 'state.key'), `${generateStateKey()}\n`, { mode: 0o600 });
    await writeFile(path.join(dir, 'ca.pem'), tls.ca ?? '');
    const file = path.join(dir, 'offchannel.config.json');
    const config = parseCaptureConfig(
      {
        archive: { dir: './archive' },
        state: { dir: './state', keyFile: './state.key' },
        signing: { keyFile: './signing.key', everyRecords: 10 },
        connectors: [{ channel: 'demo', account: 'alice@firm.example', intervalMs: 0 }],
        delivery: [
          { name: 'journal', smtp: tls.url.replace('127.0.0.1', 'localhost'), to: JOURNAL, from: 'offchannel@firm.example', caFile: './ca.pem', pollMs: 200, stateDir: './delivery' },
          { name: 'no-tls', smtp: plain.url, to: JOURNAL, from: 'offchannel@firm.example', pollMs: 200, stateDir: './delivery' },
        ],
      },
      file,
    );
    const logger = createRecordingLogger();
    const runner = new CaptureRunner(config, logger);
    let deliveredBeforeStop: number | undefined;
    await runner.start();
    try {
      await until(() => runner.snapshot().connectors[0]?.status.detail === 'all demo events replayed; idle');
      const captured = runner.snapshot().connectors[0]?.status.captured ?? 0;
      expect(captured).toBeGreaterThan(10);
      await until(async () => {
        const journal = runner.snapshot().deliveries?.find((item) => item.name === 'journal');
        return journal?.status?.backlog === 0 && (journal.status.streams[0]?.delivered ?? 0) > 0 && (await tls.messages()).length > 0;
      });
      const snapshot = runner.snapshot().deliveries ?? [];
      deliveredBeforeStop = snapshot.find((item) => item.name === 'journal')?.status?.streams[0]?.delivered ?? 0;
      expect(snapshot.find((item) => item.name === 'no-tls')).toMatchObject({ state: 'failed', error: 'DELIVERY_TLS' });
      expect(snapshot.find((item) => item.name === 'journal')).toMatchObject({ state: 'running' });
    } finally {
      await runner.stop();
    }
    expect(runner.snapshot().connectors).toEqual([]);
    const sink = await openFsSink({ dir: path.join(dir, 'archive'), readOnly: true });
    try {
      const records = (await sink.head('demo:alice@firm.example')).seq;
      const check = await checkDelivery({ archive: sink, target: 'journal', verifiers: [key.verifier] });
      // Delivery stops first at shutdown: what capture writes after it (each account's
      // capture-stopped record) waits for the next run; everything before was delivered, once.
      expect(check.receipts).toBeGreaterThanOrEqual(deliveredBeforeStop ?? 1);
      expect(check.receipts).toBeGreaterThan(0);
      expect(check.unknownRecords).toEqual([]);
      for (const stream of check.streams) {
        expect(stream.hashMismatches).toEqual([]);
        expect(stream.undelivered.filter((record) => record.hasEmail && record.kind !== "system"), JSON.stringify(check)).toEqual([]);
      }
      expect(records).toBeGreaterThan(check.receipts);
      await tls.settle(check.receipts);
      expect(await plain.messages()).toHaveLength(0);
    } finally {
      await sink.close();
    }
    expect(logger.lines.some((line) => line.level === 'error' && line.message?.startsWith('delivery target stopped; capture continues'))).toBe(true);
    const logged = JSON.stringify(logger.lines);
    for (const event of demoExchange()) if (event.text) expect(logged).not.toContain(event.text);
  }, 90_000);

  it('keeps secrets out of the config and needs one name per target', () => {
    const base = { state: { dir: './state', unencrypted: true }, connectors: [{ channel: 'demo', account: 'alice' }] };
    const target = { smtp: 'smtp://127.0.0.1:2525', to: JOURNAL, from: 'offchannel@firm.example' };
    expect(() => parseCaptureConfig({ ...base, delivery: [{ ...target, user: 'svc', password: 'hunter2' }] }, '/etc/offchannel/config.json')).toThrow(/config\.delivery\[0\]\.password is not allowed/);
    expect(() => parseCaptureConfig({ ...base, delivery: [target, target] }, '/etc/offchannel/config.json')).toThrow(/repeats "journal"/);
    expect(() => parseCaptureConfig({ ...base, delivery: [{ ...target, passwordFile: './p' }] }, '/etc/offchannel/config.json')).toThrow(/needs "user"/);
    const parsed = parseCaptureConfig({ ...base, delivery: [{ ...target, user: 'svc', passwordFile: './smtp.pass' }] }, '/etc/offchannel/config.json');
    expect(parsed.delivery[0]).toMatchObject({ name: 'journal', mode: 'record', passwordFile: '/etc/offchannel/smtp.pass', stateDir: '/etc/offchannel/delivery-state', pollMs: 5000 });
  });
});
