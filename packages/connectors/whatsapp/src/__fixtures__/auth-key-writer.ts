/**
 * Test child: commits Baileys-style key transactions (a session update plus the pre-key it
 * consumed) through the auth state as fast as it can, printing each transaction's number once
 * `keys.set` resolved. The parent SIGKILLs it at a random moment.
 */
import { openStateStore } from '@offchannel/core';
import { openAuthState } from '../auth-state.ts';

const [dir, keyHex, run] = process.argv.slice(2) as [string, string, string];
const auth = await openAuthState((await openStateStore({ dir, key: Buffer.from(keyHex, 'hex') })).scope('whatsapp:alice'));
for (let n = 1; ; n++) {
  await auth.state.keys.set({
    session: { [`peer${run}-${n % 5}.0`]: Buffer.from(`session ${n}`), [`other${run}-${n}.0`]: Buffer.from(`session ${n}`) },
    'pre-key': { [`${run}-${n}`]: null },
  });
  process.stdout.write(`${n}\n`);
}
