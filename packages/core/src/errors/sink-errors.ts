import { OffchannelError } from './offchannel-error.ts';
import type { StreamHead } from '../sink/sink.ts';

/**
 * Compare-and-append failed: the stream's head is not what the writer expected, or another
 * writer holds the stream. Nothing from the batch was written. A second process capturing the
 * same account gets this error instead of forking the chain; do not retry blindly — find the
 * other writer.
 */
export class SinkConflictError extends OffchannelError {
  readonly stream: string;
  /** The head the writer based its batch on. */
  readonly expected: StreamHead | undefined;
  /** The head the sink holds, when known. */
  readonly actual: StreamHead | undefined;

  constructor(stream: string, message: string, heads?: { expected?: StreamHead; actual?: StreamHead }) {
    super('SINK_CONFLICT', `stream ${stream}: ${message}`, { logSafe: true });
    this.stream = stream;
    this.expected = heads?.expected;
    this.actual = heads?.actual;
  }
}

/** A blob's bytes do not hash to the name it is stored under. Nothing was written. */
export class BlobMismatchError extends OffchannelError {
  readonly sha256: string;

  constructor(sha256: string, problem: string) {
    super('BLOB_MISMATCH', `blob ${sha256}: ${problem}`, { logSafe: true });
    this.sha256 = sha256;
  }
}

/** A batch handed to a sink is malformed (empty, oversize, a record containing a newline…). */
export class InvalidBatchError extends OffchannelError {
  constructor(problem: string) {
    super('INVALID_BATCH', `invalid batch: ${problem}. This is a bug in the writer; nothing was written.`, { logSafe: true });
  }
}

/** The sink (or recorder) was closed; open a new one. */
export class ClosedError extends OffchannelError {
  constructor(what: string) {
    super('CLOSED', `${what} is closed; open a new one to continue.`, { logSafe: true });
  }
}

/** A sink does not declare the guarantees the recorder was configured to require. */
export class SinkUnsuitableError extends OffchannelError {
  constructor(problem: string) {
    super('SINK_UNSUITABLE', problem);
  }
}

/** Stored data is damaged in a way the sink cannot repair without losing acknowledged bytes. */
export class ArchiveCorruptError extends OffchannelError {
  readonly stream: string | undefined;
  readonly seq: number | undefined;

  constructor(problem: string, where?: { stream?: string; seq?: number }) {
    super('ARCHIVE_CORRUPT', `${problem}. Run \`offchannel verify <archive>\` for a full report; nothing was changed.`, { logSafe: true });
    this.stream = where?.stream;
    this.seq = where?.seq;
  }
}

/**
 * An archive path that should hold a regular file holds a FIFO, device, socket, directory or
 * symbolic link. Such a file is never opened (a FIFO would block the reader forever, a link
 * could lead outside the archive). Nothing was read or changed.
 */
export class NotRegularFileError extends OffchannelError {
  /** The path inside the archive, e.g. `blobs/sha256/<hex>`. */
  readonly file: string;

  constructor(file: string, found: string) {
    super('FILE_NOT_REGULAR', `${file} is ${found}, not a regular file; an archive holds only regular files and directories. Move it aside and restore the file from a copy, then verify again.`, { logSafe: true });
    this.file = file;
  }
}

/** A write was attempted on a sink opened read-only. */
export class ReadOnlySinkError extends OffchannelError {
  constructor(kind: string) {
    super('SINK_READ_ONLY', `the ${kind} sink was opened read-only; open it for writing to store data.`, { logSafe: true });
  }
}

/**
 * A remote sink could not be reached or answered with a server error (network refused, timeout,
 * 5xx, throttling). Nothing was acknowledged: a write that failed this way resolves nothing, and
 * the caller retries later (the recorder rejects the captures, so connectors do not acknowledge
 * upstream; the forwarder backs off and resumes).
 */
export class SinkUnavailableError extends OffchannelError {
  constructor(what: string, options?: { cause?: unknown }) {
    super('SINK_UNAVAILABLE', `${what}. Nothing was acknowledged; retry when the store is reachable.`, { ...options, disposition: 'retryable' });
  }
}

/**
 * Records asked for were pruned from a spool after every forward target held them
 * (see `PrunableSpool`). Read them from a target (the archive of record) instead.
 */
export class RecordsPrunedError extends OffchannelError {
  readonly stream: string;
  /** The last pruned seq: records 1 to this one are no longer in the spool. */
  readonly prunedThrough: number;

  constructor(stream: string, prunedThrough: number) {
    super('RECORDS_PRUNED', `stream ${stream}: records 1–${prunedThrough} were pruned from this spool after every forward target held them; read them from the archive of record (e.g. offchannel verify s3://…).`, { logSafe: true });
    this.stream = stream;
    this.prunedThrough = prunedThrough;
  }
}
