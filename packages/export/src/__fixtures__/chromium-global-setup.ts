import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

/** Finds (or installs, from Debian's archive) headless Chromium once for the browser tests. */
export default function setup(project: TestProject): void {
  const script = path.resolve(import.meta.dirname, '../../../../scripts/chromium/ensure.sh');
  const output = execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 });
  const chromium = output.trim().split('\n').at(-1) ?? '';
  project.provide('chromium', chromium);
}

declare module 'vitest' {
  export interface ProvidedContext {
    chromium: string;
  }
}
