/**
 * The connectors' part of `offchannel demo`: each connector package that is installed plays its
 * scripted conversation about the trade against its own local peer — through the real connector
 * (the same code `offchannel capture` runs), a real connector context, and the demo's Recorder.
 * No network: every peer is a local fixture from the package's `testing` entry point.
 *
 * A channel whose package is not installed is skipped and reported. A channel already played
 * into this archive is not played again (its stream has records), so re-running the demo
 * records nothing new.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Connector, type ConnectorContext, type Logger, type Recorder, type StateStore, type StreamWriter, createConnectorContext, openStateStore } from '@offchannel/core';
import { UsageError } from '../usage-error.ts';
import { DEMO_ACCOUNT } from './demo-exchange.ts';

export interface ChannelDemoResult {
  readonly channel: string;
  readonly stream: string;
  /** `played`: the script ran now; `already`: its stream had records; `skipped`: package not installed. */
  readonly outcome: 'played' | 'already' | 'skipped';
  readonly steps: number;
  readonly detail?: string;
}

interface ChannelDemo {
  readonly channel: string;
  readonly packageName: string;
  /** Starts the connector against a local peer in `work`, plays the script, stops. Returns the number of steps. */
  readonly play: (options: { readonly work: string; readonly state: StateStore; readonly recorder: Recorder; readonly logger: Logger; readonly start: (connector: Connector) => Promise<ConnectorContext> }) => Promise<number>;
}

interface IMessageTesting {
  createChatDbFixture(dir: string, options: { schema: 'macos26' | 'macos12' }): Promise<{ path: string; attachmentsDir: string; close(): Promise<void> }>;
  playDemoConversation(db: unknown, options: { captured: (key: string) => Promise<unknown> }): Promise<unknown[]>;
  waitForKeys(lookup: (key: string) => Promise<number | undefined>, keys: readonly string[], options?: { timeoutMs?: number }): Promise<number[]>;
}

interface TelegramRef {
  readonly id: number;
}
interface TelegramTesting {
  createLocalTelegramPeer(options: { account: string }): {
    start(options: { recorder: Recorder; state: StateStore; logger?: Logger }): Promise<ConnectorContext>;
    stop(): Promise<void>;
    incomingText(text: string, options?: { replyTo?: TelegramRef }): Promise<TelegramRef>;
    outgoingText(text: string, options?: { replyTo?: TelegramRef }): Promise<TelegramRef>;
    incomingMedia(file: { bytes: Uint8Array; mime: string; name: string; caption?: string }): Promise<TelegramRef>;
    edit(ref: TelegramRef, text: string): Promise<void>;
    delete(ref: TelegramRef): Promise<void>;
    react(ref: TelegramRef, emoji: string): Promise<void>;
    missedText(text: string): { readonly recorded: Promise<void> };
  };
}

interface WhatsAppKey {
  readonly id?: string | null;
}
interface WhatsAppTesting {
  createWhatsAppTestDriver(options: { account: string }): Promise<{
    readonly connector: Connector;
    readonly me: { readonly id: string };
    incomingText(text: string): Promise<WhatsAppKey>;
    outgoingText(text: string): Promise<WhatsAppKey>;
    edit(target: WhatsAppKey, text: string, options?: { encrypted?: boolean }): Promise<WhatsAppKey>;
    revoke(target: WhatsAppKey): Promise<WhatsAppKey>;
    react(target: WhatsAppKey, emoji: string, options?: { from?: string }): Promise<WhatsAppKey>;
    attachment(options: { kind: 'document'; bytes: Uint8Array; mime: string; name: string; caption?: string }): Promise<WhatsAppKey>;
    whenCaptured(): Promise<void>;
    close(): Promise<void>;
  }>;
}

const DEMOS: readonly ChannelDemo[] = [
  {
    channel: 'telegram',
    packageName: '@offchannel/telegram',
    play: async ({ recorder, state, logger }) => {
      const testing = (await import('@offchannel/telegram/testing')) as unknown as TelegramTesting;
      // mtcute's real updates engine; its RPCs are answered by a local Telegram server.
      const peer = testing.createLocalTelegramPeer({ account: DEMO_ACCOUNT });
      await peer.start({ recorder, state, logger });
      try {
        const ask = await peer.incomingText('Where can you show 5m EUR/USD 1y forward?');
        const quote = await peer.outgoingText('1.0912 / 1.0915, good for 2 minutes', { replyTo: ask });
        await peer.edit(quote, '1.0911 / 1.0914, good for 2 minutes');
        await peer.react(quote, '👍');
        await peer.incomingMedia({ bytes: new TextEncoder().encode('%PDF-1.4\n% demo confirmation\n%%EOF\n'), mime: 'application/pdf', name: 'confirmation.pdf', caption: 'Signed confirmation' });
        const slip = await peer.incomingText('Let us keep the rest off the record');
        await peer.delete(slip);
        // An update lost in transit: the pts gap makes mtcute call getDifference, and it is recorded.
        const missed = peer.missedText('Done, booked at 1.0911');
        await peer.incomingText('Thanks');
        await missed.recorded;
        return 9;
      } finally {
        await peer.stop();
      }
    },
  },
  {
    channel: 'whatsapp',
    packageName: '@offchannel/whatsapp',
    play: async ({ start }) => {
      const testing = (await import('@offchannel/whatsapp/testing')) as unknown as WhatsAppTesting;
      const driver = await testing.createWhatsAppTestDriver({ account: DEMO_ACCOUNT });
      try {
        await start(driver.connector);
        // Baileys' own decode path with real Signal encryption from a simulated contact.
        const ask = await driver.incomingText('Can you work 25m of the 10y Bund at 2.31?');
        await driver.outgoingText('Working it, will come back by 10:15.');
        await driver.edit(ask, 'Can you work 25m of the 10y Bund at 2.33?', { encrypted: true });
        await driver.react(ask, '👍', { from: driver.me.id });
        await driver.attachment({ kind: 'document', bytes: new TextEncoder().encode('%PDF-1.4\n% demo allocation sheet\n%%EOF\n'), mime: 'application/pdf', name: 'allocation.pdf', caption: 'Allocation sheet' });
        const slip = await driver.incomingText('Also do a bit for my own account, keep it quiet');
        await driver.revoke(slip);
        await driver.whenCaptured();
        return 7;
      } finally {
        await driver.close();
      }
    },
  },
  {
    channel: 'imessage',
    packageName: '@offchannel/imessage',
    play: async ({ work, start }) => {
      const imessage = (await import('@offchannel/imessage')) as unknown as { readonly createIMessageConnector: (options: Record<string, unknown>) => Connector };
      const testing = (await import('@offchannel/imessage/testing')) as unknown as IMessageTesting;
      const db = await testing.createChatDbFixture(path.join(work, 'Messages'), { schema: 'macos26' });
      try {
        const connector = imessage.createIMessageConnector({ account: DEMO_ACCOUNT, chatDb: db.path, attachmentsDir: db.attachmentsDir, pollMs: 200 });
        const ctx = await start(connector);
        try {
          const steps = await testing.playDemoConversation(db, { captured: (key) => testing.waitForKeys((wanted) => ctx.lookup(wanted), [key], { timeoutMs: 10_000 }) });
          return steps.length;
        } finally {
          await connector.stop();
        }
      } finally {
        await db.close();
      }
    },
  },
];

/**
 * A demo peer loaded from a file at run time (`offchannel demo --peer <module>`), for connectors
 * whose local peer cannot ship with the CLI (Signal's AGPL server simulator). The module exports
 * `offchannelDemoPeer`.
 */
export interface DemoPeer {
  readonly channel: string;
  readonly description?: string;
  play(options: { readonly recorder: Recorder; readonly state: StateStore; readonly workDir: string; readonly account: string; readonly logger: Logger }): Promise<number>;
}

/** Loads `offchannelDemoPeer` from a module file; a bad module is a usage error naming the file. */
export async function loadDemoPeer(file: string): Promise<DemoPeer> {
  let module: { offchannelDemoPeer?: Partial<DemoPeer> };
  try {
    module = (await import(pathToFileURL(file).href)) as { offchannelDemoPeer?: Partial<DemoPeer> };
  } catch (error) {
    throw new UsageError(`--peer ${file} could not be loaded (${(error as Error).message.split('\n')[0] ?? ''}); build the workspace first (pnpm build)`);
  }
  const peer = module.offchannelDemoPeer;
  if (!peer || typeof peer.channel !== 'string' || typeof peer.play !== 'function') throw new UsageError(`--peer ${file} does not export offchannelDemoPeer { channel, play }`);
  return peer as DemoPeer;
}

/**
 * Plays every installed channel's demo into `recorder`. `marks` (the demo stream) records which
 * scripts were played, so a second run does not play them again.
 */
export async function playChannelDemos(recorder: Recorder, marks: StreamWriter, logger: Logger, onProgress: (line: string) => void, peers: readonly DemoPeer[] = []): Promise<ChannelDemoResult[]> {
  const results: ChannelDemoResult[] = [];
  const fromPeers: ChannelDemo[] = peers.map((peer) => ({
    channel: peer.channel,
    packageName: '',
    play: ({ work, state }) => peer.play({ recorder, state, workDir: work, account: DEMO_ACCOUNT, logger }),
  }));
  for (const demo of [...DEMOS, ...fromPeers]) {
    const stream = `${demo.channel}:${DEMO_ACCOUNT}`;
    if (demo.packageName !== '' && !(await installed(demo.packageName))) {
      results.push({ channel: demo.channel, stream, outcome: 'skipped', steps: 0, detail: `${demo.packageName} is not installed` });
      continue;
    }
    if ((await marks.lookup(`demo-played:${demo.channel}`)) !== undefined) {
      results.push({ channel: demo.channel, stream, outcome: 'already', steps: 0 });
      continue;
    }
    onProgress(`  ${demo.channel}: playing the scripted conversation through the real connector…`);
    const work = await mkdtemp(path.join(os.tmpdir(), `offchannel-demo-${demo.channel}-`));
    const abort = new AbortController();
    try {
      // Throwaway session state for the local peer only: never a real account's secrets.
      const state = await openStateStore({ dir: path.join(work, 'state'), unencrypted: true, logger });
      const steps = await demo.play({
        work,
        state,
        recorder,
        logger,
        start: async (connector) => {
          const ctx = createConnectorContext({ recorder, connector, state, logger, signal: abort.signal });
          await connector.start(ctx);
          return ctx;
        },
      });
      // Marks the script as played in this archive, so a second demo run does not play it again.
      await marks.capture({ kind: 'system', key: `demo-played:${demo.channel}`, system: { event: 'demo-script-played', fields: { channel: demo.channel, steps: String(steps) } } });
      results.push({ channel: demo.channel, stream, outcome: 'played', steps });
    } finally {
      abort.abort();
      await rm(work, { recursive: true, force: true });
    }
  }
  return results;
}

async function installed(name: string): Promise<boolean> {
  try {
    await import(name);
    return true;
  } catch {
    return false;
  }
}
