/**
 * An RSMF slice holds up to 10,000 events; building it must not hold them. The export runs in a
 * real process whose V8 heap is capped at 64 MiB, on a conversation of 10,000 messages of 4 KiB
 * (40 MiB of text, about 100 MiB as a held slice with its manifest and transcript): it must
 * finish, and the manifest must be exactly what `JSON.stringify(manifest, null, 2)` gives.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { unzipSync } from 'fflate';
import PostalMime from 'postal-mime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaptureInput } from '@offchannel/core';
import { type RecordedArchive, recordArchive } from '../__fixtures__/record-archive.ts';
import { bob, client } from '../__fixtures__/trade-archive.ts';
import { errorsOf, rsmfValidator } from '../__fixtures__/rsmf-validator.ts';

const CHILD = path.join(import.meta.dirname, '..', '__fixtures__', 'export-child.ts');
const EVENTS = 10_000;
let archive: RecordedArchive;
let scratch: string;

beforeAll(async () => {
  archive = await recordArchive('whatsapp', async (writer) => {
    const text = (n: number): string => `${String(n).padStart(5, '0')} ${'indicative terms, not an offer; '.repeat(128)}`;
    for (let at = 0; at < EVENTS; at += 500) {
      const batch: CaptureInput[] = Array.from({ length: 500 }, (_, k) => ({ kind: 'message', key: `message:big${at + k}`, sentAt: new Date(Date.UTC(2026, 10, 20, 9) + (at + k) * 1000).toISOString(), conversation: client, sender: bob, direction: 'inbound', native: { id: `big${at + k}`, chat: client.id }, text: text(at + k) }));
      await Promise.all(batch.map((input) => writer.capture(input)));
    }
  });
  scratch = await mkdtemp(path.join(os.tmpdir(), 'offchannel-rsmf-memory-'));
}, 120_000);
afterAll(async () => {
  if (archive) await rm(archive.dir, { recursive: true, force: true });
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('RSMF memory', () => {
  it('writes a 10,000-event slice of 40 MiB of text with the heap capped at 64 MiB', { timeout: 300_000 }, async () => {
    const out = path.join(scratch, 'out');
    const child = spawnSync(process.execPath, ['--max-old-space-size=64', '--conditions=@offchannel/source', '--experimental-strip-types', '--no-warnings', CHILD, archive.dir, out, 'rsmf'], { encoding: 'utf8', timeout: 240_000 });
    expect(child.stderr.slice(-2000)).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout).toContain('DONE');
    const [file] = await readdir(path.join(out, 'rsmf'));
    const email = await PostalMime.parse(await readFile(path.join(out, 'rsmf', file ?? '')));
    const zip = unzipSync(new Uint8Array(email.attachments.find((part) => part.filename === 'rsmf.zip')?.content as ArrayBuffer));
    const text = Buffer.from(zip['rsmf_manifest.json'] ?? []).toString('utf8');
    const manifest = JSON.parse(text) as { events: { body: string }[] };
    expect(text).toBe(`${JSON.stringify(manifest, null, 2)}\n`);
    expect(manifest.events).toHaveLength(EVENTS);
    expect(manifest.events[EVENTS - 1]?.body.startsWith(String(EVENTS - 1).padStart(5, '0'))).toBe(true);
    const validate = rsmfValidator('strict');
    expect(validate(manifest), errorsOf(validate).join('\n')).toBe(true);
    expect(email.text?.split('\n').filter((line) => line.startsWith('[2026-')).length).toBe(EVENTS);
  });
});
