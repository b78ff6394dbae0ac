/**
 * Memory per connected account (issue "One connector runtime", deliver 6), the part every
 * channel's bench shares: each count of accounts runs in a fresh process (`--child <count>`),
 * which connects them, lets them capture, then settles (GC) and reports its RSS; the parent
 * prints per account = (RSS(N) − RSS(1)) / (N − 1) and how many fit a 24 GiB host at half its
 * memory.
 */
import { execFileSync } from 'node:child_process';

export interface RssRun {
  readonly accounts: number;
  readonly rss: number;
  readonly heapUsed: number;
}

/** In the child: a few GCs (needs --expose-gc), then this process's memory as one JSON line on stdout. */
export async function reportSettledMemory(accounts: number): Promise<void> {
  for (let i = 0; i < 3; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const { rss, heapUsed } = process.memoryUsage();
  process.stdout.write(JSON.stringify({ accounts, rss, heapUsed }));
}

/** In the parent: runs `script --child <n> …args` for each count in a fresh process, prints (or returns as JSON) the per-account figure. */
export function measurePerAccount(options: { readonly script: string; readonly counts: string; readonly args: readonly string[]; readonly title: string; readonly json: boolean; readonly extra?: Record<string, unknown> }): void {
  const runs = options.counts.split(',').map(Number).map((accounts) => {
    const out = execFileSync(process.execPath, ['--expose-gc', '--conditions=@offchannel/source', options.script, '--child', String(accounts), ...options.args], { encoding: 'utf8', maxBuffer: 1 << 20 });
    return JSON.parse(out) as RssRun;
  });
  const first = runs[0];
  const last = runs.at(-1);
  const mib = (bytes: number) => bytes / 1024 / 1024;
  const perAccount = first && last && last.accounts > first.accounts ? (last.rss - first.rss) / (last.accounts - first.accounts) : Number.NaN;
  const result = { node: process.version, ...options.extra, runs, perAccountMiB: Number(mib(perAccount).toFixed(2)), accountsPer24GiBAt50Percent: Math.floor((24 * 1024 * 0.5) / mib(perAccount)) };
  if (options.json) {
    console.log(JSON.stringify(result));
    return;
  }
  console.log(`${options.title}, ${result.node}`);
  for (const run of runs) console.log(`  ${String(run.accounts).padStart(3)} account(s): RSS ${mib(run.rss).toFixed(1)} MiB, heap ${mib(run.heapUsed).toFixed(1)} MiB`);
  console.log(`  per account: ${result.perAccountMiB} MiB RSS → about ${result.accountsPer24GiBAt50Percent.toLocaleString('en-US')} accounts on a 24 GiB host at half its memory`);
}
