import type { ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

/** A child process whose stdout is a pipe. */
export type LineChild = Pick<ChildProcess, 'exitCode' | 'signalCode' | 'once'> & { readonly stdout: Readable };

const readers = new WeakMap<LineChild, { lines: string[]; wake?: () => void }>();

/**
 * The child's next line of output (its stdout is read once, line by line, from the start), or
 * `exited <code or signal>` once it has exited with no line left. For tests that drive child
 * processes step by step (lock holders, contenders released at one instant).
 */
export async function nextLine(child: LineChild): Promise<string> {
  let reader = readers.get(child);
  if (reader === undefined) {
    const created: { lines: string[]; wake?: () => void; text: string } = { lines: [], text: '' };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      created.text += chunk;
      const parts = created.text.split('\n');
      created.text = parts.pop() ?? '';
      created.lines.push(...parts);
      created.wake?.();
    });
    child.once('exit', () => created.wake?.());
    readers.set(child, created);
    reader = created;
  }
  while (reader.lines.length === 0) {
    if (child.exitCode !== null || child.signalCode !== null) return `exited ${child.exitCode ?? child.signalCode}`;
    await new Promise<void>((resolve) => {
      reader.wake = resolve;
    });
  }
  return reader.lines.shift() as string;
}
