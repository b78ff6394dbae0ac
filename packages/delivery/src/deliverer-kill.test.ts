/**
 * Crash safety against a real Postfix: the delivering process is SIGKILLed at random moments
 * (while starting and rendering, between a 250 and its receipt, between the receipt and the
 * cursor write …), twelve times, then run to the end. Every record must arrive; the receipts
 * must name exactly the records, once each; a Message-ID may arrive twice only when its
 * receipt says `inDoubt` (the kill fell between the server taking it and the receipt), at most
 * once per kill. The kill points come from a seeded generator (printed on failure).
 */
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { exportArchive } from '@offchannel/export';
import { openFsSink } from '@offchannel/sink-fs';
import { checkDelivery } from './check-delivery.ts';
import { readReceipts } from './delivery-receipts.ts';
import { createJournalArchive, removeTempDirs, tempDir } from './__fixtures__/journal-archive.ts';
import { type PostfixInstance, startPostfix } from './__fixtures__/postfix-instance.ts';

const CHILD = path.join(import.meta.dirname, '__fixtures__', 'deliver-child.ts');
const TRIALS = 12;
const SEED = 20261206;

let postfix: PostfixInstance;
beforeAll(async () => {
  postfix = await startPostfix('starttls');
}, 120_000);
afterAll(async () => {
  await postfix?.stop();
  await removeTempDirs();
}, 60_000);

function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs the child; kills it per `kill` (after the n-th delivery plus a delay, or a delay after start). Resolves with its output. */
function runChild(env: string, kill: { readonly afterDeliveries: number; readonly delayMs: number } | undefined): Promise<{ output: string; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=@offchannel/source', CHILD], { env: { ...process.env, OFFCHANNEL_TEST_DELIVERY: env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let stderr = '';
    let killed = false;
    let delivered = 0;
    const fire = (): void => {
      setTimeout(() => {
        killed = child.exitCode === null && child.kill('SIGKILL');
      }, kill?.delayMs ?? 0);
    };
    if (kill && kill.afterDeliveries === 0) fire();
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const count = output.split('\n').filter((line) => line.startsWith('delivered ')).length;
      if (kill && kill.afterDeliveries > 0 && delivered < kill.afterDeliveries && count >= kill.afterDeliveries) fire();
      delivered = count;
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL' && code !== 0) reject(new Error(`deliver child exited ${code}: ${stderr}`));
      else resolve({ output, killed: signal === 'SIGKILL' && killed });
    });
  });
}

it(`survives ${TRIALS} SIGKILLs at random moments: every record arrives, receipts match, no silent duplicate`, async () => {
  const archive = await createJournalArchive(400);
  const total = Object.values(archive.counts).reduce((sum, count) => sum + count, 0);
  const state = await tempDir('offchannel-delivery-kill-');
  const env = JSON.stringify({ archive: archive.dir, state, smtp: postfix.url.replace('127.0.0.1', 'localhost'), ca: postfix.ca?.toString('utf8'), verifier: archive.key.verifierKey, now: '2026-11-23T12:00:00Z' });
  const before = (await postfix.messages()).length;
  const random = generator(SEED);
  const kills: string[] = [];
  for (let trial = 0; trial < TRIALS; trial++) {
    // A kill by time after start lands while starting and rendering: at most 450 ms, so a fast
    // machine cannot deliver the whole archive in one trial and leave the later kills nothing to hit.
    const plan = random() < 0.25 ? { afterDeliveries: 0, delayMs: 150 + Math.floor(random() * 300) } : { afterDeliveries: 1 + Math.floor(random() * 4), delayMs: Math.floor(random() * 30) };
    const result = await runChild(env, plan);
    if (result.killed) kills.push(`trial ${trial}: ${JSON.stringify(plan)} after ${result.output.split('\n').filter((line) => line.startsWith('delivered')).length} deliveries`);
  }
  const last = await runChild(env, undefined);
  expect(last.output).toMatch(/^done \d+$/m);
  expect(kills.length, `seed ${SEED}; kills: ${kills.join("; ")}; last: ${last.output.slice(-300)}`).toBeGreaterThanOrEqual(10);

  // What should have arrived: the Message-IDs of the export of the same archive.
  const sink = await openFsSink({ dir: archive.dir, readOnly: true });
  const expected = new Set<string>();
  const receipts = [];
  try {
    const out = await tempDir('offchannel-delivery-kill-export-');
    await exportArchive({ sink, out: path.join(out, 'x'), formats: ['eml'], streams: archive.streams });
    for (const entry of await readdir(path.join(out, 'x', 'eml'), { recursive: true })) {
      if (entry.endsWith('.eml')) expected.add(/^Message-ID: (\S+)/m.exec(await readFile(path.join(out, 'x', 'eml', entry), 'latin1'))?.[1] ?? '');
    }
    for await (const receipt of readReceipts(sink, 'journal')) receipts.push(receipt);
    expect((await checkDelivery({ archive: sink, target: 'journal' })).ok).toBe(true);
  } finally {
    await sink.close();
  }
  expect(expected.size).toBe(total);

  const arrived = (await postfix.settle(before + total)).slice(before);
  const counts = new Map<string, number>();
  for (const message of arrived) {
    const id = /^Message-ID: (\S+)/im.exec(message.toString('latin1'))?.[1] ?? 'none';
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  // Every record arrived.
  expect([...expected].filter((id) => !counts.has(id)), `seed ${SEED}; kills: ${kills.join('; ')}`).toEqual([]);
  expect([...counts.keys()].filter((id) => !expected.has(id))).toEqual([]);
  // One receipt per record, naming what arrived.
  const covered = receipts.flatMap((receipt) => receipt.seqs.map((seq) => `${receipt.stream}/${seq}`));
  expect(new Set(covered).size).toBe(total);
  expect(covered).toHaveLength(total);
  expect(new Set(receipts.map((receipt) => receipt.messageId))).toEqual(expected);
  // A second copy only where the receipt owns up to it, and at most one per kill.
  const twice = [...counts].filter(([, count]) => count > 1).map(([id]) => id);
  const doubted = new Set(receipts.filter((receipt) => receipt.inDoubt).map((receipt) => receipt.messageId));
  for (const id of twice) expect(doubted.has(id), `${id} arrived twice without an in-doubt receipt`).toBe(true);
  expect([...counts.values()].every((count) => count <= 2)).toBe(true);
  expect(twice.length).toBeLessThanOrEqual(kills.length);
  console.info(`kill trials: ${kills.length} kills, ${total} records, ${twice.length} in-doubt resends (same Message-ID), ${doubted.size} receipts marked in doubt`);
}, 180_000);
