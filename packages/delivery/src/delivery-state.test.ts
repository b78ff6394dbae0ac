/**
 * The delivery state's cursor on a disk that refuses writes (ENOSPC injected into `writeSync`, EIO into `closeSync`):
 * the write fails, leaves no descriptor open and the stored cursor stands — a plain file descriptor is never closed by
 * garbage collection. (The target's lock writes nothing: delivery-state-lock.test.ts.)
 */
import type * as NodeFs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { openFilesUnder } from '@offchannel/core/testing';
import { type DeliveryCursor, DeliveryState } from './delivery-state.ts';

const faults = vi.hoisted(() => ({ writeSync: 0, closeSync: 0 }));

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof NodeFs>();
  const writeSync = ((...args: Parameters<typeof fs.writeSync>) => {
    if (faults.writeSync > 0) {
      faults.writeSync--;
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    }
    return (fs.writeSync as (...a: Parameters<typeof fs.writeSync>) => number)(...args);
  }) as typeof fs.writeSync;
  // As close(2) can: the descriptor is freed, and then EIO says earlier writes may be lost.
  const closeSync = ((fd: number) => {
    fs.closeSync(fd);
    if (faults.closeSync > 0) {
      faults.closeSync--;
      throw Object.assign(new Error('EIO: i/o error, close'), { code: 'EIO', errno: -5, syscall: 'close' });
    }
  }) as typeof fs.closeSync;
  return { ...fs, writeSync, closeSync, default: { ...fs, writeSync, closeSync } };
});

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'delivery-state-'));
});

afterEach(async () => {
  faults.writeSync = 0;
  faults.closeSync = 0;
  expect(await openFilesUnder(dir)).toEqual([]);
  await rm(dir, { recursive: true, force: true });
});

/** Open descriptors of the state's files other than its lock (held while the state is open). */
const openCursorFiles = async (): Promise<string[]> => (await openFilesUnder(dir)).filter((file) => !path.basename(file).startsWith('journal.lock.db'));

const cursor: DeliveryCursor = { format: 'offchannel-delivery-cursor', v: 1, target: 'journal', to: 'journal@archive.test', mode: 'record', streams: { 'demo:alice': 3 }, receipts: 1 };

it('a cursor that cannot be written fails and leaves its temp file closed; the stored cursor stands', async () => {
  const state = await DeliveryState.open(dir, 'journal');
  try {
    state.write(cursor);
    faults.writeSync = 1;
    expect(() => { state.write({ ...cursor, receipts: 2 }); }).toThrow(/ENOSPC/);
    expect(faults.writeSync, 'the injected failure was hit').toBe(0);
    expect(await openCursorFiles()).toEqual([]);
    expect(state.read()).toEqual(cursor);
  } finally {
    state.close();
  }
});

it('a cursor whose temp file reports an I/O error at close fails; the stored cursor stands', async () => {
  const state = await DeliveryState.open(dir, 'journal');
  try {
    state.write(cursor);
    faults.closeSync = 1;
    expect(() => { state.write({ ...cursor, receipts: 2 }); }).toThrow(/EIO/);
    expect(faults.closeSync, 'the injected failure was hit').toBe(0);
    expect(await openCursorFiles()).toEqual([]);
    expect(state.read()).toEqual(cursor);
  } finally {
    state.close();
  }
});
