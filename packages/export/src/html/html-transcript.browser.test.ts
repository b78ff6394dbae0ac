/**
 * The HTML transcript as a supervisor sees it: opened in headless Chromium (Debian's
 * `chromium`, driven by playwright-core), with DOM assertions on what must be visible and a
 * screenshot saved under `test-artifacts/` for people to look at.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { openFsSink } from '@offchannel/sink-fs';
import { exportArchive } from '../export-archive.ts';
import { type TradeArchive, createTradeArchive } from '../__fixtures__/trade-archive.ts';

const CHROMIUM = inject('chromium');
/** What the page functions use of the browser's globals (the DOM library is not in our tsconfig). */
interface Window {
  getComputedStyle(node: unknown): { readonly textDecorationLine: string };
}

const ARTIFACTS = path.resolve(import.meta.dirname, '../../test-artifacts');

let archive: TradeArchive;
let out: string;
let browser: Browser;

beforeAll(async () => {
  archive = await createTradeArchive();
  out = path.join(await mkdtemp(path.join(os.tmpdir(), 'offchannel-html-')), 'export');
  const sink = await openFsSink({ dir: archive.dir, readOnly: true });
  try {
    await exportArchive({ sink, out, formats: ['html'], verifiers: [archive.key.verifier], generator: 'offchannel-test' });
  } finally {
    await sink.close();
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await rm(archive.dir, { recursive: true, force: true });
  await rm(path.dirname(out), { recursive: true, force: true });
});

async function page(match: string) {
  const name = (await readdir(path.join(out, 'html'))).find((file) => file.endsWith('.html') && file.includes(match));
  if (!name) throw new Error(`no page matching ${match}`);
  const tab = await browser.newPage({ viewport: { width: 900, height: 1400 } });
  const blocked: string[] = [];
  tab.on('request', (request) => {
    if (!request.url().startsWith('file:') && !request.url().startsWith('data:')) blocked.push(request.url());
  });
  await tab.goto(pathToFileURL(path.join(out, 'html', name)).href);
  return { tab, blocked };
}

describe('HTML transcript in Chromium', () => {
  it('shows edits with history, deleted originals struck through, reactions, attachments and verification', async () => {
    const { tab, blocked } = await page('Bob');
    try {
      await expect(tab.title()).resolves.toBe('Bob Chén');
      const verification = tab.locator('.verification');
      await expect(verification.getAttribute('data-verified')).resolves.toBe('true');
      expect(await verification.innerText()).toMatch(/Signed checkpoint: size 21, root [0-9a-f]{64}, signed by export-test\.offchannel\.example/);

      const edited = tab.locator('.event', { hasText: 'Final offer' });
      expect(await edited.locator('.label.edited-label').innerText()).toMatch(/edited 2×/i);
      expect(await edited.locator('.edit-history .old').allInnerTexts()).toEqual(['Could you do 4.15% fixed?', 'Could you do 4.10% fixed?']);
      expect(await edited.locator('.edit-history').isVisible()).toBe(true);

      const deleted = tab.locator('.event.deleted');
      expect(await deleted.locator('.text').innerText()).toBe('Call me on my personal phone instead.');
      expect(await deleted.locator('.text').evaluate((node: unknown) => (globalThis as unknown as Window).getComputedStyle(node).textDecorationLine)).toBe('line-through');
      expect(await deleted.locator('.deleted-label').innerText()).toMatch(/deleted for everyone/i);

      const reactions = tab.locator('.reaction');
      expect(await reactions.allInnerTexts()).toEqual(['👍 Bob Chén', '👍 Bob Chén (removed)', '👍 Bob Chén']);

      const image = tab.locator('.attachment img');
      expect(await image.evaluate((node: unknown) => (node as { naturalWidth: number }).naturalWidth)).toBe(2);
      expect(await tab.locator('.attachment', { hasText: 'term sheet (5y).pdf' }).isVisible()).toBe(true);

      // The hostile message is text, not markup: nothing ran, nothing was injected.
      expect(await tab.locator('.event', { hasText: '<script>' }).count()).toBe(1);
      await expect(tab.evaluate<string>('document.title')).resolves.toBe('Bob Chén');
      expect(await tab.locator('main script, main img[src="x"]').count()).toBe(0);
      expect(blocked).toEqual([]);

      // A very long text is folded, and unfolds without any script.
      const long = tab.locator('details.long-text');
      expect(await long.locator('summary').innerText()).toMatch(/show all 38,003 characters/i);
      await long.locator('summary').click();
      expect((await long.locator('div.text').innerText()).endsWith('END')).toBe(true);
      await long.locator('summary').evaluate((node: unknown) => {
        (node as { parentElement: { removeAttribute(name: string): void } }).parentElement.removeAttribute('open');
      });

      await mkdir(ARTIFACTS, { recursive: true });
      await tab.screenshot({ path: path.join(ARTIFACTS, 'html-transcript.png'), fullPage: true });
      expect(existsSync(path.join(ARTIFACTS, 'html-transcript.png'))).toBe(true);
    } finally {
      await tab.close();
    }
  });

  it('shows membership changes, undecryptable messages and orphan edits as notices', async () => {
    const { tab } = await page('Rates');
    try {
      const notices = await tab.locator('.notice').allInnerTexts();
      expect(notices.some((text) => text.includes('Dan Okafor added Erin Walsh, Alice Moreau'))).toBe(true);
      expect(notices.some((text) => text.includes('could not be decrypted (no-session)'))).toBe(true);
      expect(notices.some((text) => text.includes('edited a message that is not in this archive') && text.includes('Corrected: 4.07'))).toBe(true);
      expect(await tab.locator('.label.forwarded-label').count()).toBe(1);
    } finally {
      await tab.close();
    }
  });
});
