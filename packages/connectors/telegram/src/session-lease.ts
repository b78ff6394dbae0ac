/**
 * One live session per account. Telegram kills a session (`AUTH_KEY_DUPLICATED`) when the same
 * auth key is used from two processes at once, so a second capture process on the same
 * account must refuse to start — loudly — instead of connecting.
 *
 * The lease is a value in the account's state store: `{ owner, pid, host, renewedAt }`. It is
 * taken at start, renewed every `ttl / 3`, and released at stop. A lease is free when it is
 * missing, expired (not renewed within `ttl`), or held by a process on this host that no
 * longer exists (crash). Taking it re-reads the value after writing, and every renewal checks
 * the holder: of two processes that start in the same instant, the one whose write was
 * overwritten stops at its first renewal (within `ttl / 3`). The state store's atomic rename
 * means a reader always sees one whole lease, never a mix.
 */
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { OffchannelError, type StateStore } from '@offchannel/core';

const LEASE = 'session.lease';

interface LeaseValue {
  readonly owner: string;
  readonly pid: number;
  readonly host: string;
  readonly renewedAt: number;
}

/** Another process holds this account's Telegram session. */
export class SessionInUseError extends OffchannelError {
  constructor(holder: { pid: number; host: string }) {
    super(
      'TELEGRAM_SESSION_IN_USE',
      `another process (pid ${holder.pid} on ${holder.host}) is capturing this Telegram account; running two at once makes Telegram revoke the session (AUTH_KEY_DUPLICATED). Stop the other process first.`,
    );
  }
}

export class SessionLease {
  readonly #state: StateStore;
  readonly #ttlMs: number;
  readonly #owner = randomUUID();
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #lost: ((error: Error) => void) | undefined;

  constructor(state: StateStore, options: { ttlMs?: number; now?: () => number } = {}) {
    this.#state = state;
    this.#ttlMs = options.ttlMs ?? 60_000;
    this.#now = options.now ?? Date.now;
  }

  /** Takes the lease or throws {@link SessionInUseError}. `onLost` is called if another process takes it over. */
  async acquire(onLost: (error: Error) => void): Promise<void> {
    const current = await this.#read();
    if (current && current.owner !== this.#owner && !this.#isFree(current)) throw new SessionInUseError(current);
    await this.#write();
    const check = await this.#read();
    if (check?.owner !== this.#owner) throw new SessionInUseError(check ?? { pid: 0, host: 'unknown' });
    this.#lost = onLost;
    this.#timer = setInterval(() => {
      void this.#renew();
    }, Math.max(1_000, Math.floor(this.#ttlMs / 3)));
    this.#timer.unref();
  }

  /** Releases the lease if this process still holds it. */
  async release(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#lost = undefined;
    const current = await this.#read().catch(() => undefined);
    if (current?.owner === this.#owner) await this.#state.delete(LEASE);
  }

  async #renew(): Promise<void> {
    try {
      const current = await this.#read();
      if (current && current.owner !== this.#owner) {
        clearInterval(this.#timer);
        this.#lost?.(new SessionInUseError(current));
        return;
      }
      await this.#write();
    } catch (error) {
      this.#lost?.(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #isFree(lease: LeaseValue): boolean {
    if (this.#now() - lease.renewedAt > this.#ttlMs) return true;
    if (lease.host !== os.hostname()) return false;
    if (lease.pid === process.pid) return false; // another connector in this very process
    try {
      process.kill(lease.pid, 0);
      return false;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'ESRCH';
    }
  }

  async #read(): Promise<LeaseValue | undefined> {
    const value = await this.#state.getJson<Partial<LeaseValue>>(LEASE);
    if (!value || typeof value.owner !== 'string' || typeof value.pid !== 'number' || typeof value.host !== 'string' || typeof value.renewedAt !== 'number') return undefined;
    return value as LeaseValue;
  }

  #write(): Promise<void> {
    const value: LeaseValue = { owner: this.#owner, pid: process.pid, host: os.hostname(), renewedAt: this.#now() };
    return this.#state.setJson(LEASE, value);
  }
}
