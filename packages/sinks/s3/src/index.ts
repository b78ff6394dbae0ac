/**
 * `@offchannel/sink-s3` — the S3 Object Lock sink (AWS S3, Ceph RGW and other S3 stores with
 * Object Lock): WORM storage in the SEC 17a-4(f) sense, the same layout as the file-system sink,
 * and the Object Lock probe behind `offchannel sink-check`.
 */
export { S3Sink, openS3Sink } from './s3-sink.ts';
export type { S3SinkOptions } from './s3-sink.ts';
export type { S3ClientOptions } from './s3-client.ts';
export { S3SinkError } from './s3-errors.ts';
export type { S3SinkErrorCode } from './s3-errors.ts';
export { DEFAULT_RETENTION, RetentionPolicy, addPeriod, parseRetentionPeriod } from './retention.ts';
export type { ObjectClass, RetentionOptions, RetentionPeriod } from './retention.ts';
export { S3Layout, parseS3Url } from './s3-layout.ts';
export type { LegalHoldTarget } from './legal-hold.ts';
export { PROBE_FOLDER, probeObjectLock } from './object-lock-probe.ts';
export type { ProbeCheck, ProbeOptions, ProbeReport } from './object-lock-probe.ts';
