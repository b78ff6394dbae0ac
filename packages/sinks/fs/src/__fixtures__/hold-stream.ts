/** Test child: opens an fs archive for writing, takes one stream's writer lock, and waits. */
import { openFsSink } from '@offchannel/sink-fs';

const [dir, stream] = process.argv.slice(2) as [string, string];
const sink = await openFsSink({ dir });
await sink.head(stream);
process.stdout.write('holding\n');
setInterval(() => undefined, 60_000);
