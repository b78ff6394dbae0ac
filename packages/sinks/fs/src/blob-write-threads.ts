/**
 * Every blob is its own fsync'd file, and every file-system call of the sink runs on libuv's
 * thread pool, whose threads each wait for the disk one call at a time. The pool has 4 threads
 * unless `UV_THREADPOOL_SIZE` says otherwise, so at most 4 blobs (fewer while a segment append or
 * the state store also waits) are being made durable at once, however many the recorder hands
 * the sink — and a disk finishes many concurrent fsyncs in about the time of one (a journal
 * commit serves them all). On the 2-core ext4 bench host, 600-byte files with fdatasync: 4 at a
 * time 5,400/s, 16 at a time 9,700/s. See docs/storage-format.md, "Blob writes".
 */

/** Thread-pool threads to ask for: enough concurrent blob fsyncs to approach the disk's rate. */
export const BLOB_WRITE_THREADS = 16;

/**
 * Asks for a thread pool of {@link BLOB_WRITE_THREADS} threads by setting `UV_THREADPOOL_SIZE`,
 * unless it is already set (an operator's choice is kept). libuv reads it once, when the pool
 * first starts: call this first thing in a program's entry module, before any file, DNS, zlib
 * or crypto call that uses the pool — later it changes nothing. Returns the size in effect for
 * a pool started from now on. The `offchannel` CLI calls it at start.
 */
export function requestBlobWriteThreads(env: NodeJS.ProcessEnv = process.env): number {
  const set = env.UV_THREADPOOL_SIZE;
  if (set !== undefined && set.trim() !== '') return Number(set);
  env.UV_THREADPOOL_SIZE = String(BLOB_WRITE_THREADS);
  return BLOB_WRITE_THREADS;
}
