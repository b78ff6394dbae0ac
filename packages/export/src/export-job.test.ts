import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openFsSink } from '@offchannel/sink-fs';
import { exportArchive } from './export-archive.ts';
import { recordArchive } from './__fixtures__/record-archive.ts';
import { bob } from './__fixtures__/trade-archive.ts';

const made: string[] = [];
afterAll(async () => {
  for (const dir of made) await rm(dir, { recursive: true, force: true });
});

describe('conversation file names', () => {
  it('use the full SHA-256 of the conversation: two conversations whose names and 32-bit prefixes agree get two files', async () => {
    // Found by search: the first 8 hex digits of these keys' SHA-256 are equal.
    const ids = ['desk-7540', 'desk-43068'];
    const prefix = (id: string): string => createHash('sha256').update(`whatsapp:alice|${id}`).digest('hex').slice(0, 8);
    expect(prefix(ids[0] ?? '')).toBe(prefix(ids[1] ?? ''));
    const archive = await recordArchive('whatsapp', async (writer) => {
      for (const [n, id] of ids.entries()) {
        await writer.capture({ kind: 'message', key: `message:${id}`, sentAt: `2026-11-20T09:0${n}:00.000Z`, conversation: { id, type: 'group', title: 'Rates desk' }, sender: bob, direction: 'inbound', native: { id: `m-${id}`, chat: id }, text: `Only in ${id}` });
      }
    });
    made.push(archive.dir);
    const out = path.join(await mkdtemp(path.join(os.tmpdir(), 'offchannel-names-')), 'out');
    made.push(path.dirname(out));
    const sink = await openFsSink({ dir: archive.dir, readOnly: true });
    try {
      await exportArchive({ sink, out, formats: ['html', 'rsmf', 'eml'], verifiers: [archive.key.verifier] });
    } finally {
      await sink.close();
    }
    const pages = (await readdir(path.join(out, 'html'))).filter((name) => name.endsWith('.html'));
    expect(pages).toHaveLength(2);
    for (const page of pages) expect(page).toMatch(/--Rates_desk--[0-9a-f]{64}\.html$/);
    const texts = await Promise.all(pages.map((page) => readFile(path.join(out, 'html', page), 'utf8')));
    for (const id of ids) expect(texts.filter((text) => text.includes(`Only in ${id}`))).toHaveLength(1);
    expect(await readdir(path.join(out, 'rsmf'))).toHaveLength(2);
    expect(await readdir(path.join(out, 'eml'))).toHaveLength(2);
    execFileSync('sha256sum', ['-c', '--strict', '--quiet', 'SHA256SUMS'], { cwd: out });
  });
});
