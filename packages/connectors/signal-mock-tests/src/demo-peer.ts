/**
 * The Signal part of `offchannel demo`, loaded at run time with
 * `offchannel demo --peer packages/connectors/signal-mock-tests/src/demo-peer.ts` (the root
 * `pnpm demo` does this). It lives here, in the unpublished AGPL test package, because it runs
 * Signal's own server simulator; the Apache-2.0 CLI never imports it.
 *
 * Contract (see `DemoPeer` in packages/cli/src/demo/channel-demos.ts): `channel` and `play`,
 * which links the real connector to the simulator, plays the scripted envelopes through it into
 * the demo's Recorder and returns the number of steps.
 */
import type { Logger, Recorder, StateStore } from '@offchannel/core';
import { runSignalDemo } from './offline-demo.ts';

export const offchannelDemoPeer = {
  channel: 'signal',
  description: "Signal's server simulator (@signalapp/mock-server)",
  async play(options: { readonly recorder: Recorder; readonly state: StateStore; readonly workDir: string; readonly account: string; readonly logger: Logger }): Promise<number> {
    const result = await runSignalDemo({ recorder: options.recorder, state: options.state, workDir: options.workDir, account: options.account, logger: options.logger });
    return result.acknowledged;
  },
};
