#!/usr/bin/env node
import { run } from './run.ts';

const controller = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => {
    controller.abort();
  });

// SIGHUP is handled only while a command subscribes (capture: reload the config); otherwise it ends the process as usual.
const onHangup = (listener: () => void): (() => void) => {
  process.on('SIGHUP', listener);
  return () => process.off('SIGHUP', listener);
};

const code = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd(), signal: controller.signal, onHangup });
process.exitCode = code;
// Exit once stdout and stderr are flushed, even if a library left a handle open (a demo peer's
// simulator keeps HTTP/2 sessions): the command's work is done and its output written.
process.stdout.write('', () => {
  process.stderr.write('', () => process.exit(code));
});
