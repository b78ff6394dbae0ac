import { plural } from '../format.ts';
import type { CoverageReport } from './collect-coverage.ts';
import { COUNT_NAMES, byCustodian, dailyTotals, liveShare, longestGapMs, printable, totals } from './coverage-summary.ts';
import { formatDuration } from './parse-duration.ts';

/** How the evidence was checked, in one sentence (text and page say the same). */
export function evidenceSentence(report: CoverageReport, keys: readonly string[]): string {
  return report.evidence === 'verified'
    ? `verified with ${keys.map(printable).join(', ')}: only records under a verified signed checkpoint and attestations whose signature verified count`
    : 'NOT verified: every readable record and attestation counts; give --key <verifier key> to count only signed evidence';
}

/** The human table: per custodian, one line per channel, then each gap, then daily totals. */
export function coverageText(report: CoverageReport, label: string, keys: readonly string[]): string {
  const lines = [`Coverage of ${printable(label)}`, `  period    ${report.from} – ${report.to}`, `  evidence  ${evidenceSentence(report, keys)}`];
  lines.push(`  liveness  attestations every ${formatDuration(report.attestEveryMs)}; silence over ${formatDuration(report.toleranceMs)} on an attested stream is "process down"`);
  if (report.unreadable > 0) lines.push(`  warning   ${plural(report.unreadable, 'record')} could not be read and did not count (run offchannel verify)`);
  const width = Math.max(8, ...report.streams.map((stream) => printable(stream.channel).length));
  for (const custodian of byCustodian(report)) {
    lines.push('', `Custodian ${printable(custodian.account) || '(none)'}`);
    lines.push(`  ${'channel'.padEnd(width)}  ${'live'.padStart(7)}  ${'gaps'.padStart(4)}  ${'longest'.padStart(8)}  ${'messages'.padStart(8)}  state`);
    for (const stream of custodian.streams) {
      const share = `${(liveShare(stream) * 100).toFixed(1)}%`;
      const longest = stream.gaps.length > 0 || stream.state === 'unverified' ? formatDuration(longestGapMs(stream)) : '-';
      const attested = stream.attested ? '' : ' (records only: no attestations)';
      lines.push(`  ${printable(stream.channel).padEnd(width)}  ${share.padStart(7)}  ${String(stream.gaps.length).padStart(4)}  ${longest.padStart(8)}  ${String(totals(stream.daily).messages).padStart(8)}  ${stream.state}${attested}`);
      if (stream.gaps.length > 0 && stream.reconciliation !== undefined) lines.push(`    reconciliation: ${stream.reconciliation}`);
      for (const gap of stream.gaps) {
        const length = formatDuration(Date.parse(gap.to) - Date.parse(gap.from));
        const extra = [gap.missing === undefined ? '' : `${gap.missing} missing`, gap.recovered === undefined ? '' : `recovered: ${printable(gap.recovered)}`, gap.open ? 'still open' : ''].filter(Boolean).join(', ');
        lines.push(`    ${gap.from} → ${gap.to}  ${length.padStart(8)}  ${gap.cause}: ${printable(gap.detail)}${extra ? ` (${extra})` : ''}`);
      }
    }
  }
  if (report.streams.length === 0) lines.push('', '  (no streams in this archive)');
  const days = dailyTotals(report.streams);
  if (days.length > 0) {
    lines.push('', 'Daily counts, all streams (UTC days of capture)', `  ${'day'.padEnd(10)}  ${COUNT_NAMES.map((name) => name.padStart(name.length)).join('  ')}`);
    for (const day of days) lines.push(`  ${day.day}  ${COUNT_NAMES.map((name) => String(day[name]).padStart(name.length)).join('  ')}`);
  }
  const gapped = report.streams.filter((stream) => !stream.covered).length;
  lines.push('', gapped === 0 ? `COVERED: ${plural(report.streams.length, 'stream')}, no gap in the period.` : `GAPS: ${gapped} of ${plural(report.streams.length, 'stream')} not covered over the whole period (see above; --json for machines, --html for a page).`);
  return `${lines.join('\n')}\n`;
}
