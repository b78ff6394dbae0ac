import type { TranscriptEvent } from '../model/transcript-event.ts';
import { displayName } from '../model/attachment-file-name.ts';
import { partyName } from '../model/transcript-events.ts';

/**
 * A conversation as plain text, one block per event: time, sender, direction, text, then
 * indented lines for attachments, edits (each with the text it replaced), deletions (the text
 * stays), reactions and receipts. Used as the readable body of RSMF and EML files.
 */
export function plainTranscript(events: readonly TranscriptEvent[]): string {
  return events.map(plainEvent).join('\n');
}

export function plainEvent(event: TranscriptEvent): string {
  const [heading, rest] = plainEventParts(event);
  return `${heading}${rest}`;
}

/**
 * {@link plainEvent} in two parts: the heading line (its arrow makes it a two-byte string in
 * V8), then the rest, from the heading's newline on — one-byte when the text is ASCII, so
 * it is not copied into a two-byte string to be encoded (RSMF spools the parts one by one).
 */
export function plainEventParts(event: TranscriptEvent): readonly [heading: string, rest: string] {
  const who = event.sender ? partyName(event.sender) : 'system';
  const arrow = event.direction === 'outbound' ? '→' : event.direction === 'inbound' ? '←' : '·';
  const heading = `[${event.at}] ${arrow} ${who}${event.forwarded ? ' (forwarded)' : ''}${event.parent ? ` (reply to ${event.parent})` : ''}`;
  // The heading's place: the rest starts with its newline.
  const lines = [''];
  if (event.type !== 'message') lines.push(`  ${event.notice ?? ''}`);
  if (event.type === 'message' || event.text !== undefined) lines.push(...indent(event.text ?? ''));
  for (const attachment of event.attachments) {
    lines.push(
      attachment.status === 'stored'
        ? `  [attachment] ${attachment.label} (${displayName(attachment.mime ?? '')}, ${attachment.size ?? 0} bytes, sha256 ${attachment.sha256 ?? ''}; file ${attachment.fileName ?? ''})`
        : `  [attachment not archived: ${attachment.reason ?? 'unknown'}] ${attachment.name === undefined ? '' : attachment.label}`,
    );
  }
  for (const edit of event.edits) lines.push(`  [edited ${edit.at} by ${edit.by ? partyName(edit.by) : 'unknown'}] now:`, ...indent(edit.text ?? '', '    '));
  for (const deletion of event.deletions) lines.push(`  [deleted ${deletion.scope === 'me' ? 'for the custodian only' : 'for everyone'}${deletion.admin ? ' by an admin' : ''} ${deletion.at} by ${deletion.by ? partyName(deletion.by) : 'unknown'}; text above is the original]`);
  for (const reaction of event.reactions) lines.push(`  [reaction ${reaction.action === 'add' ? 'added' : 'removed'} ${reaction.value} by ${reaction.by ? partyName(reaction.by) : 'unknown'} ${reaction.at}]`);
  for (const receipt of event.receipts) lines.push(`  [${receipt.status} by ${receipt.by ? partyName(receipt.by) : 'unknown'} ${receipt.at}]`);
  lines.push(`  (record ${event.id}, sha256 ${event.hash})`);
  return [heading, `${lines.join('\n')}\n`];
}

function indent(text: string, prefix = '  '): string[] {
  return text.split(/\r?\n/).map((line) => `${prefix}${line}`);
}
