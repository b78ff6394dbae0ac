/**
 * The coverage page as a supervisor sees it: written by `offchannel coverage --html` from a
 * real signed archive, opened in headless Chromium (Debian's `chromium`, driven by
 * playwright-core), with DOM assertions and a screenshot under `test-artifacts/`.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type CaptureInput, Recorder, generateEd25519NoteKey } from '@offchannel/core';
import { openFsSink } from '@offchannel/sink-fs';
import { runCli } from '../testing/run-cli.ts';

declare module 'vitest' {
  // Provided by @offchannel/export's Chromium global setup (packages/cli/vitest.config.ts).
  export interface ProvidedContext {
    chromium: string;
  }
}

const CHROMIUM = inject('chromium');
const ARTIFACTS = path.resolve(import.meta.dirname, '../../test-artifacts');
const T0 = Date.UTC(2026, 10, 2, 0, 0, 0);
const HOUR = 3_600_000;
const HOSTILE = '<script>document.title="owned"</script><b>bold</b>';

/** What the page functions use of the browser's globals (the DOM library is not in our tsconfig). */
interface Window {
  getComputedStyle(node: unknown): { readonly backgroundColor: string };
}

let dir: string;
let page: string;
let browser: Browser;

/** Three days, three custodians: one killed for 5 hours, one logged out a day and disconnected, one covered with a platform gap. */
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-coverage-page-'));
  const archive = path.join(dir, 'archive');
  const key = generateEd25519NoteKey('coverage-page.offchannel.example');
  await writeFile(path.join(dir, 'key.pub'), `${key.verifierKey}\n`, { mode: 0o600 });
  let now = T0;
  const sink = await openFsSink({ dir: archive });
  const recorder = new Recorder({ sink, clock: () => new Date(now), checkpoints: { signer: key, everyRecords: 1 } });
  const source = { package: 'offchannel', version: '0.0.0' };
  let n = 0;
  const write = async (hours: number, channel: string, account: string, input: CaptureInput) => {
    now = T0 + hours * HOUR;
    await recorder.writer({ channel, account, source }).capture(input);
  };
  const state = (event: string, run: string, fields: Record<string, string> = {}): CaptureInput => ({ kind: 'system', key: `capture-state:${run}:${++n}`, system: { event, fields: { ...fields, run } } });
  const message = (id: string, hours: number): CaptureInput => ({ kind: 'message', key: `message:${id}`, conversation: { id: 'dm:c', type: 'direct' }, sender: { id: 'c' }, direction: 'inbound', native: { id }, text: 'ok', sentAt: new Date(T0 + hours * HOUR).toISOString() });
  for (const [channel, account] of [['whatsapp', 'alice@firm.example'], ['signal', 'alice@firm.example'], ['telegram', 'bob@firm.example'], ['imessage', 'carol@firm.example']] as const) await write(0, channel, account, state('capture-started', 'a', { attempt: '0' }));
  for (let hour = 1; hour < 72; hour += 3) {
    // The first process dies after 19 h; the second starts at 20 h.
    if (hour === 22) await write(20, 'whatsapp', 'alice@firm.example', state('capture-started', 'b', { attempt: '0' }));
    await write(hour, 'whatsapp', 'alice@firm.example', message(`w${hour}`, hour));
  }
  await write(30, 'signal', 'alice@firm.example', { kind: 'system', system: { event: 'connector-disconnected', fields: { reason: HOSTILE } } });
  await write(31, 'signal', 'alice@firm.example', { kind: 'system', system: { event: 'connector-connected' } });
  await write(24, 'telegram', 'bob@firm.example', state('capture-logged-out', 'a', { code: 'CONNECTOR_LOGGED_OUT' }));
  await write(48, 'telegram', 'bob@firm.example', state('capture-started', 'a', { attempt: '0' }));
  await write(50, 'imessage', 'carol@firm.example', { kind: 'gap', key: 'gap:1', gap: { reason: 'chat-db-rows-missing', from: new Date(T0 + 40 * HOUR).toISOString(), to: new Date(T0 + 44 * HOUR).toISOString(), missing: 12 }, meta: { recovered: 'all' } });
  await recorder.close();
  await sink.close();
  const out = path.join(dir, 'html');
  const { code } = await runCli(['coverage', archive, '--from', '2026-11-02', '--to', '2026-11-05', '--key', path.join(dir, 'key.pub'), '--html', out]);
  expect(code).toBe(1);
  page = path.join(out, 'coverage.html');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('coverage page in Chromium', () => {
  it('shows a timeline per custodian with each gap in its cause, tables of gaps and daily counts, and the evidence verified', async () => {
    const tab = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    tab.setDefaultTimeout(10_000);
    const requests: string[] = [];
    tab.on('request', (request) => {
      if (!request.url().startsWith('file:')) requests.push(request.url());
    });
    try {
      await tab.goto(pathToFileURL(page).href);
      await expect(tab.title()).resolves.toBe('Capture coverage 2026-11-02 – 2026-11-05');
      expect(await tab.locator('.evidence').getAttribute('data-verified')).toBe('true');
      expect(await tab.locator('.evidence').innerText()).toContain('verified with coverage-page.offchannel.example');
      expect(await tab.locator('.verdict').innerText()).toBe('4 of 4 streams have gaps in the period.');
      // The page's own stylesheet applies under its CSP (allowed by hash): the verdict is tinted.
      expect(await tab.locator('.verdict').evaluate((node: unknown) => (globalThis as unknown as Window).getComputedStyle(node).backgroundColor)).toBe('rgb(255, 235, 238)');

      expect(await tab.locator('section.custodian').evaluateAll((nodes: unknown[]) => nodes.map((node) => (node as { dataset: { account: string } }).dataset.account))).toEqual(['alice@firm.example', 'bob@firm.example', 'carol@firm.example']);
      const alice = tab.locator('section.custodian[data-account="alice@firm.example"]');
      expect(await alice.locator('svg.timeline g.row').count()).toBe(2);
      const down = alice.locator('rect.gap[data-cause="process down"]');
      expect(await down.getAttribute('data-from')).toBe('2026-11-02T19:00:00.000Z');
      expect(await down.getAttribute('data-to')).toBe('2026-11-02T20:00:00.000Z');
      const bar = await alice.locator('g.row[data-stream="whatsapp:alice@firm.example"] rect.none').boundingBox();
      const gapBox = await down.boundingBox();
      // One hour of 72, drawn where it happened (19 h in): the timeline is to scale.
      expect(Math.abs((gapBox?.x ?? 0) - (bar?.x ?? 0) - ((bar?.width ?? 0) * 19) / 72)).toBeLessThan(2);
      expect(Math.abs((gapBox?.width ?? 0) - (bar?.width ?? 0) / 72)).toBeLessThan(2);
      expect(await tab.locator('section.custodian[data-account="bob@firm.example"] rect.gap').getAttribute('data-cause')).toBe('logged out');
      expect(await alice.locator('.reconciliation[data-channel="signal"]').innerText()).toBe('signal reconciliation: not possible: Signal gives a linked device no message history; a gap cannot be recovered by offchannel');
      expect(await tab.locator('section.custodian[data-account="carol@firm.example"] tr.gap').innerText()).toMatch(/platform-reported loss\s+chat-db-rows-missing; 12 missing; recovered: all/);

      // Hostile text from the archive is shown as text, never run or rendered as markup.
      expect(await alice.locator('tr.gap[data-cause="disconnected"]').innerText()).toContain(HOSTILE);
      expect(await tab.locator('script').count()).toBe(0);
      expect(await tab.locator('b').count()).toBe(0);
      expect(requests).toEqual([]);

      const daily = await alice.locator('table.daily tbody tr').allInnerTexts();
      expect(daily.map((row) => row.split('\t').slice(0, 2))).toEqual([
        ['2026-11-02', '8'],
        ['2026-11-03', '8'],
        ['2026-11-04', '8'],
      ]);
      await mkdir(ARTIFACTS, { recursive: true });
      await tab.screenshot({ path: path.join(ARTIFACTS, 'coverage-page.png'), fullPage: true });
    } finally {
      await tab.close();
    }
  }, 60_000);
});
