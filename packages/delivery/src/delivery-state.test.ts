/**
 * The delivery state's files on a disk that refuses writes (ENOSPC, injected into `writeSync`):
 * the target's lock and its cursor fail with DELIVERY_STATE and leave no descriptor open — a
 * plain file descriptor is never closed by garbage collection — and no lock behind.
 */
import type * as NodeFs from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { OffchannelError } from '@offchannel/core';
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

const cursor: DeliveryCursor = { format: 'offchannel-delivery-cursor', v: 1, target: 'journal', to: 'journal@archive.test', mode: 'record', streams: { 'demo:alice': 3 }, receipts: 1 };

it('a lock that cannot be written is refused, closed and removed; the next open takes it', async () => {
  faults.writeSync = 1;
  const error = await DeliveryState.open(dir, 'journal').catch((caught: unknown) => caught);
  expect(faults.writeSync, 'the injected failure was hit').toBe(0);
  expect(OffchannelError.hasCode(error, 'DELIVERY_STATE'), String(error)).toBe(true);
  expect((error as Error).message).toContain('journal.lock');
  expect(await openFilesUnder(dir)).toEqual([]);
  expect(await readdir(dir)).toEqual([]);
  const state = await DeliveryState.open(dir, 'journal');
  expect((await readFile(path.join(dir, 'journal.lock'), 'utf8')).trim()).toBe(String(process.pid));
  state.close();
});

it('a lock whose close reports an I/O error is refused with DELIVERY_STATE and removed; the next open takes it', async () => {
  faults.closeSync = 1;
  const error = await DeliveryState.open(dir, 'journal').catch((caught: unknown) => caught);
  expect(faults.closeSync, 'the injected failure was hit').toBe(0);
  expect(OffchannelError.hasCode(error, 'DELIVERY_STATE'), String(error)).toBe(true);
  expect(await readdir(dir)).toEqual([]);
  const state = await DeliveryState.open(dir, 'journal');
  state.close();
});

it('a cursor that cannot be written fails and leaves its temp file closed; the stored cursor stands', async () => {
  const state = await DeliveryState.open(dir, 'journal');
  try {
    state.write(cursor);
    faults.writeSync = 1;
    expect(() => { state.write({ ...cursor, receipts: 2 }); }).toThrow(/ENOSPC/);
    expect(faults.writeSync, 'the injected failure was hit').toBe(0);
    expect(await openFilesUnder(dir)).toEqual([]);
    expect(state.read()).toEqual(cursor);
  } finally {
    state.close();
  }
});
