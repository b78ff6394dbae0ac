/**
 * `@offchannel/export` — production formats for regulators and review, from a verified archive:
 * RSMF 2.0 (Relativity), EML, JSON Lines with inclusion proofs, and a self-contained HTML
 * transcript per conversation.
 */
export { EXPORT_FORMATS, exportArchive } from './export-archive.ts';
export type { ExportFormat, ExportOptions, ExportResult } from './export-archive.ts';
export { ExportError } from './export-error.ts';
export { UNPROVEN_RECORD_FORMAT } from './jsonl/export-jsonl.ts';
export { RSMF_MAX_EVENTS } from './rsmf/rsmf-slice.ts';
export type { RsmfManifest } from './rsmf/rsmf-slice.ts';
export { ArchiveIndex } from './index-db/archive-index.ts';
export type { ConversationSummary, IndexLimits, IndexedRecord } from './index-db/archive-index.ts';
export { describe as describeRecord, transcriptEvents } from './model/transcript-events.ts';
export type { TranscriptAttachment, TranscriptEvent } from './model/transcript-event.ts';
export { HTML_EMBED_MAX_BYTES } from './html/html-transcript.ts';
