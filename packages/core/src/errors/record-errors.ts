import { OffchannelError } from './offchannel-error.ts';

/** A record (or capture input) does not match schema v1. Nothing was written. */
export class InvalidRecordError extends OffchannelError {
  /** Dotted path of the offending field, e.g. `record.sender.id`. */
  readonly field: string;

  constructor(field: string, problem: string) {
    super('INVALID_RECORD', `${field} ${problem}. The record was not written; fix the connector's mapping for this field.`, { disposition: 'rejected-input' });
    this.field = field;
  }
}

/** A record's canonical bytes exceed {@link MAX_RECORD_BYTES}. Nothing was written. */
export class RecordTooLargeError extends OffchannelError {
  readonly size: number;
  readonly limit: number;

  constructor(size: number, limit: number) {
    super(
      'RECORD_TOO_LARGE',
      `record is ${size} bytes of canonical JSON; the limit is ${limit}. Move large content into blobs (attachments, raw) — long text is moved automatically.`,
      { disposition: 'rejected-input' },
    );
    this.size = size;
    this.limit = limit;
  }
}

/** Bytes are not the RFC 8785 canonical form of the JSON they contain. */
export class NonCanonicalJsonError extends OffchannelError {
  constructor(reason: string) {
    super('NON_CANONICAL_JSON', `not RFC 8785 canonical JSON: ${reason}.`, { disposition: 'rejected-input' });
  }
}

/** A stream (or channel/account) name is not allowed. Nothing was written. */
export class InvalidStreamNameError extends OffchannelError {
  constructor(problem: string) {
    super(
      'INVALID_STREAM_NAME',
      `invalid stream name: ${problem}. A stream is "<channel>:<account>"; channel is [a-z][a-z0-9-]*, account is [A-Za-z0-9+][A-Za-z0-9._@+=-]* without "..".`,
    );
  }
}
