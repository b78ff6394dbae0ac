/**
 * Test worker: a batch naming a file that starts with `dead` is written and linked like the real
 * worker's, then the thread dies without answering; any other batch is answered after 300 ms
 * (so it is still on the disk when another worker dies).
 */
import path from 'node:path';
import { parentPort } from 'node:worker_threads';
import { type BlobBatchRequest, writeBlobBatch } from '../blob-batch.ts';

parentPort?.on('message', (request: BlobBatchRequest) => {
  const result = writeBlobBatch(request);
  if (request.targets.some((target) => path.basename(target).startsWith('dead'))) process.exit(1); // this thread only
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
  parentPort?.postMessage(result);
});
