/**
 * Test child for thread-pool.test.ts: runs the CLI (`offchannel --version`) in this process,
 * then blocks six of libuv's thread-pool threads on FIFO opens that no writer will ever serve,
 * and prints `free` if a seventh file-system call still runs (the pool has more than six
 * threads) or `blocked` if it does not within 10 s. The parent kills it either way.
 */
import { open, stat, writeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const [bin, dir] = process.argv.slice(2) as [string, string];
process.argv.splice(2, process.argv.length, '--version');
// The CLI exits once its command is done; the probe runs after it, in the same process.
process.exit = (() => undefined) as typeof process.exit;
await import(bin);
for (let index = 0; index < 6; index++) {
  const fifo = path.join(dir, `fifo-${index}`);
  execFileSync('mkfifo', [fifo]);
  open(fifo, 'r', () => undefined);
}
const report = (text: string): void => {
  writeSync(1, `${text}\n`);
  process.kill(process.pid, 'SIGKILL'); // the blocked opens never return: end without waiting for them
};
const timer = setTimeout(() => {
  report('blocked');
}, 10_000);
stat(dir, () => {
  clearTimeout(timer);
  report('free');
});
