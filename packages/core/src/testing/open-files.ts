import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * Paths under `root` this process holds open (Linux: `/proc/self/fd`), for tests that a closed
 * or failed component leaves no file behind open. Elsewhere there is no /proc to ask and the
 * answer is always empty, so such a check is vacuous off Linux.
 */
export async function openFilesUnder(root: string): Promise<string[]> {
  const names = process.platform === 'linux' ? await readdir('/proc/self/fd') : [];
  const targets = await Promise.all(names.map((name) => readlink(path.join('/proc/self/fd', name)).catch(() => '')));
  return targets.filter((target) => target.startsWith(`${root}/`));
}
