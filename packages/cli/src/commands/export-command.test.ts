import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../run.ts';
import { runCli } from '../testing/run-cli.ts';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'offchannel-export-cli-'));
  const demo = await runCli(['demo', '--no-connectors', '--archive', 'archive', '--signing-key', 'demo.key', '--create-key'], work);
  expect(demo.code, demo.stderr).toBe(0);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('offchannel export', () => {
  it('exports every format from a verified archive and prints where', async () => {
    const result = await runCli(['export', 'archive', '--format', 'rsmf,html', '--format', 'jsonl', '--format', 'eml', '--out', 'out', '--key', 'demo.key.pub'], work);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/verified first: 1 stream, \d+ records, signed checkpoints checked/);
    expect(result.stdout).toMatch(/4 conversations: rsmf \d+ events, html \d+ events, jsonl \d+ lines, eml \d+ files/);
    expect((await readdir(path.join(work, 'out'))).sort()).toEqual(['SHA256SUMS', 'eml', 'export-summary.json', 'html', 'jsonl', 'rsmf']);
    expect(await readdir(path.join(work, 'out', 'rsmf'))).toHaveLength(4); // 3 conversations + account-level policy record
  });

  it('refuses a tampered archive with exit 1 and names the failure', async () => {
    const copy = path.join(work, 'tampered');
    expect((await runCli(['copy', path.join(work, 'archive'), copy], work)).code).toBe(0);
    const blobs = path.join(copy, 'blobs', 'sha256');
    const [blob] = await readdir(blobs);
    await chmod(path.join(blobs, blob ?? ''), 0o644);
    await writeFile(path.join(blobs, blob ?? ''), (await readFile(path.join(blobs, blob ?? ''))).subarray(1));
    const result = await runCli(['export', 'tampered', '--format', 'html', '--out', 'never', '--key', 'demo.key.pub'], work);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/does not verify, so nothing was exported: BLOB_\w+.*\[EXPORT_UNVERIFIED\]/);
  });

  it('stops on SIGINT / SIGTERM (its abort signal): exit 1, working files removed', async () => {
    const controller = new AbortController();
    controller.abort();
    let stderr = '';
    const code = await run(['export', 'archive', '--format', 'rsmf', '--out', 'interrupted/out', '--key', 'demo.key.pub'], { stdout: { write: () => true }, stderr: { write: (text: string) => (stderr += text) }, env: {}, cwd: work, signal: controller.signal });
    expect(code).toBe(1);
    expect(stderr).toMatch(/the export was interrupted.*\[EXPORT_ABORTED\]/);
    expect((await readdir(path.join(work, 'interrupted'))).filter((name) => name.startsWith('.offchannel-export-tmp-'))).toEqual([]);
  });

  it('usage errors exit 2', async () => {
    expect((await runCli(['export', 'archive', '--out', 'x'], work)).stderr).toMatch(/--format is required/);
    const bad = await runCli(['export', 'archive', '--format', 'pdf', '--out', 'x'], work);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown --format "pdf"/);
    expect((await runCli(['export', 'archive', '--format', 'html'], work)).stderr).toMatch(/--out <dir> is required/);
  });
});
