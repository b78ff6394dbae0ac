/** Test child: stores `count` distinct blobs at once (run under a low descriptor limit); prints how many were created. */
import { createHash, randomBytes } from 'node:crypto';
import { openFsSink } from '@offchannel/sink-fs';

const [dir, count] = process.argv.slice(2) as [string, string];
const sink = await openFsSink({ dir });
const blobs = Array.from({ length: Number(count) }, () => randomBytes(512));
const results = await Promise.all(blobs.map((bytes) => sink.putBlob(createHash('sha256').update(bytes).digest('hex'), bytes)));
await sink.close();
process.stdout.write(`${results.filter((result) => result.created).length}\n`);
