/**
 * bench/blobs — the fs sink's blob writes (one content-addressed, fsync'd file per record's raw
 * evidence) against a naive design and against the disk's floor, in one process.
 *
 * For blobs of 600 B and 3 KiB (a message's raw bytes), side by side:
 *   naive   one file per blob, written then fdatasync'd and closed, one at a time
 *   sink    `FsSink.putBlob` for every blob at once, as the recorder starts them (the sink runs
 *           up to 64 at a time on a thread pool of UV_THREADPOOL_SIZE threads, 16 by script)
 *   floor   the same bytes appended to one file, one fdatasync per 64 blobs: what the disk
 *           can do at all (no file per blob, so not a design the archive could use)
 * with blobs/s, CPU time per blob (user + system, this process: steadier than the rate on a
 * shared machine) and the ratios sink/naive and sink/floor.
 *
 * `--compare <path>` also runs another copy of the sink (the `src/index.ts` of
 * `packages/sinks/fs` in another checkout, e.g. before a change), in rounds interleaved with
 * this one, so that other load on the machine hits both alike; each variant keeps its best round.
 *
 * `--only sink,compare,naive,floor` runs only those (e.g. under `strace -f -c` to count calls).
 *
 * Usage: pnpm bench:blobs [--blobs N] [--naive N] [--rounds R] [--sizes 600,3072]
 *        [--compare <fs sink index.ts>] [--only <names>] [--json]
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openFsSink } from '@offchannel/sink-fs';

const { values } = parseArgs({
  options: {
    blobs: { type: 'string', default: '20000' },
    naive: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    sizes: { type: 'string', default: '600,3072' },
    compare: { type: 'string' },
    only: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const BLOBS = Number(values.blobs);
const NAIVE = Number(values.naive);
const ROUNDS = Number(values.rounds);
const SIZES = values.sizes.split(',').map(Number);
/** Blob writes the bench keeps in flight (the recorder starts every capture's at once). */
const IN_FLIGHT = 1024;

type OpenSink = typeof openFsSink;
interface Result {
  readonly perSecond: number;
  /** CPU time of the whole process (every thread) per blob, µs. */
  readonly cpuMicros: number;
  /** CPU time of the main thread alone per blob, µs (Node ≥ 23.9). */
  readonly mainMicros: number;
}
const ONLY = values.only?.split(',');
const runs = (name: string): boolean => ONLY === undefined || ONLY.includes(name);
const threadCpu = (process as { threadCpuUsage?: (previous?: NodeJS.CpuUsage) => NodeJS.CpuUsage }).threadCpuUsage?.bind(process);

function blobs(count: number, size: number): Buffer[] {
  return Array.from({ length: count }, () => randomBytes(size));
}

async function timed(count: number, task: () => Promise<void>): Promise<Result> {
  const cpu = process.cpuUsage();
  const main = threadCpu?.();
  const start = process.hrtime.bigint();
  await task();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const used = process.cpuUsage(cpu);
  const mainUsed = main ? threadCpu?.(main) : undefined;
  return { perSecond: count / seconds, cpuMicros: (used.user + used.system) / count, mainMicros: mainUsed ? (mainUsed.user + mainUsed.system) / count : Number.NaN };
}

async function naive(dir: string, data: readonly Buffer[]): Promise<Result> {
  return timed(data.length, async () => {
    for (const [index, bytes] of data.entries()) {
      const handle = await open(path.join(dir, `naive-${index}`), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o444);
      await handle.write(bytes, 0, bytes.length, 0);
      await handle.datasync();
      await handle.close();
    }
  });
}

async function floor(dir: string, data: readonly Buffer[]): Promise<Result> {
  const handle = await open(path.join(dir, 'floor'), 'w');
  try {
    return await timed(data.length, async () => {
      let position = 0;
      for (let start = 0; start < data.length; start += 64) {
        const group = Buffer.concat(data.slice(start, start + 64));
        await handle.write(group, 0, group.length, position);
        position += group.length;
        await handle.datasync();
      }
    });
  } finally {
    await handle.close();
  }
}

async function viaSink(openSink: OpenSink, dir: string, data: readonly Buffer[]): Promise<Result> {
  const named = data.map((bytes) => ({ sha256: createHash('sha256').update(bytes).digest('hex'), bytes }));
  const sink = await openSink({ dir });
  try {
    return await timed(data.length, async () => {
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < named.length) {
          const blob = named[next++]!;
          await sink.putBlob(blob.sha256, blob.bytes);
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
    });
  } finally {
    await sink.close();
  }
}

const variants: { readonly name: string; readonly openSink: OpenSink }[] = [{ name: 'sink', openSink: openFsSink }];
if (values.compare !== undefined) {
  const other = (await import(path.resolve(values.compare))) as { openFsSink: OpenSink };
  variants.push({ name: 'compare', openSink: other.openFsSink });
}

const root = await mkdtemp(path.join(tmpdir(), 'offchannel-blob-bench-'));
const report: Record<string, Record<string, Result>> = {};
const best = (a: Result | undefined, b: Result): Result => (a && a.perSecond >= b.perSecond ? a : b);
try {
  let run = 0;
  for (const size of SIZES) {
    const results: Record<string, Result> = {};
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? variants : [...variants].reverse();
      for (const variant of order.filter((each) => runs(each.name))) {
        const dir = path.join(root, `${run++}`);
        results[variant.name] = best(results[variant.name], await viaSink(variant.openSink, dir, blobs(BLOBS, size)));
      }
      const scratch = await mkdtemp(path.join(root, 'raw-'));
      if (runs('naive')) results.naive = best(results.naive, await naive(scratch, blobs(NAIVE, size)));
      if (runs('floor')) results.floor = best(results.floor, await floor(scratch, blobs(BLOBS, size)));
      await rm(scratch, { recursive: true, force: true });
    }
    report[`${size}`] = results;
  }
} finally {
  await rm(root, { recursive: true, force: true });
}

if (values.json) {
  console.log(JSON.stringify({ blobs: BLOBS, threads: process.env.UV_THREADPOOL_SIZE ?? '4', results: report }, null, 2));
} else {
  console.log(`${BLOBS} blobs per sink round (naive: ${NAIVE}), best of ${ROUNDS}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4'}`);
  for (const [size, results] of Object.entries(report)) {
    console.log(`\n${size} B blobs`);
    for (const [name, result] of Object.entries(results)) {
      const perBlob = `${result.cpuMicros.toFixed(1).padStart(6)} µs CPU (main thread ${result.mainMicros.toFixed(1)} µs) per blob`;
      console.log(`  ${name.padEnd(8)} ${Math.round(result.perSecond).toLocaleString('en-US').padStart(8)} /s   ${perBlob}`);
    }
    const { sink, naive: slow, floor: fast, compare } = results;
    if (!sink) continue;
    if (slow && fast) console.log(`  sink/naive ${(sink.perSecond / slow.perSecond).toFixed(2)}×   sink/floor ${(sink.perSecond / fast.perSecond).toFixed(2)}×`);
    if (compare) {
      const cpu = `${(sink.cpuMicros / compare.cpuMicros).toFixed(2)}× CPU per blob, ${(sink.mainMicros / compare.mainMicros).toFixed(2)}× main-thread CPU`;
      console.log(`  sink/compare ${(sink.perSecond / compare.perSecond).toFixed(2)}× rate, ${cpu}`);
    }
  }
}
