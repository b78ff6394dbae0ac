import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OffchannelError } from '@offchannel/core';
import { writeFileDurably, writeStreamingFile } from './written-file.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('writeFileDurably', () => {
  it('returns the SHA-256 of the bytes written and never replaces an existing file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-written-'));
    dirs.push(dir);
    const file = path.join(dir, 'a.txt');
    const written = await writeFileDurably(file, 'first');
    expect(written).toEqual({ path: file, size: 5, sha256: createHash('sha256').update('first').digest('hex') });
    const error = await writeFileDurably(file, 'second').catch((caught: unknown) => caught);
    expect(OffchannelError.hasCode(error, 'EXPORT_OUTPUT')).toBe(true);
    expect((error as Error).message).toMatch(/already exists; an export never replaces a file it wrote/);
    expect(await readFile(file, 'utf8')).toBe('first');
    expect(await readdir(dir)).toEqual(['a.txt']);
  });

  it('removes its partial file when filling it fails', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-written-'));
    dirs.push(dir);
    const error = await writeStreamingFile(path.join(dir, 'b.txt'), async (write) => {
      await write('half of it');
      throw new Error('the archive went away');
    }).catch((caught: unknown) => caught);
    expect((error as Error).message).toBe('the archive went away');
    expect(await readdir(dir)).toEqual([]);
  });
});
