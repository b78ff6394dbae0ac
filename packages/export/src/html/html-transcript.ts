/**
 * A conversation as one self-contained HTML file a supervisor can read like a chat: no scripts,
 * no external resources (a Content-Security-Policy forbids them), images embedded, every edit
 * with its history, deleted messages struck through with their original text, reactions,
 * receipts, notices (gaps, undecryptable events, policy), and each line's record id and hash.
 * All archive text is HTML-escaped.
 */
import type { Party } from '@offchannel/core';
import type { TranscriptAttachment, TranscriptEvent } from '../model/transcript-event.ts';
import { displayName } from '../model/attachment-file-name.ts';
import { partyName } from '../model/transcript-events.ts';

/** Images up to this size are embedded in the page; larger files are linked next to it. */
export const HTML_EMBED_MAX_BYTES = 8 * 1024 * 1024;

/** Texts longer than this are shown folded: the first 600 characters, the rest on click. */
const LONG_TEXT_CHARS = 4000;

export interface HtmlHeader {
  readonly title: string;
  readonly channel: string;
  readonly stream: string;
  readonly custodian: string;
  readonly participants: readonly Party[];
  readonly firstAt: string;
  readonly lastAt: string;
  /** Verification outcome lines, e.g. `verified`, checkpoint and key. */
  readonly verification: { readonly ok: boolean; readonly lines: readonly string[] };
  readonly generator: string;
}

const STYLE = `
:root{color-scheme:light;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2329;background:#eef1f4}
body{margin:0 auto;max-width:860px;padding:24px}
header{background:#fff;border-radius:10px;padding:16px 20px;margin-bottom:18px;box-shadow:0 1px 2px #0002}
h1{font-size:20px;margin:0 0 6px}
.meta{color:#56616c;font-size:13px;margin:2px 0}
.verification{margin-top:10px;padding:8px 12px;border-radius:8px;font-size:13px}
.verification.ok{background:#e5f5ea;border:1px solid #9fd4ae}
.verification.fail{background:#fde8e8;border:1px solid #e9a0a0}
.event{display:flex;margin:10px 0}
.event.outbound{justify-content:flex-end}
.bubble{max-width:72%;background:#fff;border-radius:12px;padding:8px 12px;box-shadow:0 1px 2px #0002}
.outbound .bubble{background:#dcf0ff}
.who{font-weight:600;font-size:13px}
.time{color:#6b7680;font-size:12px;margin-left:6px;font-weight:400}
.text{white-space:pre-wrap;overflow-wrap:anywhere;margin:4px 0}
.long-text summary{cursor:pointer;list-style:none}
.long-text[open] summary{display:none}
.deleted .text{text-decoration:line-through;color:#7a5050}
.label{display:inline-block;font-size:11px;font-weight:600;text-transform:uppercase;letter-spacing:.03em;border-radius:4px;padding:1px 6px;margin:2px 4px 2px 0}
.label.deleted-label{background:#fde0e0;color:#8c1d1d}
.label.edited-label{background:#fff1c9;color:#6b4e00}
.label.forwarded-label,.label.reply-label{background:#e8ecf0;color:#3b4650}
.label.reply-label{text-transform:none;letter-spacing:0;font-weight:400;font-size:12px;text-decoration:none}
.edit-history{font-size:13px;margin:4px 0;border-left:3px solid #f0c94a;padding-left:8px}
.edit-history ol{margin:4px 0;padding-left:18px}
.edit-history .old{text-decoration:line-through;color:#6b7680;white-space:pre-wrap}
.edit-history .new{white-space:pre-wrap}
.attachment{font-size:13px;margin:6px 0;padding:6px 8px;background:#f4f6f8;border-radius:8px}
.attachment img{display:block;max-width:100%;max-height:320px;border-radius:6px;margin-bottom:4px}
.attachment.unavailable{background:#fdf3e1}
.reactions{margin-top:4px}
.reaction{display:inline-block;font-size:13px;background:#f0f2f5;border-radius:12px;padding:1px 8px;margin:2px 4px 0 0}
.reaction.removed{text-decoration:line-through;color:#7b8590}
.receipts,.provenance{color:#7b8590;font-size:11px;margin-top:4px}
.provenance code{font-size:11px}
.notice{margin:10px auto;max-width:80%;text-align:center;font-size:13px;color:#4a5560;background:#e3e7eb;border-radius:8px;padding:6px 10px}
.notice.problem{background:#fde8d8;color:#6d3212}
footer{color:#7b8590;font-size:12px;margin-top:24px;text-align:center}
`;

/** `2026-11-20 09:01:00.123 UTC` for readers; the exact stored time is in the element's title. */
export function displayTime(iso: string): string {
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/.exec(iso);
  if (!match) return iso;
  const fraction = (match[3] ?? '').slice(0, 3).replace(/0+$/, '');
  return `${match[1] ?? ''} ${match[2] ?? ''}${fraction ? `.${fraction}` : ''} UTC`;
}

function timeHtml(iso: string): string {
  return `<time datetime="${escapeHtml(iso)}" title="${escapeHtml(iso)}">${escapeHtml(displayTime(iso))}</time>`;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** The page up to the first event. */
export function htmlHead(header: HtmlHeader): string {
  const people = header.participants.map((party) => `${escapeHtml(partyName(party))}${party.name && party.name !== party.id ? ` <span class="time">${escapeHtml(party.id)}</span>` : ''}`).join(', ');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'">
<meta name="generator" content="${escapeHtml(header.generator)}">
<title>${escapeHtml(header.title)}</title>
<style>${STYLE}</style></head>
<body>
<header>
<h1>${escapeHtml(header.title)}</h1>
<p class="meta">${escapeHtml(header.channel)} · stream <code>${escapeHtml(header.stream)}</code> · custodian ${escapeHtml(header.custodian)}</p>
<p class="meta">${header.firstAt === header.lastAt ? escapeHtml(displayTime(header.firstAt)) : `${escapeHtml(displayTime(header.firstAt))} – ${escapeHtml(displayTime(header.lastAt))}`}</p>
<p class="meta">Participants: ${people}</p>
<div class="verification ${header.verification.ok ? 'ok' : 'fail'}" data-verified="${header.verification.ok ? 'true' : 'false'}">${header.verification.lines.map(escapeHtml).join('<br>')}</div>
</header>
<main>
`;
}

export function htmlFoot(generator: string): string {
  return `</main>
<footer>Exported by ${escapeHtml(generator)}. Times are UTC. Every line names its archive record (stream/seq and SHA-256); prove one with <code>offchannel prove</code>.</footer>
</body></html>
`;
}

/** One event. `src` returns how to show a stored attachment: a data: URI, a relative link, or nothing. */
export function htmlEvent(event: TranscriptEvent, src: (attachment: TranscriptAttachment) => string | undefined): string {
  const provenance = `<div class="provenance">record <code>${escapeHtml(event.id)}</code> · sha256 <code>${event.hash.slice(0, 16)}…</code></div>`;
  if (event.type !== 'message') {
    const problem = ['undecryptable', 'unsupported', 'gap'].includes(event.record.kind);
    const text = event.text === undefined ? '' : `<div class="text">${escapeHtml(event.text)}</div>`;
    return `<div class="notice${problem ? ' problem' : ''}" id="${escapeHtml(event.id)}" data-kind="${escapeHtml(event.record.kind)}">${escapeHtml(event.notice ?? '')} <span class="time">${timeHtml(event.at)}</span>${text}${provenance}</div>\n`;
  }
  const deleted = event.deletions.length > 0;
  const labels = [
    ...event.deletions.map((deletion) => `<span class="label deleted-label">Deleted ${deletion.scope === 'me' ? 'for the custodian only' : 'for everyone'}${deletion.admin ? ' by an admin' : ''} · ${escapeHtml(deletion.by ? partyName(deletion.by) : 'unknown')} · ${escapeHtml(displayTime(deletion.at))}</span>`),
    event.edits.length > 0 ? `<span class="label edited-label">Edited ${event.edits.length}×</span>` : '',
    event.forwarded ? '<span class="label forwarded-label">Forwarded</span>' : '',
    event.parent ? `<a class="label reply-label" href="#${escapeHtml(event.parent)}" title="${escapeHtml(event.parent)}">↩ ${escapeHtml(event.parentPreview ?? event.parent)}</a>` : event.replyToMissing ? `<span class="label reply-label">Reply to a message not in this archive (${escapeHtml(event.replyToMissing.id)})</span>` : '',
  ].join('');
  const history =
    event.edits.length > 0
      ? `<div class="edit-history"><div>Edit history (original first):</div><ol>${event.edits
          .map((edit) => `<li><span class="time">${timeHtml(edit.at)} by ${escapeHtml(edit.by ? partyName(edit.by) : 'unknown')}</span><div class="old">${escapeHtml(edit.previous ?? '')}</div><div class="new">→ ${escapeHtml(edit.text ?? '')}</div></li>`)
          .join('')}</ol></div>`
      : '';
  const attachments = event.attachments.map((attachment) => htmlAttachment(attachment, src(attachment))).join('');
  const reactions =
    event.reactions.length > 0
      ? `<div class="reactions">${event.reactions
          .map((reaction) => `<span class="reaction${reaction.action === 'remove' ? ' removed' : ''}" title="${escapeHtml(`${reaction.action} at ${reaction.at}`)}">${escapeHtml(reaction.value)} ${escapeHtml(reaction.by ? partyName(reaction.by) : 'unknown')}${reaction.action === 'remove' ? ' (removed)' : ''}</span>`)
          .join('')}</div>`
      : '';
  const receipts = event.receipts.length > 0 ? `<div class="receipts">${event.receipts.map((receipt) => `${escapeHtml(receipt.status)} by ${escapeHtml(receipt.by ? partyName(receipt.by) : 'unknown')} ${escapeHtml(receipt.at)}`).join(' · ')}</div>` : '';
  const shown = deleted ? event.text : event.currentText;
  const text = shown === undefined ? '' : htmlText(shown);
  return `<div class="event ${event.direction ?? 'inbound'}${deleted ? ' deleted' : ''}" id="${escapeHtml(event.id)}" data-kind="message"><div class="bubble">
<div class="who">${escapeHtml(event.sender ? partyName(event.sender) : 'unknown')}<span class="time">${timeHtml(event.at)}</span></div>
${labels}${text}${history}${attachments}${reactions}${receipts}${provenance}
</div></div>
`;
}

/** Message text; very long texts are folded (no script needed) so the conversation stays readable. */
function htmlText(text: string): string {
  if (text.length <= LONG_TEXT_CHARS) return `<div class="text">${escapeHtml(text)}</div>`;
  return `<details class="long-text"><summary><span class="text">${escapeHtml(text.slice(0, 600))}…</span> <span class="label">Show all ${text.length.toLocaleString('en-US')} characters</span></summary><div class="text">${escapeHtml(text)}</div></details>`;
}

function htmlAttachment(attachment: TranscriptAttachment, src: string | undefined): string {
  if (attachment.status === 'unavailable') {
    return `<div class="attachment unavailable" data-status="unavailable">Attachment not archived: ${escapeHtml(attachment.reason ?? 'unknown reason')}${attachment.name ? ` · <span class="name">${escapeHtml(attachment.label)}</span>` : ''}${attachment.mime ? ` · ${escapeHtml(displayName(attachment.mime))}` : ''}</div>`;
  }
  // The sender's name is text only; the file (linked, or embedded when an inline image) is
  // named by its SHA-256 with an inert extension, so opening it cannot run the sender's code.
  const label = `<span class="name">${escapeHtml(attachment.label)}</span> · ${escapeHtml(displayName(attachment.mime ?? ''))} · ${attachment.size ?? 0} bytes · sha256 <code>${escapeHtml((attachment.sha256 ?? '').slice(0, 16))}…</code>${attachment.addedBy ? ` · arrived later (record ${escapeHtml(attachment.addedBy)})` : ''}`;
  if (src?.startsWith('data:')) return `<div class="attachment" data-status="stored"><img alt="${escapeHtml(attachment.label)}" src="${escapeHtml(src)}">${label}</div>`;
  const link = src === undefined ? label : `${label} · <a href="${escapeHtml(src)}" download="${escapeHtml(attachment.fileName ?? 'attachment.bin')}" type="${escapeHtml(attachment.fileType ?? 'application/octet-stream')}" title="attachments/${escapeHtml(attachment.fileName ?? '')}">open file <code>${escapeHtml((attachment.fileName ?? '').replace(/^([0-9a-f]{12})[0-9a-f]+/, '$1…'))}</code></a>`;
  return `<div class="attachment" data-status="stored">${link}</div>`;
}
