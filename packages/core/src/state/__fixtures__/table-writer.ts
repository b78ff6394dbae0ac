/**
 * Test child: writes batches of rows to one state table as fast as it can and prints the batch
 * number after each write resolves (durable). Batch n holds rows `b<n>-0` … `b<n>-<size-1>`.
 * The parent SIGKILLs it at a random moment.
 */
import { openStateStore } from '../secret-store.ts';

const [dir, keyHex, size] = process.argv.slice(2) as [string, string, string];
const store = await openStateStore({ dir, key: Buffer.from(keyHex, 'hex') });
const table = store.scope('whatsapp:alice').table('messages');
for (let batch = 1; ; batch++) {
  const rows: [string, Uint8Array][] = [];
  for (let i = 0; i < Number(size); i++) rows.push([`b${batch}-${i}`, Buffer.from(JSON.stringify({ batch, i, pad: 'x'.repeat(200) }))]);
  await table.write(rows);
  process.stdout.write(`${batch}\n`);
}
