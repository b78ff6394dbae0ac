/**
 * `<state>/journal.snapshot`: the journal's high-water mark of every log up to a byte offset,
 * so that a start reads only the journal after that offset. Plain text, one line each:
 *
 *     offchannel witness journal snapshot 2
 *     witness <witness key name> <key id, 8 hex>
 *     journal <offset> <sha256 hex of the first 4 KiB before it> <sha256 hex of the last 4 KiB before it>
 *     <sha256(origin) hex> <size> <base64 root>        one per log, sorted, as in the journal
 *     hmac-sha256 <hex of HMAC-SHA-256 over every byte above this line>
 *
 * The HMAC key is derived from the witness's signing key (HKDF-SHA-256, info
 * `offchannel witness snapshot v1`; never the signing key itself, never written or logged), so
 * only this witness's key holder can write a snapshot the witness uses: whoever can write the
 * state folder but not the journal (append-only or WORM) cannot lower a log's mark through it.
 * A snapshot without a valid HMAC for this key (an older format, damaged, forged, another
 * witness's) is treated as absent.
 *
 * It is a cache of the journal, never the only copy of anything: written atomically
 * (temporary file, fsync, rename, fsync of the directory), and used only if it is authentic and
 * the journal still holds, at both ends of its first `offset` bytes, the bytes it was written
 * from — two 4 KiB reads however long the journal is. A journal compacted or replaced since
 * fails that check and is read whole instead.
 */
import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { type Cosigner, readSmallFile } from '@offchannel/core';
import type { JournalMark } from './witness-journal.ts';

const MAGIC = 'offchannel witness journal snapshot 2';
const HKDF_INFO = 'offchannel witness snapshot v1';

/**
 * The key that authenticates this witness's snapshots: HKDF-SHA-256 of the witness's signing
 * key. Its secret lives in a private field (never printed by `inspect` or `JSON.stringify`).
 */
export class SnapshotKey {
  /** The witness key's name and id, written in (and authenticated with) each snapshot. */
  readonly witness: string;
  readonly #secret: Buffer;

  private constructor(witness: string, secret: Buffer) {
    this.witness = witness;
    this.#secret = secret;
  }

  /** Derives the snapshot key from the witness's signing key. */
  static fromCosigner(key: Cosigner): SnapshotKey {
    const secret = Buffer.from(hkdfSync('sha256', Buffer.from(key.signerKeyText(), 'utf8'), Buffer.alloc(0), HKDF_INFO, 32));
    return new SnapshotKey(`${key.name} ${key.keyId.toString(16).padStart(8, '0')}`, secret);
  }

  /** HMAC-SHA-256 of `body` (latin1), hex. */
  mac(body: string): string {
    return createHmac('sha256', this.#secret).update(body, 'latin1').digest('hex');
  }
}
/** About two million logs; a larger snapshot is ignored (the journal is read whole). */
const MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024;

export interface JournalSnapshot {
  /** Journal bytes covered: the snapshot's marks are the highest lines in `[0, offset)`. */
  readonly offset: number;
  readonly first: string;
  readonly last: string;
  readonly marks: ReadonlyMap<string, JournalMark>;
}

/**
 * The snapshot in `file`; `{ problem }` if it cannot be used (unauthenticated for `key`
 * included), undefined if there is none.
 */
export async function readSnapshot(file: string, key: SnapshotKey): Promise<JournalSnapshot | { readonly problem: string } | undefined> {
  let bytes;
  try {
    bytes = await readSmallFile(file, { maxBytes: MAX_SNAPSHOT_BYTES, refuse: (problem) => new Error(problem) });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { problem: (error as Error).message };
  }
  const text = bytes.toString('latin1');
  if (!text.startsWith(`${MAGIC}\n`)) return { problem: 'is not an authenticated journal snapshot (an older format, or not a snapshot)' };
  const sealed = /\nhmac-sha256 ([0-9a-f]{64})\n$/.exec(text);
  const body = sealed ? text.slice(0, sealed.index + 1) : '';
  if (!sealed || !timingSafeEqual(Buffer.from(key.mac(body), 'hex'), Buffer.from(sealed[1] as string, 'hex'))) {
    return { problem: 'is not authenticated by this witness\'s key (incomplete, damaged, forged, or written by another witness key)' };
  }
  const lines = body.split('\n');
  lines.pop();
  const header = /^journal (0|[1-9][0-9]{0,15}) ([0-9a-f]{64}) ([0-9a-f]{64})$/.exec(lines[2] ?? '');
  if (lines[1] !== `witness ${key.witness}` || !header) return { problem: 'is not a journal snapshot this version reads' };
  const marks = new Map<string, JournalMark>();
  for (const line of lines.slice(3)) {
    const match = /^([0-9a-f]{64}) (0|[1-9][0-9]{0,15}) ([A-Za-z0-9+/]{43}=)$/.exec(line);
    if (!match || marks.has(match[1] as string)) return { problem: 'is damaged' };
    marks.set(match[1] as string, { size: Number(match[2]), root: match[3] as string });
  }
  return { offset: Number(header[1]), first: header[2] as string, last: header[3] as string, marks };
}

/** The snapshot's bytes, authenticated with `key`. */
export function formatSnapshot(snapshot: JournalSnapshot, key: SnapshotKey): string {
  const marks = [...snapshot.marks].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const body = `${MAGIC}\nwitness ${key.witness}\njournal ${snapshot.offset} ${snapshot.first} ${snapshot.last}\n${marks.map(([id, mark]) => `${id} ${mark.size} ${mark.root}\n`).join('')}`;
  return `${body}hmac-sha256 ${key.mac(body)}\n`;
}

/** Replaces `file` with `snapshot`, authenticated with `key`, atomically; returns the bytes written. */
export async function writeSnapshot(file: string, snapshot: JournalSnapshot, key: SnapshotKey): Promise<number> {
  const text = formatSnapshot(snapshot, key);
  const temporary = `${file}.tmp`;
  // Whatever is left in its place (a write cut short, or anything else) is removed, not opened.
  await rm(temporary, { force: true });
  const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await handle.writeFile(text, 'latin1');
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
  const dir = await open(path.dirname(file), constants.O_RDONLY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return text.length;
}
