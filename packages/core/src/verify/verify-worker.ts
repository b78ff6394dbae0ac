/**
 * Worker-thread entry for parallel verification: verifies the chunks it is sent
 * (see verify-chunk.ts) and posts the results back, transferring the leaf hashes and key fingerprints and handing
 * the chunk's buffer back for reuse.
 */
import { parentPort } from 'node:worker_threads';
import { type VerifyChunkRequest, verifyChunk } from './verify-chunk.ts';

parentPort?.on('message', (request: VerifyChunkRequest) => {
  const result = verifyChunk(request);
  const leaves = Uint8Array.from(result.leaves);
  const fingerprints = Float64Array.from(result.fingerprints);
  // The request's buffer goes back too, for the next slice (see parallel-verify.ts).
  const returned = request.bytes.buffer as ArrayBuffer;
  const tileRoots = Uint8Array.from(result.tileRoots);
  parentPort?.postMessage({ ...result, leaves, tileRoots, fingerprints, returned }, [leaves.buffer, tileRoots.buffer, fingerprints.buffer, returned]);
});
