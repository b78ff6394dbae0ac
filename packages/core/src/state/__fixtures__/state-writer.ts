/**
 * Test child: writes ever larger versions of one state value as fast as it can and prints
 * the version number after each write resolves. The parent SIGKILLs it at a random moment.
 */
import { openStateStore } from '../secret-store.ts';

const [dir, keyHex] = process.argv.slice(2) as [string, string];
const store = await openStateStore({ dir, key: Buffer.from(keyHex, 'hex') });
const scoped = store.scope('demo:alice');
for (let version = 1; ; version++) {
  const padding = 'x'.repeat(50_000 + (version % 7) * 10_000);
  await scoped.setJson('session', { version, padding, check: padding.length });
  process.stdout.write(`${version}\n`);
}
