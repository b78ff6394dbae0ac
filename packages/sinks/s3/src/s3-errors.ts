/**
 * Errors of the S3 sink, and the mapping from AWS SDK errors to them. Every error is an
 * `OffchannelError` with a stable code and a message that says what to do next; none carries
 * credentials or object content.
 */
import { OffchannelError, SinkUnavailableError } from '@offchannel/core';

/** Codes of {@link S3SinkError}. */
export type S3SinkErrorCode =
  /** The credentials were refused or none were found. */
  | 'S3_ACCESS_DENIED'
  /** The bucket does not exist. */
  | 'S3_NO_SUCH_BUCKET'
  /** The bucket does not have Object Lock enabled, or versioning is not enabled. */
  | 'S3_OBJECT_LOCK_DISABLED'
  /** The sink's configuration is invalid (bucket name, URL, retention, region). */
  | 'S3_CONFIG_INVALID'
  /** A legal hold named a record the stream does not have. */
  | 'S3_NO_SUCH_RECORD'
  /** The store refused a request for another reason (named in the message). */
  | 'S3_REQUEST_FAILED';

export class S3SinkError extends OffchannelError {
  declare readonly code: S3SinkErrorCode;
  /** HTTP status of the refusing response, when there was one. */
  readonly status: number | undefined;

  constructor(code: S3SinkErrorCode, message: string, options?: { cause?: unknown; status?: number }) {
    super(code, message, options);
    this.status = options?.status;
  }
}

/** What the SDK puts on its errors. */
interface SdkError {
  readonly name?: string;
  readonly code?: string;
  readonly message?: string;
  readonly $metadata?: { readonly httpStatusCode?: number };
  readonly $retryable?: unknown;
}

const CREDENTIAL_ERRORS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired', 'CredentialsProviderError', 'InvalidClientTokenId', 'AllAccessDisabled', 'AccountProblem']);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'UND_ERR_SOCKET']);
const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout', 'RequestTimeTooSkewed', 'ServiceUnavailable', 'InternalError', 'TimeoutError', 'RequestTimeoutException']);

/** HTTP status of an SDK error, if the server answered. */
export function statusOf(error: unknown): number | undefined {
  return (error as SdkError | undefined)?.$metadata?.httpStatusCode;
}

/** The SDK error's name (the S3 error code, e.g. `NoSuchBucket`). */
export function nameOf(error: unknown): string {
  const { name, code } = (error ?? {}) as SdkError;
  return name && name !== 'Error' ? name : (code ?? 'Error');
}

/** True when the request may or may not have reached the store: no answer, or a server error. */
export function isTransient(error: unknown): boolean {
  // Already mapped (by the object store): only SINK_UNAVAILABLE is transient.
  if (OffchannelError.isInstance(error)) return error.code === 'SINK_UNAVAILABLE';
  const status = statusOf(error);
  const { code } = (error ?? {}) as SdkError;
  if (CREDENTIAL_ERRORS.has(nameOf(error))) return false; // no credentials found: nothing was sent
  if (status === undefined) return true;
  return status >= 500 || status === 429 || THROTTLING.has(nameOf(error)) || (code !== undefined && NETWORK_CODES.has(code));
}

/** True for a 412 Precondition Failed (or 409 ConditionalRequestConflict) answer to a conditional write. */
export function isPreconditionFailed(error: unknown): boolean {
  const status = statusOf(error);
  return status === 412 || (status === 409 && nameOf(error) === 'ConditionalRequestConflict');
}

/**
 * Maps an SDK error to an offchannel error naming `action` and the bucket. Network problems and
 * server errors become `SINK_UNAVAILABLE`; refused credentials `S3_ACCESS_DENIED`; a missing
 * bucket `S3_NO_SUCH_BUCKET`.
 */
export function toSinkError(error: unknown, action: string, bucket: string): OffchannelError {
  if (OffchannelError.isInstance(error)) return error;
  const name = nameOf(error);
  const status = statusOf(error);
  const code = (error as SdkError | undefined)?.code;
  if (name === 'NoSuchBucket' || (status === 404 && name === 'NotFound' && action.startsWith('open'))) {
    return new S3SinkError('S3_NO_SUCH_BUCKET', `${action}: bucket "${bucket}" does not exist. Create it with Object Lock enabled (aws s3api create-bucket --bucket ${bucket} --object-lock-enabled-for-bucket), or check the bucket name and endpoint.`, { cause: error, ...(status === undefined ? {} : { status }) });
  }
  if (CREDENTIAL_ERRORS.has(name) || status === 403) {
    return new S3SinkError(
      'S3_ACCESS_DENIED',
      `${action}: the store refused the credentials (${name}). Credentials come only from the AWS SDK's standard chain — AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/credentials, SSO, web identity, container or instance roles; check which one is in effect and that it may ${action.replace(/^open: /, '')} in bucket "${bucket}".`,
      { cause: error, ...(status === undefined ? {} : { status }) },
    );
  }
  if (name === 'Region is missing' || /region is missing/i.test((error as Error | undefined)?.message ?? '')) {
    return new S3SinkError('S3_CONFIG_INVALID', `${action}: no AWS region is configured; set AWS_REGION (or the sink's region option / --region).`, { cause: error });
  }
  if (isTransient(error)) {
    const why = status === undefined ? (code ?? name) : `HTTP ${status} ${name}`;
    return new SinkUnavailableError(`${action}: the S3 store did not answer (${why})`, { cause: error });
  }
  return new S3SinkError('S3_REQUEST_FAILED', `${action}: the store refused the request (HTTP ${status ?? '?'} ${name}).`, { cause: error, ...(status === undefined ? {} : { status }) });
}
