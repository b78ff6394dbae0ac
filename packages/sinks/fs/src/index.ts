/**
 * `@offchannel/sink-fs` — the embedded default archive: a directory of append-only,
 * fsync'd segment files, content-addressed blobs and checkpoints, verifiable with
 * `sha256sum` and `jq` alone (see docs/storage-format.md).
 */
export { BLOB_WRITE_THREADS, requestBlobWriteThreads } from './blob-write-threads.ts';
export { FsSink, openFsSink } from './fs-sink.ts';
export type { FsSinkOptions, PruneRequest, PruneResult } from './fs-sink.ts';
export type { BlobPruneRequest, BlobPruneResult } from './blob-prune.ts';
export { PRUNED_FILE, PRUNED_FORMAT } from './pruned-prefix.ts';
export type { PrunedPrefix } from './pruned-prefix.ts';
export { ARCHIVE_MARKER, SEAL_FORMAT, SEQ_DIGITS, parseSegmentFileName, segmentFileName, sealFileName } from './archive-layout.ts';
export type { Seal } from './segments.ts';
