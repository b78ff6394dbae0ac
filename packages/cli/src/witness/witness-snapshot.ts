/**
 * `<state>/journal.snapshot`: the journal's high-water mark of every log up to a byte offset,
 * so that a start reads only the journal after that offset. Plain text, one line each:
 *
 *     offchannel witness journal snapshot 1
 *     journal <offset> <sha256 hex of the first 4 KiB before it> <sha256 hex of the last 4 KiB before it>
 *     <sha256(origin) hex> <size> <base64 root>        one per log, sorted, as in the journal
 *     sha256 <hex of every byte above this line>
 *
 * It is a cache of the journal, never the only copy of anything: written atomically
 * (temporary file, fsync, rename, fsync of the directory), and used only if it is complete (the
 * last line checks the rest) and the journal still holds, at both ends of its first `offset`
 * bytes, the bytes it was written from — two 4 KiB reads however long the journal is. A journal
 * compacted or replaced since fails that check and is read whole instead.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { readSmallFile } from '@offchannel/core';
import type { JournalMark } from './witness-journal.ts';

const MAGIC = 'offchannel witness journal snapshot 1';
/** About two million logs; a larger snapshot is ignored (the journal is read whole). */
const MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024;

export interface JournalSnapshot {
  /** Journal bytes covered: the snapshot's marks are the highest lines in `[0, offset)`. */
  readonly offset: number;
  readonly first: string;
  readonly last: string;
  readonly marks: ReadonlyMap<string, JournalMark>;
}

/** The snapshot in `file`; `{ problem }` if it cannot be used, undefined if there is none. */
export async function readSnapshot(file: string): Promise<JournalSnapshot | { readonly problem: string } | undefined> {
  let bytes;
  try {
    bytes = await readSmallFile(file, { maxBytes: MAX_SNAPSHOT_BYTES, refuse: (problem) => new Error(problem) });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { problem: (error as Error).message };
  }
  const text = bytes.toString('latin1');
  const sealed = /\nsha256 ([0-9a-f]{64})\n$/.exec(text);
  const body = sealed ? text.slice(0, sealed.index + 1) : '';
  if (!sealed || createHash('sha256').update(body, 'latin1').digest('hex') !== sealed[1]) return { problem: 'is incomplete or damaged' };
  const lines = body.split('\n');
  lines.pop();
  const header = /^journal (0|[1-9][0-9]{0,15}) ([0-9a-f]{64}) ([0-9a-f]{64})$/.exec(lines[1] ?? '');
  if (lines[0] !== MAGIC || !header) return { problem: 'is not a journal snapshot this version reads' };
  const marks = new Map<string, JournalMark>();
  for (const line of lines.slice(2)) {
    const match = /^([0-9a-f]{64}) (0|[1-9][0-9]{0,15}) ([A-Za-z0-9+/]{43}=)$/.exec(line);
    if (!match || marks.has(match[1] as string)) return { problem: 'is damaged' };
    marks.set(match[1] as string, { size: Number(match[2]), root: match[3] as string });
  }
  return { offset: Number(header[1]), first: header[2] as string, last: header[3] as string, marks };
}

/** The snapshot's bytes. */
export function formatSnapshot(snapshot: JournalSnapshot): string {
  const marks = [...snapshot.marks].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const body = `${MAGIC}\njournal ${snapshot.offset} ${snapshot.first} ${snapshot.last}\n${marks.map(([id, mark]) => `${id} ${mark.size} ${mark.root}\n`).join('')}`;
  return `${body}sha256 ${createHash('sha256').update(body, 'latin1').digest('hex')}\n`;
}

/** Replaces `file` with `snapshot` atomically; returns the bytes written. */
export async function writeSnapshot(file: string, snapshot: JournalSnapshot): Promise<number> {
  const text = formatSnapshot(snapshot);
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
