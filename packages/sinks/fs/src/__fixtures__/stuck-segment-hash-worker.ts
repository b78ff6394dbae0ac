/**
 * Test worker: a segment-hash worker whose read blocks, as a read of a stuck network file system
 * does. For each batch it reads the descriptor as a stream (the test hands it a FIFO, which a
 * positional read refuses): with nothing written, the read blocks the thread in the kernel, and
 * it answers nothing until the test writes to the FIFO.
 */
import { readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { SegmentHashRequest } from '../segment-hash-worker.ts';

const buffer = Buffer.alloc(64 * 1024);

parentPort?.on('message', (request: SegmentHashRequest) => {
  if ('length' in request) readSync(request.fd, buffer, 0, Math.min(buffer.length, request.length), null);
  else parentPort?.postMessage('digest' in request ? { id: request.id, error: 'stuck worker answered late' } : { id: request.id, discarded: true });
});
