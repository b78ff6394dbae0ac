/**
 * Renders what is to be delivered with `@offchannel/export` itself — verification first, then
 * the EML that `offchannel export --format eml` writes, byte for byte (of the records from
 * `fromSeq` on, when given) — into a scratch directory, and reads back which records each file carries from its own headers
 * (`X-Offchannel-Stream`, `-Seq`, `-Record-SHA256`, `-Records`, `Message-ID`).
 */
import { readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { X509Certificate } from 'node:crypto';
import { type Logger, type NoteVerifier, OffchannelError, type Sink, type VerificationReport, type VerifiedCheckpoint } from '@offchannel/core';
import { exportArchive } from '@offchannel/export';
import { DeliveryError } from './delivery-error.ts';

/** One e-mail ready to send. */
export interface OutgoingMessage {
  readonly stream: string;
  /** Records it carries (record mode: one). */
  readonly seqs: readonly number[];
  /** Record mode: the record's SHA-256 from the file's header. */
  readonly recordHash: string | undefined;
  readonly messageId: string;
  /** The `.eml` in the scratch directory. */
  readonly file: string;
  /** The UTC day it belongs to (`Date` header, or the transcript's day). */
  readonly day: string;
  readonly kind: 'record' | 'day';
}

export interface RenderOptions {
  readonly sink: Sink;
  readonly streams: readonly string[];
  readonly mode: 'message' | 'day';
  /** An empty or missing scratch directory; removed by the caller. */
  readonly out: string;
  readonly verifiers?: readonly NoteVerifier[];
  readonly tsaCertificates?: readonly X509Certificate[];
  readonly generator?: string;
  readonly logger?: Logger;
  /**
   * Per stream, the newest signed checkpoint an earlier pass verified: only what came after it
   * is verified (core's incremental verification; needs `verifiers`).
   */
  readonly since?: ReadonlyMap<string, VerifiedCheckpoint>;
  /** Per stream, the first seq whose e-mails are wanted (the export's `emlFromSeq`); default: all. */
  readonly fromSeq?: ReadonlyMap<string, number>;
  /** The export's working index kept between passes (`keptIndex`): a pass indexes only what is new. */
  readonly keptIndex?: string;
  /** The archive is a spool that prunes (`DelivererOptions.prunedSpool`): streams start after their pruned prefix. */
  readonly prunedSpool?: boolean;
  /** Called with the verification that passed, before anything is rendered (to save what it verified). */
  readonly onVerified?: (report: VerificationReport) => void;
}

export async function renderMessages(options: RenderOptions): Promise<OutgoingMessage[]> {
  await rm(options.out, { recursive: true, force: true });
  try {
    await exportArchive({
      sink: options.sink,
      out: options.out,
      formats: ['eml'],
      streams: options.streams,
      emlMode: options.mode,
      // Capture's deliveries read its spool: records pruned from it are behind the cursor (held
      // until delivered) or were recorded as missed (Deliverer #passPruned).
      ...(options.prunedSpool === true ? { prunedSpool: true } : {}),
      ...(options.verifiers && options.verifiers.length > 0 ? { verifiers: options.verifiers } : {}),
      ...(options.tsaCertificates ? { tsaCertificates: options.tsaCertificates } : {}),
      ...(options.generator === undefined ? {} : { generator: options.generator }),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.since && options.since.size > 0 ? { since: options.since } : {}),
      ...(options.fromSeq ? { emlFromSeq: options.fromSeq } : {}),
      ...(options.keptIndex === undefined ? {} : { keptIndex: options.keptIndex }),
      ...(options.onVerified ? { onVerified: options.onVerified } : {}),
    });
  } catch (error) {
    if (OffchannelError.hasCode(error, 'EXPORT_UNVERIFIED')) throw new DeliveryError('DELIVERY_UNVERIFIED', `nothing was sent: ${error.message}`, { cause: error });
    throw error;
  }
  const messages: OutgoingMessage[] = [];
  const root = path.join(options.out, 'eml');
  for (const conversation of (await readdir(root).catch(() => [])).sort()) {
    for (const name of (await readdir(path.join(root, conversation))).sort()) {
      if (!name.endsWith('.eml')) continue;
      const file = path.join(root, conversation, name);
      messages.push(describeFile(file, await readFile(file), options.mode === 'day' ? 'day' : 'record'));
    }
  }
  return messages.sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : a.kind === 'day' ? (a.day < b.day ? -1 : a.day > b.day ? 1 : a.file < b.file ? -1 : 1) : (a.seqs[0] ?? 0) - (b.seqs[0] ?? 0)));
}

/** Reads the provenance headers of one rendered file. */
export function describeFile(file: string, bytes: Uint8Array, kind: 'record' | 'day'): OutgoingMessage {
  const headers = headerMap(bytes);
  const stream = headers.get('x-offchannel-stream');
  const messageId = headers.get('message-id');
  const date = headers.get('date');
  const seqs = kind === 'day' ? (headers.get('x-offchannel-records') ?? '').split(' ').map(Number) : [Number(headers.get('x-offchannel-seq'))];
  const day = kind === 'day' ? path.basename(file, '.eml') : date === undefined ? '' : new Date(Date.parse(date)).toISOString().slice(0, 10);
  if (!stream || !messageId || seqs.length === 0 || seqs.some((seq) => !Number.isSafeInteger(seq) || seq < 1) || !/^\d{4}-\d\d-\d\d$/.test(day)) {
    throw new DeliveryError('DELIVERY_STATE', `rendered file ${path.basename(file)} lacks its provenance headers; the export format changed — update @offchannel/delivery`);
  }
  return { stream, seqs, recordHash: headers.get('x-offchannel-record-sha256'), messageId, file, day, kind };
}

/** Lower-cased header names to unfolded values (first occurrence), from the header block only. */
function headerMap(bytes: Uint8Array): Map<string, string> {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const block = (end < 0 ? text : text.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  const headers = new Map<string, string>();
  for (const line of block.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
  }
  return headers;
}
