/**
 * Imported first by bin.ts, so it runs before anything uses libuv's thread pool: asks for the
 * pool the file-system archive's blob writes need (16 threads unless `UV_THREADPOOL_SIZE` is
 * set; see `requestBlobWriteThreads` in @offchannel/sink-fs).
 */
import { requestBlobWriteThreads } from '@offchannel/sink-fs';

requestBlobWriteThreads();
