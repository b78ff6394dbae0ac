/** Test helper: runs the CLI in-process and captures what it writes. Not part of the package API. */
import { run } from '../run.ts';

export async function runCli(argv: string[], cwd = process.cwd()): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(argv, {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: {},
    cwd,
    signal: new AbortController().signal,
  });
  return { code, stdout, stderr };
}
