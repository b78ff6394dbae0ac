import { OffchannelError } from '@offchannel/core';

/**
 * Export refused or failed. Codes:
 * - `EXPORT_UNVERIFIED` — the archive did not verify; nothing was exported (the message names
 *   the first verification failure). Evidence that does not verify is never exported silently.
 * - `EXPORT_OUTPUT` — the output directory cannot be created or written, or is not empty.
 * - `EXPORT_OPTIONS` — a filter or option is invalid (bad date, unknown stream).
 * - `EXPORT_ABORTED` — the export was interrupted (its `signal`, e.g. SIGINT in the CLI); the
 *   output directory holds an incomplete export, the working files were removed.
 */
export class ExportError extends OffchannelError {
  declare readonly code: 'EXPORT_UNVERIFIED' | 'EXPORT_OUTPUT' | 'EXPORT_OPTIONS' | 'EXPORT_ABORTED';
}
