/**
 * Attachments are the sender's bytes under the sender's name and MIME type. Opening one from an
 * export — clicking its link in the HTML transcript, or opening the file itself as a reviewer
 * would from the folder — must never run the sender's script: every exported file is named
 * `<sha256>.<inert extension>`, whatever the name and type claimed. Checked in headless Chromium
 * for HTML, and on the file names and types of EML parts and RSMF zip entries.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { unzipSync } from 'fflate';
import { type Browser, type Page, chromium } from 'playwright-core';
import PostalMime from 'postal-mime';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { openFsSink } from '@offchannel/sink-fs';
import { exportArchive } from './export-archive.ts';
import { type RecordedArchive, recordArchive } from './__fixtures__/record-archive.ts';
import { bob, client } from './__fixtures__/trade-archive.ts';

const CHROMIUM = inject('chromium');
const SCRIPT = "<script>document.title='PWNED';console.log('PWNED');new Image().src='http://127.0.0.1:9/pwned'</script>";
const html = new TextEncoder().encode(`<!DOCTYPE html><html><body><h1>Invoice</h1>${SCRIPT}</body></html>`);
const svg = new TextEncoder().encode(`<svg xmlns="http://www.w3.org/2000/svg" onload="document.title='PWNED';console.log('PWNED')"><script>console.log('PWNED')</script><rect width="9" height="9"/></svg>`);
const xhtml = new TextEncoder().encode(`<html xmlns="http://www.w3.org/1999/xhtml"><body>${SCRIPT}</body></html>`);
const RTL = '\u202e';

/** Hostile attachments: active types, lying types, crafted names. */
const HOSTILE = [
  { name: 'invoice.html', mime: 'text/html', bytes: html },
  { name: 'chart.svg', mime: 'image/svg+xml', bytes: svg },
  { name: 'page.xhtml', mime: 'application/xhtml+xml; charset=utf-8', bytes: xhtml },
  { name: `invoice${RTL}lmth.pdf`, mime: 'TEXT/HTML; charset=utf-8', bytes: html },
  { name: 'photo.png', mime: 'image/png', bytes: html }, // the type lies: the bytes are HTML
  { name: 'notes.txt', mime: 'text/plain', bytes: html },
  { name: '../../../../tmp/escape.html', mime: 'text/html', bytes: html }, // repo-paths: hostile input, never read
  { name: `${'a'.repeat(1000)}.html`, mime: 'application/octet-stream', bytes: html },
  { name: 'run.js', mime: 'application/javascript', bytes: new TextEncoder().encode("console.log('PWNED')") },
  { name: 'no-type', mime: 'x', bytes: html },
] as const;

const SAFE_NAME = /^[0-9a-f]{64}\.(pdf|jpg|png|gif|webp|heic|heif|mp4|mov|webm|3gp|ogg|mp3|m4a|aac|amr|caf|txt|vcf|docx|xlsx|pptx|bin)$/;

let archive: RecordedArchive;
let out: string;
let browser: Browser;

beforeAll(async () => {
  archive = await recordArchive('whatsapp', async (writer) => {
    await writer.capture({
      kind: 'message',
      key: 'message:h1',
      sentAt: '2026-11-20T09:00:00.000Z',
      conversation: client,
      sender: bob,
      direction: 'inbound',
      native: { id: 'h1', chat: client.id },
      text: 'Invoice and chart attached',
      attachments: HOSTILE.map((item) => ({ bytes: item.bytes, mime: item.mime, name: item.name })),
    });
  });
  out = path.join(await mkdtemp(path.join(os.tmpdir(), 'offchannel-hostile-')), 'export');
  const sink = await openFsSink({ dir: archive.dir, readOnly: true });
  try {
    await exportArchive({ sink, out, formats: ['html', 'eml', 'rsmf'], verifiers: [archive.key.verifier], generator: 'offchannel-test' });
  } finally {
    await sink.close();
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  if (archive) await rm(archive.dir, { recursive: true, force: true });
  if (out) await rm(path.dirname(out), { recursive: true, force: true });
});

/** Watches a tab for any sign that script ran: a console line, a network request, a changed title. */
function watch(tab: Page): { readonly signs: string[] } {
  const signs: string[] = [];
  tab.on('console', (message) => signs.push(`console: ${message.text()}`));
  tab.on('request', (request) => {
    if (!request.url().startsWith('file:') && !request.url().startsWith('data:')) signs.push(`request: ${request.url()}`);
  });
  return { signs };
}

/** Opens a file as a reviewer would (typed into the address bar / double-clicked): rendered, or downloaded. */
async function open(file: string): Promise<{ readonly signs: readonly string[]; readonly title: string | undefined }> {
  const context = await browser.newContext({ acceptDownloads: true });
  const tab = await context.newPage();
  const { signs } = watch(tab);
  try {
    const opened = await tab.goto(pathToFileURL(file).href, { timeout: 30_000 }).then(
      () => true,
      (error: unknown) => {
        if (/Download is starting/.test(String(error))) return false; // not rendered at all
        throw error;
      },
    );
    return { signs, title: opened ? await tab.title() : undefined };
  } finally {
    await context.close();
  }
}

describe('hostile attachments in an export', () => {
  it('HTML: every linked file is named by its SHA-256 with an inert extension; opening or clicking it runs no script', { timeout: 120_000 }, async () => {
    const files = await readdir(path.join(out, 'html', 'attachments'));
    // One file per distinct bytes and inert type: the HTML bytes as .bin (five of them), .txt and
    // (its type claimed PNG) embedded as an image, not written; the SVG, XHTML and script as .bin.
    expect(files).toHaveLength(5);
    for (const name of files) expect(name).toMatch(SAFE_NAME);
    expect(files.filter((name) => name.endsWith('.html') || name.endsWith('.svg') || name.endsWith('.xhtml') || name.endsWith('.js'))).toEqual([]);
    for (const name of files) {
      const opened = await open(path.join(out, 'html', 'attachments', name));
      expect(opened.signs, name).toEqual([]);
      expect(opened.title, name).not.toBe('PWNED');
    }

    const [page] = (await readdir(path.join(out, 'html'))).filter((name) => name.endsWith('.html'));
    const pageUrl = pathToFileURL(path.join(out, 'html', page ?? '')).href;
    const context = await browser.newContext({ acceptDownloads: true });
    try {
      const transcript = await context.newPage();
      const { signs } = watch(transcript);
      await transcript.goto(pageUrl);
      const count = await transcript.locator('.attachment a').count();
      expect(count).toBe(HOSTILE.length - 1); // photo.png is shown inline (as a broken image: its bytes are HTML)
      // The original names are shown as text, with the RTL override made visible.
      const names = await transcript.locator('.attachment .name').allInnerTexts();
      expect(names).toContain('invoice[U+202E]lmth.pdf');
      expect(names).toContain('../../../../tmp/escape.html'); // repo-paths: hostile input, never read
      expect(names.find((name) => name.startsWith('aaaa'))).toMatch(/^a{200}… \(1005 characters\)$/);
      expect(names.join('')).not.toContain(RTL);

      // Click every link, each in a fresh tab: it downloads the file or opens it in the tab.
      const outcomes: string[] = [];
      for (let index = 0; index < count; index++) {
        const tab = await context.newPage();
        const seen = watch(tab);
        await tab.goto(pageUrl);
        // A navigation that turns into a download rejects its waiter: only the first success counts.
        const never = new Promise<string>(() => undefined);
        const downloaded = tab.waitForEvent('download', { timeout: 30_000 }).then(
          () => 'download',
          () => never,
        );
        const navigated = tab.waitForURL((url) => url.href !== pageUrl, { timeout: 30_000, waitUntil: 'load' }).then(
          () => 'opened',
          () => never,
        );
        const nothing = new Promise<string>((resolve) => {
          setTimeout(() => {
            resolve('none');
          }, 30_000).unref();
        });
        await tab.locator('.attachment a').nth(index).click();
        const outcome = await Promise.race([downloaded, navigated, nothing]);
        outcomes.push(outcome);
        if (outcome === 'opened') expect(await tab.title()).not.toBe('PWNED');
        expect(seen.signs).toEqual([]);
        await tab.close();
      }
      expect(outcomes.filter((outcome) => outcome === 'none')).toEqual([]);
      expect(signs).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('EML and RSMF: attachment parts and zip entries use the same safe names and an inert or opaque type', async () => {
    const emlDir = path.join(out, 'eml');
    const [conversation] = await readdir(emlDir);
    const [message] = (await readdir(path.join(emlDir, conversation ?? ''))).filter((name) => name.endsWith('.eml'));
    const email = await PostalMime.parse(await readFile(path.join(emlDir, conversation ?? '', message ?? '')));
    expect(email.attachments).toHaveLength(HOSTILE.length);
    for (const part of email.attachments) {
      expect(part.filename).toMatch(SAFE_NAME);
      expect(['application/octet-stream', 'image/png', 'text/plain']).toContain(part.mimeType);
    }
    expect(email.attachments.map((part) => part.mimeType)).not.toContain('text/html');

    const [rsmf] = await readdir(path.join(out, 'rsmf'));
    const mail = await PostalMime.parse(await readFile(path.join(out, 'rsmf', rsmf ?? '')));
    const zip = unzipSync(new Uint8Array(mail.attachments.find((part) => part.filename === 'rsmf.zip')?.content as ArrayBuffer));
    const entries = Object.keys(zip).filter((name) => name !== 'rsmf_manifest.json');
    expect(entries).toHaveLength(6);
    for (const name of entries) expect(name).toMatch(SAFE_NAME);
    const manifest = JSON.parse(Buffer.from(zip['rsmf_manifest.json'] ?? []).toString('utf8')) as { events: { attachments?: { id: string; display: string }[] }[] };
    const displays = manifest.events.flatMap((event) => event.attachments ?? []).map((attachment) => attachment.display);
    expect(displays).toContain('invoice[U+202E]lmth.pdf');
    expect(displays.join('')).not.toContain(RTL);
  });
});
