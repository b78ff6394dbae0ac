import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { verifyArchive } from '@offchannel/core';
import { createRecordingLogger } from '@offchannel/core/testing';
import { expect, it } from 'vitest';
import { runSignalDemo } from './offline-demo.ts';
import { openTestArchive } from './test-archive.ts';

it('the offline demo links, records the whole conversation and leaves a verifiable archive', async () => {
  const logger = createRecordingLogger();
  const archive = await openTestArchive(logger);
  const workDir = await mkdtemp(path.join(tmpdir(), 'offchannel-signal-demo-'));
  try {
    const uris: string[] = [];
    const result = await runSignalDemo({ recorder: archive.recorder, state: archive.state, workDir, logger, onLinkUri: (uri) => uris.push(uri) });
    expect(uris[0]).toMatch(/^sgnl:\/\/linkdevice\?uuid=[^&]+&pub_key=[A-Za-z0-9%]+$/);
    expect(result).toEqual({ stream: 'signal:demo-trader', acknowledged: 7, captured: 7 });
    const kinds = (await archive.records(result.stream)).map((r) => r.kind);
    // The device's own identity first (the context its records were mapped with), then the conversation.
    expect(kinds).toEqual(['system', 'message', 'message', 'edit', 'reaction', 'message', 'message', 'delete']);
    expect((await verifyArchive(archive.sink)).ok).toBe(true);
    expect(logger.text()).not.toContain('XYZ');
  } finally {
    await archive.close();
    await rm(workDir, { recursive: true, force: true });
  }
});
