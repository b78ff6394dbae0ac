import { OffchannelError } from '@offchannel/core';

/**
 * An `attributedBody` blob is not a typedstream this decoder can read: truncated, malformed,
 * hostile, or using a feature iMessage never writes. `offset` is the byte where reading
 * stopped. The message names the problem, never the content. The record for such a row keeps
 * `text` absent and carries the blob as raw evidence.
 */
export class TypedstreamError extends OffchannelError {
  /** Byte offset in the blob where reading stopped; absent when the stream read but its content is not an attributed string. */
  readonly offset: number | undefined;

  constructor(code: 'TYPEDSTREAM_TRUNCATED' | 'TYPEDSTREAM_INVALID', problem: string, offset?: number) {
    const where = offset === undefined ? '' : ` at byte ${offset}`;
    super(code, `attributedBody typedstream ${code === 'TYPEDSTREAM_TRUNCATED' ? 'is truncated' : 'is invalid'}${where}: ${problem}; the record keeps the raw blob`);
    this.offset = offset;
  }
}

/** A binary property list (`message_summary_info`) is truncated, malformed or hostile. */
export class BplistError extends OffchannelError {
  constructor(problem: string) {
    super('BPLIST_INVALID', `binary plist is invalid: ${problem}; the record keeps the raw blob`);
  }
}

/**
 * chat.db cannot be opened or read: `CHAT_DB_UNAVAILABLE` (wrong path, missing Full Disk
 * Access) or `CHAT_DB_UNSUPPORTED` (not a Messages database).
 */
export class ChatDbError extends OffchannelError {}
