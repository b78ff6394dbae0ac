import { createHash } from 'node:crypto';
import { readFile, readdir, rm, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openFsSink } from '@offchannel/sink-fs';
import { type ExportOptions, exportArchive } from './export-archive.ts';
import { BUSY_MESSAGES, type GoldenArchive, createGoldenArchive } from './__fixtures__/golden-archive.ts';

// Recording and exporting 10,000+ records: ample time on a busy machine.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

/**
 * The expected content of every exported file, as produced by the export before its speed-ups
 * (`<sha256>  <path>`). Files are compared byte for byte, except where the bytes come from
 * zlib's deflate (RSMF zips), whose output may differ between zlib builds: there the zip's
 * entries are compared by name, size, CRC-32 and SHA-256 of the inflated content, and every
 * other byte of the `.rsmf` file (headers, transcript) as written.
 * Regenerate (only for an intended change of output): OFFCHANNEL_UPDATE_GOLDEN=1.
 */
const GOLDEN = path.join(import.meta.dirname, '__fixtures__', 'golden-export.sha256');

let archive: GoldenArchive;
let scratch: string;

beforeAll(async () => {
  archive = await createGoldenArchive();
  scratch = await mkdtemp(path.join(os.tmpdir(), 'offchannel-export-golden-out-'));
});
afterAll(async () => {
  await rm(archive.dir, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

async function run(name: string, options: Omit<ExportOptions, 'sink' | 'out'>): Promise<string> {
  const out = path.join(scratch, name);
  const sink = await openFsSink({ dir: archive.dir, readOnly: true });
  try {
    await exportArchive({ verifiers: [archive.key.verifier], clock: () => new Date('2026-12-01T00:00:00Z'), generator: 'offchannel golden', ...options, sink, out });
  } finally {
    await sink.close();
  }
  return out;
}

const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

/** The zip's entries as `name size crc32 sha256-of-content` lines (a minimal reader: stored and deflated entries). */
function zipEntries(zip: Buffer): string {
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = zip.readUInt16LE(end + 10);
  let at = zip.readUInt32LE(end + 16);
  const lines: string[] = [];
  for (let entry = 0; entry < count; entry++) {
    const method = zip.readUInt16LE(at + 10);
    const crc = zip.readUInt32LE(at + 16);
    const compressed = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const extra = zip.readUInt16LE(at + 30);
    const comment = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.subarray(at + 46, at + 46 + nameLength).toString('utf8');
    const dataAt = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const data = zip.subarray(dataAt, dataAt + compressed);
    const content = method === 8 ? inflateRawSync(data) : data;
    expect(content.byteLength).toBe(size);
    lines.push(`${name} ${size} ${crc.toString(16)} ${sha256(content)}`);
    at += 46 + nameLength + extra + comment;
  }
  return lines.join('\n');
}

/** An `.rsmf` file with its deflate-dependent bytes (the zip, and the boundary hashed from it) replaced by the zip's entries. */
function normalizedRsmf(bytes: Buffer): string {
  const text = bytes.toString('latin1');
  const boundary = /boundary="(=_oc[0-9a-f]+)"/.exec(text)?.[1];
  expect(boundary).toBeDefined();
  const parts = text.split(`--${boundary as string}`);
  expect(parts).toHaveLength(4);
  const [zipHeaders, zipBody] = (parts[2] as string).split('\r\n\r\n') as [string, string];
  const entries = zipEntries(Buffer.from(zipBody.replace(/\r\n/g, ''), 'base64'));
  return [parts[0], parts[1], `${zipHeaders}\r\n\r\n${entries}\r\n`, parts[3]].join('--=_ocBOUNDARY').replaceAll(boundary as string, '=_ocBOUNDARY');
}

/** `<sha256>  <path>` of every file in `out`, with `.rsmf` files normalized and their hashes in `export-summary.json` left out. */
async function contentManifest(out: string, prefix: string): Promise<string[]> {
  const lines: string[] = [];
  const sums = (await readFile(path.join(out, 'SHA256SUMS'), 'utf8')).trimEnd().split('\n');
  for (const name of (await readdir(out, { recursive: true })).map(String).sort()) {
    const file = path.join(out, name);
    if (!name.includes('.')) continue; // directories
    const bytes = await readFile(file);
    if (name !== 'SHA256SUMS') expect(sums).toContain(`${sha256(bytes)}  ${name.split(path.sep).join('/')}`);
    let hash: string;
    if (name.endsWith('.rsmf')) hash = sha256(normalizedRsmf(bytes));
    else if (name === 'export-summary.json') {
      const summary = JSON.parse(bytes.toString('utf8')) as { files: { path: string; size: number; sha256: string }[] };
      for (const entry of summary.files) if (entry.path.endsWith('.rsmf')) Object.assign(entry, { size: 0, sha256: 'rsmf' });
      hash = sha256(JSON.stringify(summary));
    } else if (name === 'SHA256SUMS') continue;
    else hash = sha256(bytes);
    lines.push(`${hash}  ${prefix}/${name.split(path.sep).join('/')}`);
  }
  return lines;
}

describe('golden export', () => {
  it('writes the same content as before, in every format, for a Recorder-built archive', async () => {
    const all = await run('all', { formats: ['rsmf', 'jsonl', 'html', 'eml'], emlMode: 'day' });
    const small = await run('per-record', { formats: ['eml', 'rsmf'], conversations: ['+15550100@s.whatsapp.net', '120363@g.us', 'signal-group-1'], from: '2026-11-20T09:00:00Z', to: '2026-11-20T09:30:00Z' });
    const manifest = [...(await contentManifest(all, 'all')), ...(await contentManifest(small, 'per-record'))].join('\n') + '\n';
    // The busy conversation spans two RSMF slices.
    expect(manifest).toMatch(/-002\.rsmf\n/);
    expect(BUSY_MESSAGES).toBeGreaterThan(10_000);
    if (process.env.OFFCHANNEL_UPDATE_GOLDEN === '1') await writeFile(GOLDEN, manifest);
    expect(manifest).toBe(await readFile(GOLDEN, 'utf8'));
  });
});
