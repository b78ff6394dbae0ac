/**
 * The example alert rules in docs/metrics.md, checked and unit-tested with Prometheus's own
 * `promtool` (Debian's `prometheus` package, scripts/prometheus/ensure.sh): each alert fires on
 * the series capture exposes in that situation, with the documented labels and text, and stays
 * quiet otherwise. No skip: without promtool this test fails.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

const ENSURE = path.resolve(import.meta.dirname, '../../../../scripts/prometheus/ensure.sh');
const DOC = path.resolve(import.meta.dirname, '../../../../docs/metrics.md');
const dirs: string[] = [];
let promtool = '';

beforeAll(() => {
  const prometheus = execFileSync('bash', [ENSURE], { stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 }).toString().trim().split('\n').at(-1) ?? '';
  promtool = path.join(path.dirname(prometheus), 'promtool');
}, 620_000);

afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** The YAML block of the doc that starts with `groups:`. */
async function documentedRules(): Promise<string> {
  const text = await readFile(DOC, 'utf8');
  const block = /```yaml\n(groups:\n[\s\S]*?)```/.exec(text)?.[1];
  if (block === undefined) throw new Error('docs/metrics.md has no ```yaml block starting with groups:');
  return block;
}

const TESTS = `rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'offchannel_connector_state{stream="whatsapp:bob",state="logged-out"}'
        values: '1x30'
      - series: 'offchannel_connector_state{stream="demo:alice",state="logged-out"}'
        values: '0x30'
      - series: 'offchannel_connector_state{stream="demo:alice",state="running"}'
        values: '1x30'
      - series: 'offchannel_seconds_since_last_attestation{stream="demo:never"}'
        values: '${Array(31).fill('Inf').join(' ')}'
      - series: 'offchannel_seconds_since_last_attestation{stream="demo:alice"}'
        values: '60x30'
      - series: 'offchannel_spool_backlog_records{stream="demo:alice"}'
        values: '0+10x30'
      - series: 'offchannel_spool_backlog_records{stream="whatsapp:bob"}'
        values: '50x30'
      - series: 'offchannel_capture_errors_total{stream="demo:alice",code="SINK_UNAVAILABLE"}'
        values: '0 0 0 1 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2'
      - series: 'up{job="offchannel",instance="127.0.0.1:9464"}'
        values: '1x30'
    alert_rule_test:
      - eval_time: 3m
        alertname: OffchannelAccountLoggedOut
        exp_alerts:
          - exp_labels: { severity: critical, stream: "whatsapp:bob", state: "logged-out" }
            exp_annotations:
              summary: "whatsapp:bob is logged-out: nothing is captured until it is relinked"
              description: "Relink it (offchannel link <channel> --account …), then send SIGHUP to capture."
      - eval_time: 3m
        alertname: OffchannelNoAttestation
        exp_alerts:
          - exp_labels: { severity: warning, stream: "demo:never" }
            exp_annotations:
              summary: "demo:never has not been attested live for 15 minutes"
      - eval_time: 20m
        alertname: OffchannelSpoolBacklogGrowing
        exp_alerts:
          - exp_labels: { severity: warning, stream: "demo:alice" }
            exp_annotations:
              summary: "demo:alice: 200 records not yet copied to S3, and growing for 15 minutes"
      - eval_time: 5m
        alertname: OffchannelCaptureErrors
        exp_alerts:
          - exp_labels: { severity: warning, stream: "demo:alice", code: "SINK_UNAVAILABLE" }
            exp_annotations:
              summary: "demo:alice: captures failing with SINK_UNAVAILABLE"
      - eval_time: 25m
        alertname: OffchannelCaptureErrors
        exp_alerts: []
      - eval_time: 10m
        alertname: OffchannelCaptureDown
        exp_alerts: []
      - eval_time: 20m
        alertname: OffchannelAccountNotCapturing
        exp_alerts: []
`;

describe('example alert rules (docs/metrics.md)', () => {
  it('pass promtool check rules and fire, with the documented text, on the series capture exposes', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'offchannel-alert-rules-'));
    dirs.push(dir);
    await writeFile(path.join(dir, 'rules.yml'), await documentedRules());
    await writeFile(path.join(dir, 'tests.yml'), TESTS);
    const run = (args: string[]): string => {
      try {
        return execFileSync(promtool, args, { cwd: dir, timeout: 50_000, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
      } catch (error) {
        const failed = error as { stdout?: Buffer; stderr?: Buffer };
        throw new Error(`promtool ${args.join(' ')} failed:\n${failed.stdout?.toString() ?? ''}${failed.stderr?.toString() ?? ''}`, { cause: error });
      }
    };
    expect(run(['check', 'rules', 'rules.yml'])).toMatch(/SUCCESS: 7 rules found/);
    expect(run(['test', 'rules', 'tests.yml'])).toMatch(/SUCCESS/);
  });
});
