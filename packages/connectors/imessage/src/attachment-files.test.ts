import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { readAttachment } from './attachment-files.ts';

/** A temporary tree: `Attachments/` (the only place files may come from) and `outside/`, holding a "key". */
let dir: string;
let attachments: string;
let outside: string;
const SECRET = '-----BEGIN OPENSSH PRIVATE KEY-----';
const PHOTO = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0]);

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'offchannel-attachments-'));
  attachments = path.join(dir, 'Attachments');
  outside = path.join(dir, 'outside');
  await mkdir(path.join(attachments, 'ab', '00', 'G1'), { recursive: true });
  await mkdir(path.join(outside, 'G1'), { recursive: true });
  await writeFile(path.join(attachments, 'ab', '00', 'G1', 'photo.jpg'), PHOTO);
  await writeFile(path.join(outside, 'id_ed25519'), SECRET);
  await writeFile(path.join(outside, 'G1', 'photo.jpg'), SECRET);
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await rm(dir, { recursive: true, force: true });
});

const STORED = '~/Library/Messages/Attachments/ab/00/G1/photo.jpg';
const row = (extra: Record<string, bigint | string | null>) => ({ guid: 'G1', mime_type: 'image/jpeg', transfer_name: 'photo.jpg', transfer_state: 5n, filename: STORED, ...extra });
const options = () => ({ attachmentsDir: attachments, maxBytes: 100 });

describe('readAttachment', () => {
  it('reads a completed transfer from the attachments directory, as stored or as an absolute path inside it', async () => {
    expect(await readAttachment(row({}), options())).toEqual({ bytes: PHOTO, mime: 'image/jpeg', name: 'photo.jpg' });
    const absolute = path.join(attachments, 'ab', '00', 'G1', 'photo.jpg');
    expect(await readAttachment(row({ filename: absolute, transfer_name: null, mime_type: null }), options())).toEqual({ bytes: PHOTO, mime: 'application/octet-stream', name: 'photo.jpg' });
  });

  it('follows symlinks that stay inside, including an attachments directory that is itself a symlink', async () => {
    await symlink(path.join(attachments, 'ab', '00', 'G1', 'photo.jpg'), path.join(attachments, 'ab', 'alias.jpg'));
    expect(await readAttachment(row({ filename: '~/Library/Messages/Attachments/ab/alias.jpg' }), options())).toMatchObject({ bytes: PHOTO });
    const linkedRoot = path.join(dir, 'linked-attachments');
    await symlink(attachments, linkedRoot);
    expect(await readAttachment(row({}), { attachmentsDir: linkedRoot, maxBytes: 100 })).toMatchObject({ bytes: PHOTO });
  });

  it('says why the bytes are not archived, never dropping the attachment', async () => {
    expect(await readAttachment(row({ transfer_state: 3n }), options())).toEqual({ status: 'unavailable', reason: 'transfer-pending', mime: 'image/jpeg', name: 'photo.jpg' });
    expect(await readAttachment(row({ filename: '~/Library/Messages/Attachments/zz/missing.jpg' }), options())).toMatchObject({ status: 'unavailable', reason: 'file-missing' });
    expect(await readAttachment(row({ filename: `${STORED}/below-a-file` }), options())).toMatchObject({ status: 'unavailable', reason: 'file-missing' });
    expect(await readAttachment(row({}), { attachmentsDir: attachments, maxBytes: 3 })).toMatchObject({ status: 'unavailable', reason: 'too-large', size: 4 });
    expect(await readAttachment(row({ filename: null }), options())).toMatchObject({ status: 'unavailable', reason: 'no-file-name' });
    expect(await readAttachment(row({ filename: '~/Library/Messages/Attachments/ab' }), options())).toMatchObject({ status: 'unavailable', reason: 'not-a-file' });
    expect(await readAttachment(row({ filename: `${STORED}\0.jpg` }), options())).toMatchObject({ status: 'unavailable', reason: 'file-unreadable: ERR_INVALID_ARG_VALUE' });
  });

  describe('never reads outside the attachments directory', () => {
    const escapes: Record<string, () => Promise<string>> = {
      'an absolute path': () => Promise.resolve(path.join(outside, 'id_ed25519')),
      'a ~/ path outside Attachments': async () => {
        vi.stubEnv('HOME', outside);
        return '~/id_ed25519';
      },
      'a relative path': () => Promise.resolve('../outside/id_ed25519'),
      '.. out of the stored Attachments prefix': () => Promise.resolve('~/Library/Messages/Attachments/../outside/id_ed25519'),
      '.. out of an absolute path inside': () => Promise.resolve(path.join(attachments, 'ab', '..', '..', 'outside', 'id_ed25519')),
      'the attachments directory itself': () => Promise.resolve('~/Library/Messages/Attachments/'),
      'a symlink inside pointing outside': async () => {
        await symlink(path.join(outside, 'id_ed25519'), path.join(attachments, 'ab', 'innocent.jpg'));
        return '~/Library/Messages/Attachments/ab/innocent.jpg';
      },
      'a symlinked parent directory': async () => {
        await symlink(outside, path.join(attachments, 'cd'));
        return '~/Library/Messages/Attachments/cd/G1/photo.jpg';
      },
      'a symlink to a device': async () => {
        await symlink('/dev/zero', path.join(attachments, 'ab', 'zero.jpg'));
        return '~/Library/Messages/Attachments/ab/zero.jpg';
      },
    };
    for (const [name, filename] of Object.entries(escapes)) {
      it(`refuses ${name}`, async () => {
        const result = await readAttachment(row({ filename: await filename() }), { attachmentsDir: attachments, maxBytes: 1 << 20 });
        expect(result).toMatchObject({ status: 'unavailable', reason: 'outside-attachments' });
        expect(result).not.toHaveProperty('bytes');
      });
    }

    it('refuses the same escapes with the default directory (~/Library/Messages/Attachments)', async () => {
      vi.stubEnv('HOME', dir);
      await mkdir(path.join(dir, 'Library', 'Messages', 'Attachments'), { recursive: true });
      await writeFile(path.join(dir, 'Library', 'Messages', 'Attachments', 'ok.jpg'), PHOTO);
      const read = (filename: string) => readAttachment(row({ filename }), { maxBytes: 100 });
      expect(await read('~/Library/Messages/Attachments/ok.jpg')).toMatchObject({ bytes: PHOTO });
      expect(await read('~/outside/id_ed25519')).toMatchObject({ reason: 'outside-attachments' });
      expect(await read(path.join(outside, 'id_ed25519'))).toMatchObject({ reason: 'outside-attachments' });
    });
  });

  it('does not open or hang on a FIFO named by a row', async () => {
    const fifo = path.join(attachments, 'ab', 'pipe.jpg');
    execFileSync('mkfifo', [fifo]);
    expect(await readAttachment(row({ filename: '~/Library/Messages/Attachments/ab/pipe.jpg' }), options())).toMatchObject({ status: 'unavailable', reason: 'not-a-file' });
  }, 60_000);

  describe('checks the file it opened, not only the path it checked', () => {
    const swaps: Record<string, { swap: (file: string) => Promise<void>; reason: string }> = {
      'replaced by a symlink to a key': {
        swap: async (file) => {
          await rm(file);
          await symlink(path.join(outside, 'id_ed25519'), file);
        },
        reason: 'file-changed',
      },
      'moved, with its parent directory now a symlink outside': {
        swap: async (file) => {
          await rename(path.dirname(file), `${path.dirname(file)}.moved`);
          await symlink(path.join(outside, 'G1'), path.dirname(file));
        },
        reason: 'file-changed',
      },
      'replaced by a FIFO': {
        swap: async (file) => {
          await rm(file);
          execFileSync('mkfifo', [file]);
        },
        reason: 'not-a-file',
      },
      'replaced by another file': {
        swap: async (file) => {
          await writeFile(`${file}.new`, SECRET); // a new inode, renamed over the checked one
          await rename(`${file}.new`, file);
        },
        reason: 'file-changed',
      },
      'grown past the limit after the check': {
        swap: (file) => appendFile(file, new Uint8Array(200)),
        reason: 'too-large',
      },
    };
    for (const [name, { swap, reason }] of Object.entries(swaps)) {
      it(`refuses a file that was ${name}`, async () => {
        const result = await readAttachment(row({}), { ...options(), beforeOpen: swap });
        expect(result).toMatchObject({ status: 'unavailable', reason });
        expect(result).not.toHaveProperty('bytes');
      }, 60_000);
    }
  });
});
