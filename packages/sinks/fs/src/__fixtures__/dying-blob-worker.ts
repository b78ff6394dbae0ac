/** Test worker: writes and links its first batch like the real one, then dies without answering. */
import { parentPort } from 'node:worker_threads';
import { type BlobBatchRequest, writeBlobBatch } from '../blob-batch.ts';

parentPort?.on('message', (request: BlobBatchRequest) => {
  writeBlobBatch(request);
  process.exit(1); // in a worker: ends this thread only
});
