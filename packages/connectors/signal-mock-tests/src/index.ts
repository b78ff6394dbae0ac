/**
 * `@offchannel/signal-mock-tests` (private, AGPL-3.0): end-to-end tests of the Signal connector
 * against Signal's own server simulator, the harness they use, and the offline demo driver.
 */
export { dataContent, dataMessage, editContent, linkToMock, reaction, sendSyncTranscript, startMockSignal, uploadAttachment } from './mock-signal.ts';
export type { MockSignal } from './mock-signal.ts';
export { runSignalDemo } from './offline-demo.ts';
export type { SignalDemoOptions, SignalDemoResult } from './offline-demo.ts';
