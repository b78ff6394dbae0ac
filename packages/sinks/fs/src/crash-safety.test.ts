import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveRecord, ed25519KeyFromSeed, sha256Hex, verifyArchive } from '@offchannel/core';
import { expect, it, vi } from 'vitest';
import { openFsSink } from './fs-sink.ts';

// These tests spawn processes or start servers: ample time on a busy machine (not Vitest's 5 s default).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const child = path.join(import.meta.dirname, '__fixtures__', 'capture-child.ts');
const TRIALS = 24;
/** The key the child signs with in its indexed trials. */
const signer = ed25519KeyFromSeed('crash.example/offchannel', new Uint8Array(32).fill(7));

it(`keeps every acknowledged record and its blobs through ${TRIALS} SIGKILLs at random moments, without duplicates`, { timeout: 600_000 }, async () => {
  const dir = path.join(await mkdtemp(path.join(tmpdir(), 'offchannel-crash-')), 'archive');
  const t0 = performance.now();
  const acknowledged = new Map<number, number>(); // message index → seq
  let next = 0;
  let checkpointed = 0;
  try {
    for (let trial = 0; trial < TRIALS; trial++) {
      // Restart a little behind the last acknowledged message: those captures are replays.
      const start = Math.max(0, next - 150);
      // Alternate trials use a persistent key index and signed checkpoints: the index is then
      // sometimes behind the archive (a trial without it appended), sometimes torn by the kill.
      const indexed = trial % 2 === 1 ? [path.join(path.dirname(dir), 'key-index.sqlite')] : [];
      const process_ = spawn(process.execPath, ['--conditions=@offchannel/source', '--experimental-strip-types', '--no-warnings', child, dir, String(start), ...indexed], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      process_.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      let buffered = '';
      let ready = false;
      /** Messages first acknowledged in this trial (replays of earlier ones not counted). */
      let fresh = 0;
      process_.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        buffered += chunk;
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          if (line === 'ready') ready = true;
          else {
            const [index, seq] = line.split(' ').map(Number) as [number, number];
            const known = acknowledged.get(index);
            if (known !== undefined) expect(seq, `replayed message ${index} must resolve to its first seq`).toBe(known);
            else fresh++;
            acknowledged.set(index, seq);
            next = Math.max(next, index + 1);
          }
        }
      });
      const exited = new Promise<number | null>((resolve) => {
        process_.once('exit', resolve);
      });
      while (!ready) {
        if (process_.exitCode !== null) throw new Error(`child exited early: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      // Kill while it captures, whatever the machine's load: once it has acknowledged a random
      // 30–90 new messages (or 30 s passed), then a random few milliseconds later.
      const target = 30 + Math.floor(Math.random() * 61);
      const waitedFrom = performance.now();
      while (fresh < target && process_.exitCode === null && performance.now() - waitedFrom < 30_000) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
      process_.kill('SIGKILL');
      expect(await exited, stderr).toBeNull();

      // Restart: a writer opening the archive recovers it (torn tail cut, head read back).
      const sink = await openFsSink({ dir, segmentBytes: 48 * 1024 });
      const head = await sink.head('demo:crash');
      const seen = new Map<string, number>();
      let count = 0;
      for await (const stored of sink.read('demo:crash')) {
        const record = JSON.parse(Buffer.from(stored.bytes).toString('utf8')) as ArchiveRecord;
        expect(seen.has(record.key), `key ${record.key} recorded twice`).toBe(false);
        seen.set(record.key, record.seq);
        count++;
        // Every record names its blobs, and each is there, complete, under its hash.
        const named = [record.raw, ...(record.attachments ?? []).filter((item) => item.status === 'stored')];
        expect(record.raw, `record ${record.seq} lost its raw blob ref`).toBeDefined();
        for (const ref of named) {
          const bytes = await sink.getBlob(ref?.sha256 as string);
          expect(bytes, `blob of record ${record.seq} missing after crash ${trial}`).toBeDefined();
          expect(sha256Hex(bytes as Uint8Array)).toBe(ref?.sha256);
          expect(bytes?.length).toBe(ref?.size);
        }
      }
      expect(count).toBe(head.seq);
      for (const [index, seq] of acknowledged) expect(seen.get(`message:{"id":"m-${index}"}`), `acknowledged message ${index} missing after crash ${trial}`).toBe(seq);
      // Once indexed trials have signed checkpoints, they are checked too.
      const signed = (await sink.checkpoints('demo:crash')).length > 0;
      if (signed) checkpointed++;
      const report = await verifyArchive(sink, signed ? { verifiers: [signer.verifier] } : {});
      expect(report.failures).toEqual([]);
      await sink.close();
    }
    // Every trial was killed after at least 30 new acknowledgements: the kills hit running captures.
    expect(acknowledged.size).toBeGreaterThanOrEqual(TRIALS * 30);
    expect(checkpointed, 'trials verified against signed checkpoints').toBeGreaterThan(TRIALS / 4);
    const quarantined = await readdir(path.join(dir, 'quarantine', 'demo:crash')).catch(() => []);
    console.log(`crash test: ${acknowledged.size} acknowledged, ${quarantined.length} torn tails recovered, ${(performance.now() - t0).toFixed(0)} ms`);
  } finally {
    await rm(path.dirname(dir), { recursive: true, force: true });
  }
});
