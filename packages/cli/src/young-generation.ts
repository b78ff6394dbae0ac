/**
 * `offchannel export` runs with a bounded young generation.
 *
 * Node 24 lets V8's young generation grow to 128 MiB (two 64 MiB semi-spaces) in a process that
 * allocates many short-lived objects, as an export writing millions of events does. That memory
 * is committed and counted in the process's RSS, and it is what held an export of 1,000,000
 * records above 256 MiB (docs/export.md). The size can only be set when the process starts, so
 * `bin.ts` runs the command again in a child process with `--max-semi-space-size` (unless the
 * operator already set it, in `execArgv` or `NODE_OPTIONS`), passing its arguments, standard
 * streams and environment through, forwarding SIGINT/SIGTERM, and exiting as the child did.
 */
import { spawn } from 'node:child_process';

/** Semi-space size (MiB) for commands that read a whole archive: a 32 MiB young generation. */
export const EXPORT_SEMI_SPACE_MB = 16;

/** The V8 flag the export runs with. */
export const EXPORT_V8_FLAG = `--max-semi-space-size=${String(EXPORT_SEMI_SPACE_MB)}`;

const COMMANDS = new Set(['export']);

/** True when `argv` is a command that should run with a bounded young generation and does not yet. */
export function needsBoundedYoung(argv: readonly string[], execArgv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  if (!COMMANDS.has(argv[0] ?? '')) return false;
  const set = (flags: readonly string[]): boolean => flags.some((flag) => flag.startsWith('--max-semi-space-size'));
  return !set(execArgv) && !set((env.NODE_OPTIONS ?? '').split(/\s+/));
}

/** Runs this command again with {@link EXPORT_V8_FLAG}; resolves with the exit code (or signal) to end with. */
export function runWithBoundedYoung(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const script = process.argv[1] as string;
  const child = spawn(process.execPath, [...process.execArgv, EXPORT_V8_FLAG, script, ...process.argv.slice(2)], { stdio: 'inherit', env: process.env });
  const forward = (signal: NodeJS.Signals) => () => {
    child.kill(signal);
  };
  const listeners = (['SIGINT', 'SIGTERM'] as const).map((signal) => [signal, forward(signal)] as const);
  for (const [signal, listener] of listeners) process.on(signal, listener);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      for (const [name, listener] of listeners) process.off(name, listener);
      resolve({ code, signal });
    });
  });
}
