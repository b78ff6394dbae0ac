/**
 * `@offchannel/core/testing` — tools for testing sinks and connectors:
 * the sink conformance suite, the connector conformance harness, an in-memory sink, a
 * logger that records what it is given, and small helpers (FIFOs, the code of a NoteError, a child process's output line by line).
 */
export { batchAfter, chainAfter, fakeRecord, runSinkConformance, withLines } from './sink-conformance.ts';
export type { SinkConformanceOptions, SinkFixture } from './sink-conformance.ts';
export { MemoryStorage, createMemorySink } from './memory-sink.ts';
export { createRecordingLogger } from './recording-logger.ts';
export { openFilesUnder } from './open-files.ts';
export { mkfifo, settleOrHang } from './fifo.ts';
export { noteErrorCode } from './note-error-code.ts';
export { nextLine } from './child-lines.ts';
export type { LineChild } from './child-lines.ts';
export type { LogLine, RecordingLogger } from './recording-logger.ts';
export { runConnectorConformance } from './connector-conformance.ts';
export type { ConnectorConformanceOptions, ConnectorFixture, ConnectorFixtureEnv } from './connector-conformance.ts';
