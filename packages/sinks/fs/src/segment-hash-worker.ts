/**
 * Worker-thread entry for {@link SegmentHasher} (segment-hasher.ts): keeps the running SHA-256
 * of each active segment it is told about, in the order the bytes were sent, and answers a
 * digest request with the hex digest (then forgets the segment, as it does on a discard).
 */
import { type Hash, createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

/** What the main thread sends: bytes to add to segment `id`, or a request for its digest. */
export type SegmentHashRequest =
  | { readonly id: number; readonly bytes: Uint8Array }
  | { readonly id: number; readonly digest: true }
  | { readonly id: number; readonly discard: true };

const hashes = new Map<number, Hash>();

parentPort?.on('message', (request: SegmentHashRequest) => {
  if ('discard' in request) {
    hashes.delete(request.id);
    return;
  }
  let hash = hashes.get(request.id);
  if (!hash) hashes.set(request.id, (hash = createHash('sha256')));
  if ('bytes' in request) {
    hash.update(request.bytes);
    return;
  }
  hashes.delete(request.id);
  parentPort?.postMessage({ id: request.id, hex: hash.digest('hex') });
});
