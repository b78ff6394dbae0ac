import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it, vi } from 'vitest';
import { main, toCaptureInput } from './main.ts';

it('records, deduplicates a redelivery, and verifies', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-example-'));
  const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
  try {
    expect(await main(path.join(dir, 'archive'))).toBe(true);
    expect(log.mock.calls.map((call) => String(call[0]))).toEqual([
      'event 1: recorded as seq 1',
      'event 2: recorded as seq 2',
      'event 3: recorded as seq 3',
      'event 1: duplicate as seq 1',
      expect.stringContaining('verified: acme-chat:desk-42 (3 records)'),
    ]);
  } finally {
    log.mockRestore();
    await rm(dir, { recursive: true, force: true });
  }
});

it('maps an edit to a new record pointing at its target', () => {
  expect(toCaptureInput({ id: '3', room: 'r', from: 'me', body: 'x', at: '2026-11-21T08:00:00Z', editOf: '2' }, 'me')).toMatchObject({ kind: 'edit', target: { id: '2', room: 'r' }, direction: 'outbound' });
});
