import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Sink } from '@offchannel/core';
import { ExportError } from '../export-error.ts';
import { readVerifiedBlob } from '../verified-blob.ts';
import { base64LineBytes, base64LineStream, encodeWords, formatAddress, headerLine, mailboxFor, rfc5322Date } from '../mime/mime-message.ts';
import { type WrittenFile, writeStreamingFile } from '../written-file.ts';
import { ZipWriter } from '../zip/zip-writer.ts';
import { type RsmfSlice, SPOOL_CHUNK } from './rsmf-slice.ts';

const CRLF = '\r\n';

/**
 * Writes one `.rsmf` file: an RFC 5322 message with the `X-RSMF-*` headers, a plain-text
 * transcript body, and one attachment `rsmf.zip` holding `rsmf_manifest.json` and the slice's
 * attachment files. The manifest and transcript come from the slice's spooled files and the zip
 * is built in the export's working directory `temp`, then streamed into the message: memory
 * holds one chunk and one attachment at a time. Byte-for-byte deterministic for the same slice.
 */
export async function writeRsmf(file: string, slice: RsmfSlice, sink: Sink, generator: string, temp: string): Promise<WrittenFile> {
  const zipPath = path.join(temp, `${path.basename(file)}.zip`);
  const zip = await ZipWriter.create(zipPath);
  let zipInfo: { size: number; sha256: string };
  try {
    await zip.addStream('rsmf_manifest.json', slice.manifest());
    for (const attachment of slice.attachments()) {
      if (!attachment.sha256 || !attachment.fileName) continue;
      await zip.add(attachment.fileName, await readVerifiedBlob(sink, attachment.sha256, attachment.size));
    }
    zipInfo = await zip.close();
  } catch (error) {
    await zip.abort();
    await rm(zipPath, { force: true });
    throw error;
  }

  const first = slice.firstAt;
  const last = slice.lastAt;
  const participants = slice.participants();
  const custodian = participants.find((party) => party.id === slice.custodianId) ?? { id: slice.custodianId };
  const intro = Buffer.from(`${slice.title}\n${slice.count} events, ${first} to ${last}\n\n`, 'utf8');
  const boundary = `=_oc${createHash('sha256').update(intro).update(zipInfo.sha256).digest('hex').slice(0, 28)}`;
  const messageId = `<${createHash('sha256').update(`${slice.collectionId}\n${slice.firstId}\n${slice.count}`).digest('hex')}@rsmf.offchannel.invalid>`;
  const headers: [string, string][] = [
    ['From', formatAddress(mailboxFor(custodian.id, slice.channel), custodian.name)],
    ['To', participants.filter((party) => party.id !== custodian.id).map((party) => formatAddress(mailboxFor(party.id, slice.channel), party.name)).join(', ') || formatAddress(mailboxFor(custodian.id, slice.channel))],
    ['Subject', encodeWords(`${slice.channel}: ${slice.title}`)],
    ['Date', rfc5322Date(last)],
    ['Message-ID', messageId],
    ['X-RSMF-Version', '2.0.0'],
    ['X-RSMF-Generator', generator],
    ['X-RSMF-Application', slice.channel],
    ['X-RSMF-Custodian', encodeWords(custodian.name ?? custodian.id)],
    ['X-RSMF-Participants', encodeWords(participants.map((party) => party.name ?? party.id).join('; '))],
    ['X-RSMF-BeginDate', first],
    ['X-RSMF-EndDate', last],
    ['X-RSMF-EventCount', String(slice.count)],
    ['X-RSMF-AttachmentCount', String(slice.attachmentCount)],
    ['X-RSMF-EventCollectionID', slice.collectionId],
    ['X-Offchannel-Stream', slice.conversation.stream],
    ['X-Offchannel-Checkpoint', slice.checkpoint ? `size=${slice.checkpoint.size}; root=${slice.checkpoint.root}; key=${slice.checkpoint.signedBy}` : 'none'],
    ['MIME-Version', '1.0'],
    ['Content-Type', `multipart/mixed; boundary="${boundary}"`],
  ];
  const head = `${headers.map(([name, value]) => headerLine(name, value)).join(CRLF)}${CRLF}${CRLF}--${boundary}${CRLF}${headerLine('Content-Type', 'text/plain; charset=utf-8')}${CRLF}${headerLine('Content-Transfer-Encoding', 'base64')}${CRLF}${CRLF}`;
  const zipHead = `${CRLF}--${boundary}${CRLF}${headerLine('Content-Type', 'application/zip; name="rsmf.zip"')}${CRLF}${headerLine('Content-Transfer-Encoding', 'base64')}${CRLF}${headerLine('Content-Disposition', 'attachment; filename="rsmf.zip"')}${CRLF}${CRLF}`;

  // Every line is ASCII: headers are checked printable ASCII, bodies are base64.
  const zipIn = await open(zipPath, 'r');
  try {
    return await writeStreamingFile(file, async (write) => {
      await write(head);
      for await (const lines of base64LineStream(prepend(intro, slice.transcript()))) await write(lines);
      await write(zipHead);
      const buffer = Buffer.alloc(SPOOL_CHUNK);
      for (let position = 0; position < zipInfo.size; ) {
        const { bytesRead } = await zipIn.read(buffer, 0, Math.min(SPOOL_CHUNK, zipInfo.size - position), position);
        if (bytesRead === 0) throw new ExportError('EXPORT_OUTPUT', `the temporary zip ${zipPath} was truncated while it was read back`);
        await write(base64LineBytes(buffer.subarray(0, bytesRead)));
        position += bytesRead;
      }
      await write(`${CRLF}--${boundary}--${CRLF}`);
    });
  } finally {
    await zipIn.close();
    await rm(zipPath, { force: true });
  }
}

async function* prepend(first: Uint8Array, rest: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield first;
  yield* rest;
}
