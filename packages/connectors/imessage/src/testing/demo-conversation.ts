/**
 * A scripted day on the custodian's Mac, for demos: a client thread with an edit, a tapback,
 * a threaded reply, an attachment that finishes downloading later, an unsend, an SMS, and a
 * new group that gets renamed. Every step is committed by the fixture's writer process.
 */
import type { ChatDbFixture, FixtureEvent } from './chat-db-fixture.ts';

/** One step of the script: what happened (no message text) and the key of its record. */
export interface DemoStep {
  readonly label: string;
  readonly event: FixtureEvent;
}

/** Options for {@link playDemoConversation}. */
export interface DemoOptions {
  /** Pause after each step, in ms (default 0). */
  readonly pauseMs?: number;
  /**
   * Resolves once the relay has recorded `key` (e.g. `(key) => waitForKeys(ctx.lookup, [key])`).
   * When given, each step waits for its record before the next one is written, so every step
   * becomes its own record in order. Without it, steps can race the relay: an attachment that
   * completes before the relay first reads its message is archived in the message record, and
   * the `completeTransfer` key is then never written.
   */
  readonly captured?: (key: string) => Promise<unknown>;
}

/** Plays the script against `db` and returns the steps in order. */
export async function playDemoConversation(db: ChatDbFixture, options: DemoOptions = {}): Promise<DemoStep[]> {
  const steps: DemoStep[] = [];
  const step = async <T extends FixtureEvent>(label: string, event: Promise<T>): Promise<T> => {
    const done = await event;
    steps.push({ label, event: done });
    if (options.captured) await options.captured(done.key);
    if (options.pauseMs) await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
    return done;
  };
  const client = '+15550100';
  const ask = await step('incoming iMessage', db.receive({ from: client, text: 'Can you confirm the 10,000 share block at 101.25?' }));
  const answer = await step('outgoing reply (attributedBody only)', db.send({ to: client, text: 'Confirmed at 101.52', bodyOnly: true }));
  await step('edit of the reply', db.edit(answer.guid, 'Confirmed at 101.25'));
  await step('tapback on the reply', db.tapback({ target: answer.guid, from: client, value: 'like' }));
  await step('threaded reply', db.receive({ from: client, text: 'Thanks, booking it now', replyTo: ask.guid, bodyOnly: true }));
  const file = await step('attachment, still downloading', db.receiveAttachment({ from: client, name: 'trade-ticket.pdf', mime: 'application/pdf', text: 'ticket attached' }));
  await step('attachment download completes', db.completeTransfer(file, new TextEncoder().encode('%PDF-1.7\n% demo trade ticket\n')));
  const oops = await step('message later unsent', db.receive({ from: client, text: 'Also buy 500 more for my personal account' }));
  await step('unsend (macOS 26 style)', db.unsend(oops.guid));
  await step('incoming SMS', db.receive({ from: '+15550177', text: 'Running late, call you at 3', service: 'SMS' }));
  const group = await step('new group chat', db.createGroup({ name: 'Rates desk', members: [client, 'bob@client.example'] }));
  await step('message in the group', db.receive({ from: 'bob@client.example', chat: group.chat, text: 'Morning all, axes attached later' }));
  await step('group renamed', db.renameGroup(group.chat, 'Rates desk EU', 'bob@client.example'));
  return steps;
}
