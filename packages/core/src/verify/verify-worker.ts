/**
 * Worker-thread entry for parallel verification: verifies the chunks it is sent
 * (see verify-chunk.ts) and posts the results back, transferring the leaf hashes.
 */
import { parentPort } from 'node:worker_threads';
import { type VerifyChunkRequest, verifyChunk } from './verify-chunk.ts';

parentPort?.on('message', (request: VerifyChunkRequest) => {
  const result = verifyChunk(request);
  const leaves = Uint8Array.from(result.leaves);
  parentPort?.postMessage({ ...result, leaves }, [leaves.buffer]);
});
