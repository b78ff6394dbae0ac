#!/usr/bin/env node
// First: sizes libuv's thread pool for blob writes before anything starts the pool.
import './thread-pool.ts';
import { writeSync } from 'node:fs';
import { run, stopsGracefully } from './run.ts';
import { needsBoundedYoung, runWithBoundedYoung } from './young-generation.ts';

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;
const argv = process.argv.slice(2);

// `export` runs again in a child with a bounded young generation (see young-generation.ts).
if (needsBoundedYoung(argv, process.execArgv, process.env)) {
  const { code, signal } = await runWithBoundedYoung();
  if (signal) process.kill(process.pid, signal);
  process.exit(code ?? 1);
}
const controller = new AbortController();

/**
 * Ends the process by `signal` itself, now: listeners are removed so the default action
 * applies. `process.exit` is not enough — it waits for a file-system call blocked in libuv's
 * thread pool (an open of a FIFO with no writer), which may never return.
 */
function terminate(signal: NodeJS.Signals): void {
  writeSync(2, `offchannel${argv[0] ? ` ${argv[0]}` : ''}: stopped by ${signal}\n`);
  for (const name of SIGNALS) process.removeAllListeners(name);
  process.kill(process.pid, signal);
}

// A command that handles signals (capture, link, reconcile, copy, deliver) is asked to stop on the first
// one and stopped at once on the second; every other command is stopped at once.
for (const signal of SIGNALS) {
  process.on(signal, () => {
    if (stopsGracefully(argv[0]) && !controller.signal.aborted) controller.abort();
    else terminate(signal);
  });
}

// SIGHUP is handled only while a command subscribes (capture: reload the config); otherwise it ends the process as usual.
const onHangup = (listener: () => void): (() => void) => {
  process.on('SIGHUP', listener);
  return () => process.off('SIGHUP', listener);
};

const code = await run(argv, { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd(), signal: controller.signal, onHangup });
process.exitCode = code;
// Exit once stdout and stderr are flushed, even if a library left a handle open (a demo peer's
// simulator keeps HTTP/2 sessions): the command's work is done and its output written.
process.stdout.write('', () => {
  process.stderr.write('', () => process.exit(code));
});
