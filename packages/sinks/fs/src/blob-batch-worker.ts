/** Worker-thread entry for blob batches: writes each batch it is sent (blob-batch.ts) and posts the outcomes back. */
import { parentPort } from 'node:worker_threads';
import { type BlobBatchRequest, writeBlobBatch } from './blob-batch.ts';

parentPort?.on('message', (request: BlobBatchRequest) => {
  parentPort?.postMessage(writeBlobBatch(request));
});
