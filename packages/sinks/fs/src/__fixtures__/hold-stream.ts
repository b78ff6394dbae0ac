/** Test child: opens an fs archive for writing, takes one stream's writer lock, and waits. */
import { openFsSink } from '@offchannel/sink-fs';

const [dir, stream] = process.argv.slice(2) as [string, string];
const sink = await openFsSink({ dir });
await sink.head(stream);
process.stdout.write('holding\n');
// Keep the sink reachable: its writer lock must not be closed by garbage collection while held.
setInterval(() => sink.dir, 60_000);
