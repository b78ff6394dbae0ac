import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readAttachment } from './attachment-files.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-attachments-'));
  await mkdir(path.join(dir, 'ab', '00', 'G1'), { recursive: true });
  await writeFile(path.join(dir, 'ab', '00', 'G1', 'photo.jpg'), Uint8Array.from([0xff, 0xd8, 0xff, 0xe0]));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const row = (extra: Record<string, bigint | string | null>) => ({ guid: 'G1', mime_type: 'image/jpeg', transfer_name: 'photo.jpg', transfer_state: 5n, filename: '~/Library/Messages/Attachments/ab/00/G1/photo.jpg', ...extra });

describe('readAttachment', () => {
  it('reads a completed transfer from the Messages attachments directory', async () => {
    expect(await readAttachment(row({}), { attachmentsDir: dir, maxBytes: 100 })).toEqual({ bytes: Uint8Array.from([0xff, 0xd8, 0xff, 0xe0]), mime: 'image/jpeg', name: 'photo.jpg' });
    expect(await readAttachment(row({ filename: path.join(dir, 'ab', '00', 'G1', 'photo.jpg'), transfer_name: null, mime_type: null }), { maxBytes: 100 })).toMatchObject({ mime: 'application/octet-stream', name: 'photo.jpg' });
  });

  it('says why the bytes are not archived, never dropping the attachment', async () => {
    const options = { attachmentsDir: dir, maxBytes: 100 };
    expect(await readAttachment(row({ transfer_state: 3n }), options)).toEqual({ status: 'unavailable', reason: 'transfer-pending', mime: 'image/jpeg', name: 'photo.jpg' });
    expect(await readAttachment(row({ filename: '~/Library/Messages/Attachments/zz/missing.jpg' }), options)).toMatchObject({ status: 'unavailable', reason: 'file-missing' });
    expect(await readAttachment(row({}), { attachmentsDir: dir, maxBytes: 3 })).toMatchObject({ status: 'unavailable', reason: 'too-large', size: 4 });
    expect(await readAttachment(row({ filename: null }), options)).toMatchObject({ status: 'unavailable', reason: 'no-file-name' });
    expect(await readAttachment(row({ filename: dir }), options)).toMatchObject({ status: 'unavailable', reason: 'not-a-file' });
  });
});
