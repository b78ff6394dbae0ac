/**
 * The coverage page: one self-contained HTML file a supervisor opens in any browser. No
 * scripts, no external resources: a Content-Security-Policy allows only the page's own
 * stylesheet (by hash) and inline SVG. Per custodian, a timeline (one bar per channel: green
 * while capturing, a colour per gap cause), then the gaps and the daily counts as tables.
 * Every name and detail comes from the archive and is escaped.
 */
import { createHash } from 'node:crypto';
import type { CoverageReport } from './collect-coverage.ts';
import { COUNT_NAMES, byCustodian, dailyTotals, liveShare, totals } from './coverage-summary.ts';
import { evidenceSentence } from './coverage-text.ts';
import { plural } from '../format.ts';
import { formatDuration } from './parse-duration.ts';
import type { GapCause } from './stream-coverage.ts';

const CAUSES: readonly { readonly cause: GapCause; readonly slug: string; readonly colour: string; readonly meaning: string }[] = [
  { cause: 'process down', slug: 'process-down', colour: '#c62828', meaning: 'the capture process was not running (stopped, crashed or silent)' },
  { cause: 'disconnected', slug: 'disconnected', colour: '#ef6c00', meaning: 'running, but not connected to the platform' },
  { cause: 'logged out', slug: 'logged-out', colour: '#6a1b9a', meaning: 'the platform ended the session; someone must relink' },
  { cause: 'unlinked', slug: 'unlinked', colour: '#ad1457', meaning: 'no linked device on the capture host' },
  { cause: 'failed', slug: 'failed', colour: '#4e342e', meaning: 'the account could not run as configured' },
  { cause: 'platform-reported loss', slug: 'platform-loss', colour: '#1565c0', meaning: 'the platform said events may be missing' },
];

const CSS = `body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;color:#1b1b1b;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;margin:2px 0}.verdict{font-size:17px;font-weight:600;padding:8px 12px;border-radius:6px;margin:12px 0}
.verdict.ok{background:#e8f5e9;color:#1b5e20}.verdict.gaps{background:#ffebee;color:#b71c1c}
.evidence{padding:6px 12px;border-left:4px solid #999;background:#f7f7f7}.evidence[data-verified=true]{border-color:#2e7d32}.evidence[data-verified=false]{border-color:#ef6c00}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;margin:10px 0;padding:0;list-style:none}.legend li{display:flex;align-items:center;gap:6px}
.swatch{width:14px;height:14px;border-radius:3px;display:inline-block}
svg.timeline{width:100%;height:auto;display:block;margin:6px 0}svg text{font:12px system-ui,sans-serif;fill:#333}
.live{fill:#43a047}.c-live{background:#43a047}.none{fill:#e0e0e0}.none-swatch{background:#e0e0e0}.grid{stroke:#bbb;stroke-width:1}
${CAUSES.map(({ slug, colour }) => `.c-${slug}{fill:${colour};background:${colour}}`).join('')}
table{border-collapse:collapse;margin:8px 0;width:100%}th,td{border-bottom:1px solid #e5e5e5;padding:3px 8px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:12px;overflow-wrap:anywhere}`;

const CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(CSS).digest('base64')}'; img-src 'none'; form-action 'none'; base-uri 'none'`;

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

export function coverageHtml(report: CoverageReport, label: string, keys: readonly string[], generatedAt: string): string {
  const gapped = report.streams.filter((stream) => !stream.covered).length;
  const verdict = gapped === 0 ? `<p class="verdict ok" data-covered="true">Covered: ${report.streams.length} streams, no gap in the period.</p>` : `<p class="verdict gaps" data-covered="false">${gapped} of ${report.streams.length} streams have gaps in the period.</p>`;
  const legend = `<ul class="legend"><li><span class="swatch live-swatch c-live"></span>capturing</li>${CAUSES.map(({ slug, cause, meaning }) => `<li title="${escapeHtml(meaning)}"><span class="swatch c-${slug}"></span>${escapeHtml(cause)}</li>`).join('')}<li><span class="swatch none-swatch"></span>no evidence (not yet captured, or not verified)</li></ul>`;
  const custodians = byCustodian(report).map((custodian) => {
    const gaps = custodian.streams.flatMap((stream) => stream.gaps.map((gap) => ({ stream, gap })));
    const gapRows = gaps.map(({ stream, gap }) => `<tr class="gap" data-cause="${escapeHtml(gap.cause)}"><td>${escapeHtml(stream.channel)}</td><td><time datetime="${gap.from}">${shown(gap.from)}</time></td><td><time datetime="${gap.to}">${shown(gap.to)}</time>${gap.open ? ' (open)' : ''}</td><td class="n">${formatDuration(Date.parse(gap.to) - Date.parse(gap.from))}</td><td><span class="swatch c-${slugOf(gap.cause)}"></span> ${escapeHtml(gap.cause)}</td><td>${escapeHtml(gap.detail)}${gap.missing === undefined ? '' : `; ${gap.missing} missing`}${gap.recovered === undefined ? '' : `; recovered: ${escapeHtml(gap.recovered)}`}</td></tr>`);
    const days = dailyTotals(custodian.streams);
    const dayRows = days.map((day) => `<tr><td>${day.day}</td>${COUNT_NAMES.map((name) => `<td class="n">${day[name]}</td>`).join('')}</tr>`);
    const sum = totals(days);
    return `<section class="custodian" data-account="${escapeHtml(custodian.account)}">
<h2>Custodian ${escapeHtml(custodian.account)}</h2>
<p class="meta">${custodian.streams.map((stream) => `${escapeHtml(stream.channel)}: live ${(liveShare(stream) * 100).toFixed(1)}%, ${plural(stream.gaps.length, 'gap')}, now ${escapeHtml(stream.state)}${stream.attested ? '' : ' (records only, no attestations)'}`).join(' · ')}</p>
${timeline(report, custodian.streams)}
${custodian.streams.filter((stream) => stream.gaps.length > 0 && stream.reconciliation !== undefined).map((stream) => `<p class="meta reconciliation" data-channel="${escapeHtml(stream.channel)}">${escapeHtml(stream.channel)} reconciliation: ${escapeHtml(stream.reconciliation ?? '')}</p>`).join('')}
${gapRows.length === 0 ? '<p class="no-gaps">No gaps.</p>' : `<table class="gaps"><thead><tr><th>channel</th><th>from</th><th>to</th><th class="n">length</th><th>cause</th><th>detail</th></tr></thead><tbody>${gapRows.join('')}</tbody></table>`}
<table class="daily"><thead><tr><th>day (UTC)</th>${COUNT_NAMES.map((name) => `<th class="n">${name}</th>`).join('')}</tr></thead><tbody>${dayRows.join('')}</tbody><tfoot><tr><th>total</th>${COUNT_NAMES.map((name) => `<th class="n">${sum[name]}</th>`).join('')}</tr></tfoot></table>
</section>`;
  });
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Capture coverage ${report.from.slice(0, 10)} – ${report.to.slice(0, 10)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>Capture coverage</h1>
<p class="meta">Archive <code>${escapeHtml(label)}</code> · period <time datetime="${report.from}">${report.from}</time> – <time datetime="${report.to}">${report.to}</time> · generated ${escapeHtml(generatedAt)}</p>
<p class="evidence" data-verified="${report.evidence === 'verified'}">Evidence ${escapeHtml(evidenceSentence(report, keys))}.</p>
<p class="meta">Hosts attest every ${formatDuration(report.attestEveryMs)}; silence longer than ${formatDuration(report.toleranceMs)} on an attested stream is shown as "process down".${report.unreadable > 0 ? ` ${report.unreadable} records could not be read and did not count.` : ''}</p>
${verdict}
${legend}
${custodians.join('\n')}
${report.streams.length === 0 ? '<p>No streams in this archive.</p>' : ''}
</body>
</html>
`;
}

const LABEL = 170;
const WIDTH = 1000;
const ROW = 26;

/** One SVG per custodian: a row per channel across the period, day lines, a title on every bar. */
function timeline(report: CoverageReport, streams: CoverageReport['streams']): string {
  const from = Date.parse(report.from);
  const span = Math.max(1, Date.parse(report.to) - from);
  const plot = WIDTH - LABEL - 10;
  const x = (iso: string) => LABEL + ((Date.parse(iso) - from) / span) * plot;
  const height = 22 + streams.length * ROW;
  const ticks: string[] = [];
  const dayMs = 86_400_000;
  const step = Math.max(1, Math.ceil(span / dayMs / 10)) * dayMs;
  for (let t = Math.ceil(from / dayMs) * dayMs; t <= from + span; t += step) {
    const at = LABEL + ((t - from) / span) * plot;
    if (at > WIDTH - 40) break;
    ticks.push(`<line class="grid" x1="${at.toFixed(1)}" x2="${at.toFixed(1)}" y1="14" y2="${height}"/><text x="${(at + 2).toFixed(1)}" y="11">${new Date(t).toISOString().slice(5, 10)}</text>`);
  }
  const rows = streams.map((stream, index) => {
    const y = 20 + index * ROW;
    const bars = [`<rect class="none" x="${LABEL}" y="${y}" width="${plot}" height="18"/>`];
    for (const live of stream.live) bars.push(`<rect class="live c-live" x="${x(live.from).toFixed(1)}" y="${y}" width="${Math.max(0.5, x(live.to) - x(live.from)).toFixed(1)}" height="18"><title>capturing ${live.from} – ${live.to}</title></rect>`);
    for (const gap of stream.gaps) {
      const width = Math.max(3, x(gap.to) - x(gap.from));
      bars.push(`<rect class="gap c-${slugOf(gap.cause)}" data-cause="${escapeHtml(gap.cause)}" data-from="${gap.from}" data-to="${gap.to}" x="${x(gap.from).toFixed(1)}" y="${y}" width="${width.toFixed(1)}" height="18"><title>${escapeHtml(`${gap.cause}: ${gap.from} – ${gap.to} (${formatDuration(Date.parse(gap.to) - Date.parse(gap.from))}); ${gap.detail}`)}</title></rect>`);
    }
    return `<g class="row" data-stream="${escapeHtml(stream.stream)}"><text x="0" y="${y + 13}">${escapeHtml(clip(stream.channel, 22))}</text>${bars.join('')}</g>`;
  });
  return `<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="capture timeline">${ticks.join('')}${rows.join('')}</svg>`;
}

/** `2026-11-03 06:00:00 UTC`: the instant, readable (the `datetime` attribute keeps ISO 8601). */
function shown(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

function slugOf(cause: GapCause): string {
  return CAUSES.find((entry) => entry.cause === cause)?.slug ?? 'process-down';
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
