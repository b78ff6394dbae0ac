import { expect, it } from 'vitest';
import { BLOB_WRITE_THREADS, requestBlobWriteThreads } from './blob-write-threads.ts';

it('asks for the blob-write pool when UV_THREADPOOL_SIZE is unset or empty', () => {
  for (const env of [{}, { UV_THREADPOOL_SIZE: '' }, { UV_THREADPOOL_SIZE: '  ' }] as NodeJS.ProcessEnv[]) {
    expect(requestBlobWriteThreads(env)).toBe(BLOB_WRITE_THREADS);
    expect(env.UV_THREADPOOL_SIZE).toBe(String(BLOB_WRITE_THREADS));
  }
  expect(BLOB_WRITE_THREADS).toBeGreaterThan(4); // libuv's default, which allowed 4 blob fsyncs at once
});

it("keeps an operator's UV_THREADPOOL_SIZE, larger or smaller", () => {
  for (const size of ['2', '4', '64']) {
    const env: NodeJS.ProcessEnv = { UV_THREADPOOL_SIZE: size };
    expect(requestBlobWriteThreads(env)).toBe(Number(size));
    expect(env.UV_THREADPOOL_SIZE).toBe(size);
  }
});
