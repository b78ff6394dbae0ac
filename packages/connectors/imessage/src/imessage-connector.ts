/**
 * The iMessage relay: watches chat.db and records every new row, and every edit, unsend,
 * receipt and completed attachment transfer of rows already recorded, on core's connector
 * runtime. The event source (chat-db-source.ts) reads chat.db and acknowledges by saving its
 * ROWID cursor; the mapping (map-chat-db-row.ts) turns what it read into records; the runtime
 * captures them pipelined and hands back what is durable.
 */
import { CONNECTOR_SPEC_VERSION, createConnectorRuntime, type Connector, type ConnectorContext, type ConnectorRuntime, type ConnectorStatus, type SourceInfo } from '@offchannel/core';
import { ChatDbSource, type ChatDbEvent, type ReconcileReport } from './chat-db-source.ts';
import { resolveOptions, type IMessageConnectorOptions, type ResolvedOptions } from './config.ts';
import { mapChatDbEvent } from './map-chat-db-row.ts';
import { PACKAGE_VERSION } from './version.ts';

/** Events mapped and not yet acknowledged (one group commit's worth, and then some). */
const MAX_IN_FLIGHT = 512;

/** Creates the iMessage relay for one Mac user's chat.db. See the package README for operating it. */
export function createIMessageConnector(options: IMessageConnectorOptions): IMessageConnector {
  return new IMessageConnector(resolveOptions(options));
}

export class IMessageConnector implements Connector {
  readonly specVersion = CONNECTOR_SPEC_VERSION;
  readonly channel = 'imessage';
  readonly account: string;
  readonly source: SourceInfo = { package: '@offchannel/imessage', version: PACKAGE_VERSION, upstream: `node:sqlite@${process.versions.sqlite ?? 'unknown'}` };
  readonly #runtime: ConnectorRuntime<ChatDbEvent>;
  readonly #events: ChatDbSource;

  constructor(options: ResolvedOptions) {
    this.account = options.account;
    this.#events = new ChatDbSource(options, () => this.#runtime.backlog, MAX_IN_FLIGHT);
    this.#runtime = createConnectorRuntime<ChatDbEvent>({
      channel: this.channel,
      account: this.account,
      source: this.source,
      maxInFlight: MAX_IN_FLIGHT,
      events: this.#events,
      map: (event) => {
        const inputs = mapChatDbEvent(event.evidence, { self: options.self, files: event.files });
        event.mapped?.(); // the inputs hold what the records need; the rows can go before they are durable
        return inputs;
      },
    });
  }

  start(ctx: ConnectorContext): Promise<void> {
    return this.#runtime.start(ctx);
  }

  stop(): Promise<void> {
    return this.#runtime.stop();
  }

  status(): ConnectorStatus {
    const status = this.#runtime.status();
    if (status.state !== 'running' || (status.detail !== undefined && !status.detail.startsWith('connected'))) return status;
    return { ...status, detail: this.#events.detail() };
  }

  /**
   * Compares chat.db with the archive now (`offchannel reconcile imessage`): captures every row up
   * to the cursor the archive lacks and records a `chat-db-sweep` system record saying what was
   * checked and recovered. Resolves with that report (and the totals of every sweep since the
   * relay started, the start-up sweep included) once it is durable; rejects with
   * `CONNECTOR_STOPPED` if the relay stops first.
   */
  reconcile(): Promise<ReconcileReport> {
    return this.#events.sweepNow();
  }
}
