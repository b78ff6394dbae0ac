/**
 * `@offchannel/core` — the record schema, canonical JSON and hash chain, the Sink and
 * Connector contracts, the Recorder, the secret state store, and archive verification.
 */

// Errors
export { OffchannelError } from './errors/offchannel-error.ts';
export type { ErrorDisposition } from './errors/offchannel-error.ts';
export { InvalidRecordError, InvalidStreamNameError, NonCanonicalJsonError, RecordTooLargeError } from './errors/record-errors.ts';
export {
  ArchiveCorruptError,
  BlobMismatchError,
  ClosedError,
  InvalidBatchError,
  NotRegularFileError,
  ReadOnlySinkError,
  RecordsPrunedError,
  SinkConflictError,
  SinkUnavailableError,
  SinkUnsuitableError,
} from './errors/sink-errors.ts';
export { StateStoreError } from './errors/state-errors.ts';
export { ConfigError } from './errors/config-error.ts';
export { MAX_SECRET_FILE_BYTES, configObject, configSecret, optionalConfigInteger } from './errors/config-readers.ts';
export { readSmallFile, readSmallFileSync } from './fs/read-small-file.ts';
export type { SmallFileOptions } from './fs/read-small-file.ts';
export type { ConfigSecretContext, ConfigSecretShape } from './errors/config-readers.ts';

// Canonical JSON and hashing
export { MAX_JSON_DEPTH, canonicalBytes, canonicalize, parseCanonical } from './json/canonical-json.ts';
export type { JsonValue } from './json/canonical-json.ts';
export { ZERO_HASH, isSha256Hex, sha256Hex } from './hash/sha256.ts';
export { knownBlobSha256 } from './hash/hashed-blob.ts';

// Record schema v1
export { COMMON_FIELDS, KIND_RULES, MAX_RECORD_BYTES, RECORD_KINDS, RECORD_VERSION, TEXT_INLINE_MAX_BYTES } from './record/record.ts';
export type {
  ArchiveRecord,
  Attachment,
  BlobRef,
  ConversationRef,
  DeletionDetail,
  GapDetail,
  KindRule,
  MembershipDetail,
  MetaValue,
  NativeRef,
  Party,
  ProblemDetail,
  RawRef,
  ReactionDetail,
  ReceiptDetail,
  RecordKind,
  SourceInfo,
  StoredAttachment,
  SystemDetail,
  UnavailableAttachment,
} from './record/record.ts';
export { MAX_SHORT_STRING, validateRecord } from './record/validate-record.ts';
export { decodeRecord, encodeRecord } from './record/encode-record.ts';
export type { EncodedRecord } from './record/encode-record.ts';
export { assertAccountName, assertChannelName, assertStreamName, isStreamName, parseStreamName, streamName } from './record/stream-name.ts';
export type { AttachmentInput, BlobInput, CaptureInput, CaptureResult, RawInput } from './record/capture-input.ts';

// Sink contract
export { SINK_SPEC_VERSION } from './sink/sink.ts';
export type { AppendBatch, AuditFinding, BlobInfo, CheckpointFile, CheckpointRange, Sink, SinkGuarantees, StoredRecord, StreamHead } from './sink/sink.ts';
export { MAX_BATCH_RECORDS, assertAppendBatch, batchLines, assertAttestationId, assertBlobName, assertCheckpointKey, assertTileKey, checkpointRangeAfter } from './sink/check-inputs.ts';

// Merkle log, tiles, proofs
export { EMPTY_ROOT, HASH_BYTES, leafHash, nodeHash, sameHash } from './merkle/merkle-hash.ts';
export { CompactRange, MerkleLevels, consistencyProof, inclusionProof, rangeHash, treeRoot } from './merkle/merkle-proofs.ts';
export type { SubtreeSource } from './merkle/merkle-proofs.ts';
export { TILE_HEIGHT, TILE_WIDTH, TileBuilder, TileSource, assertTileId, perfectRoot, tileCounts, tilePath } from './merkle/tiles.ts';
export type { Tile, TileId } from './merkle/tiles.ts';
export { verifyConsistency, verifyInclusion } from './merkle/verify-proofs.ts';

// Signed notes, keys, checkpoints
export { NoteError } from './errors/note-errors.ts';
export { WitnessError } from './errors/witness-errors.ts';
export { MAX_ADD_CHECKPOINT_BYTES, MAX_PROOF_LINES, formatAddCheckpoint, parseAddCheckpoint, parseConflictSize } from './witness/add-checkpoint.ts';
export type { AddCheckpointRequest } from './witness/add-checkpoint.ts';
export { WitnessClient, assertWitnessUrl, cosignedFile } from './witness/witness-client.ts';
export { ARCHIVE_LOG, archiveLogName, assertLogName, isArchiveLogName } from './sink/log-name.ts';
export { ArchiveLog, archiveLogOrigin, readLeaves } from './witness/archive-log.ts';
export type { ArchiveLogOptions } from './witness/archive-log.ts';
export { openArchiveLogIndex } from './witness/archive-log-index.ts';
export type { ArchiveLogIndex, ArchiveLogIndexHead } from './witness/archive-log-index.ts';
export type { WitnessClientOptions, WitnessEndpoint, WitnessedCheckpoint } from './witness/witness-client.ts';
export { ED25519_NOTE_TYPE, assertKeyName, ed25519KeyFromSeed, ed25519KeyId, generateEd25519NoteKey, parseSignerKey, parseVerifierKey } from './note/ed25519-key.ts';
export type { Ed25519NoteKey, NoteSigner, NoteVerifier } from './note/ed25519-key.ts';
export { MAX_NOTE_BYTES, MAX_NOTE_SIGNATURES, assertNoteText, openNote, parseNote, signNote } from './note/signed-note.ts';
export type { NoteSignature, OpenedNote } from './note/signed-note.ts';
export { checkpointOrigin, formatCheckpoint, parseCheckpoint } from './note/checkpoint.ts';
export type { Checkpoint } from './note/checkpoint.ts';
export {
  COSIGNATURE_V1_TYPE,
  addSignatureLines,
  checkCosignatures,
  cosignatureMessage,
  cosignatureTime,
  cosignerFromSeed,
  generateCosigner,
  parseCosignatureVerifierKey,
  parseCosignatures,
  parseCosignerKey,
} from './note/cosignature.ts';
export type { Cosignature, CosignatureStatus, CosignatureVerifier, Cosigner } from './note/cosignature.ts';

// Host attestations (coverage evidence)
export { attestationDay, attestationOrigin, formatAttestation, isAttestationDay, isAttestedState, isHostId, parseAttestation } from './attest/attestation.ts';
export type { AttestationId, HostAttestation, StreamAttestation } from './attest/attestation.ts';
export { openAttestation, readAttestations } from './attest/read-attestations.ts';
export type { ReadAttestationsOptions, StoredAttestation } from './attest/read-attestations.ts';
export { HostAttestor } from './attest/host-attestor.ts';
export type { AttestationLink, HostAttestorOptions } from './attest/host-attestor.ts';

// Connector contract
export { CONNECTOR_SPEC_VERSION } from './connector/connector.ts';
export type { Connector, ConnectorContext, ConnectorState, ConnectorStatus, ConnectorTransition, ConnectorTransitionEvent } from './connector/connector.ts';
export { REJECTED_INPUT_BYTES_FORMAT, REJECTED_INPUT_FORMAT, createConnectorContext } from './connector/create-connector-context.ts';
export { ConnectorError, dispositionOf, isRejectedInput, isRetryable } from './connector/connector-error.ts';
export type { ConnectorErrorCode } from './connector/connector-error.ts';
export { ConnectorRuntime, createConnectorRuntime } from './connector/connector-runtime.ts';
export type { ConnectorRuntimeOptions, EventMapper } from './connector/connector-runtime.ts';
export type { ConnectorEvent, EventSource, EventSourceIo } from './connector/event-source.ts';

// Logger
export { noopLogger } from './logger/logger.ts';
export type { LogBindings, LogFn, Logger } from './logger/logger.ts';
export { SAFE_LOG_FIELDS, isSafeLogField, redactForLog, redactingLogger } from './logger/redacting-logger.ts';

// Recorder
export { Recorder } from './recorder/recorder.ts';
export type { CaptureEvent, RecorderOptions, RecorderStats, StreamWriter } from './recorder/recorder.ts';
export { defaultCaptureKey, prepareCapture } from './recorder/prepare-capture.ts';
export { CheckpointRefusedError } from './recorder/stream-checkpointer.ts';
export { memoryKeyIndex, openKeyIndex } from './recorder/key-index.ts';
export type { IndexedHead, IndexedKey, KeyIndex } from './recorder/key-index.ts';
export type { CheckpointOptions, CheckpointState } from './recorder/stream-checkpointer.ts';
export type { PendingBlob, PreparedCapture, RecordTemplate } from './recorder/prepare-capture.ts';

// Spool and replication
export { ForwardDivergedError, ForwardStoppedError, ForwardTimeoutError, Forwarder } from './forward/forwarder.ts';
export { PrunedReadUnavailableError, PrunedSeamError } from './forward/pruned-read-through.ts';
export type { BlobsPrunedEvent, ForwardStreamStatus, ForwardTarget, ForwardedEvent, ForwarderOptions, ForwarderStatus, PrunableSpool, PruneOptions, PrunedEvent } from './forward/forwarder.ts';

// Secret state store
export { openStateStore } from './state/secret-store.ts';
export type { StateStore, StateStoreOptions } from './state/secret-store.ts';
export type { StateTable } from './state/state-table.ts';
export { takeOsLock, takeOsLockAsync } from './state/os-lock.ts';
export type { OsLock, OsLockAsyncOptions, OsLockOptions } from './state/os-lock.ts';
export { OsLockError } from './errors/os-lock-error.ts';
export { generateStateKey, loadStateKey, parseStateKey } from './state/state-key.ts';

// Verification
export { blobRefs, verifyArchive } from './verify/verify-archive.ts';
export { blobNamesIn } from './verify/blob-refs.ts';
export { VERIFIED_STATE_FORMAT, VerifiedStateError, readVerifiedAttestations, readVerifiedState, verifiedStateOf } from './verify/verified-state.ts';
export type { AttestationSummary, VerifiedAttestation } from './verify/attestation-check.ts';
export type { VerifiedCheckpoint } from './verify/checkpoint-check.ts';
export { checkArchiveLog, checkArchiveLogs } from './verify/archive-log-check.ts';
export { buildArchiveLogInclusion, verifyArchiveLogInclusion } from './verify/archive-log-proof.ts';
export type { ArchiveLogInclusion } from './verify/archive-log-proof.ts';
export type { ArchiveLogCheck, ArchiveLogCheckOptions, ArchiveLogSummary } from './verify/archive-log-check.ts';
export type { CheckpointSummary, StreamSummary, VerificationFailure, VerificationReport, VerifyOptions } from './verify/verify-archive.ts';

export { RECORD_PROOF_FORMAT, buildRecordProof, verifyRecordProof } from './verify/record-proof.ts';
export type { RecordProof, VerifiedRecordProof } from './verify/record-proof.ts';

// RFC 3161 timestamps
export { MAX_TOKEN_BYTES, createTimestampRequest, parseTimestampResponse, verifyTimestampToken } from './timestamp/rfc3161.ts';
export type { TimestampInfo } from './timestamp/rfc3161.ts';
export { createTsaClient } from './timestamp/tsa-client.ts';
export type { TsaClientOptions } from './timestamp/tsa-client.ts';
