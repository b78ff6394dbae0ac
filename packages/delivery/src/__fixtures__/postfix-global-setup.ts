import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

/** Finds (or installs, from Debian's archive) Postfix once for the delivery tests. */
export default function setup(project: TestProject): void {
  const script = path.resolve(import.meta.dirname, '../../../../scripts/postfix/ensure.sh');
  const output = execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 });
  project.provide('postfix', output.trim().split('\n').at(-1) ?? '');
}

declare module 'vitest' {
  export interface ProvidedContext {
    postfix: string;
  }
}
