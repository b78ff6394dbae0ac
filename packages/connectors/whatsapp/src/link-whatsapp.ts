/**
 * Linking: makes this process a linked device of the custodian's WhatsApp account and stores
 * the resulting credentials and Signal keys in the secret state store.
 *
 * Two ways, as in WhatsApp's own "Link a device" screen:
 * - QR: `io.showQr(text, terminalArt)` is called with each QR code WhatsApp issues (they
 *   rotate about every 20 s); the user scans it with the phone.
 * - Pairing code: with `phoneNumber`, `io.showPairingCode(code)` shows an 8-character code to
 *   type on the phone ("Link with phone number instead").
 * After the phone accepts, WhatsApp sends the device identity (saved at once) and closes the
 * connection with 515 "restart required"; that is the normal end of pairing, and linking stops
 * there. The first login with the new identity is left to the capture process on purpose: the
 * phone sends the initial history sync to that first session, and a linking process that logged
 * in and quit would receive (and acknowledge) it without archiving it.
 */
import { OffchannelError, type Logger, type StateStore, noopLogger } from '@offchannel/core';
import makeWASocket, { Browsers, DisconnectReason, makeCacheableSignalKeyStore, type BaileysEventMap, type UserFacingSocketConfig } from '@whiskeysockets/baileys';
import { renderUnicodeCompact } from 'uqr';
import { openAuthState } from './auth-state.ts';
import { baileysLogger } from './baileys-logger.ts';
import type { WhatsAppSocket, WhatsAppSocketFactory } from './whatsapp-connector.ts';

/** How the CLI (or any front end) shows pairing information. */
export interface LinkIO {
  /** A new QR code: `text` is its payload, `terminal` a rendering with Unicode half blocks. */
  showQr(text: string, terminal: string): void;
  /** The pairing code to type on the phone (phone-number linking). */
  showPairingCode(code: string): void;
  /** Progress notes for the user ("waiting for the phone", "linked"). No secrets. */
  status(message: string): void;
}

export interface LinkWhatsAppOptions {
  /**
   * The connector's state: the same store the capture runner gives the connector as `ctx.state`
   * (the runner scopes it per stream, e.g. `stateRoot.scope('whatsapp:<account>')`).
   */
  readonly state: StateStore;
  readonly io: LinkIO;
  /** Link by pairing code for this phone number (digits, with country code) instead of QR. */
  readonly phoneNumber?: string;
  /** Give up after this long. Default 180 000 ms. */
  readonly timeoutMs?: number;
  /** Ask the phone for full history (only sent at pairing). Default true. */
  readonly syncFullHistory?: boolean;
  readonly logger?: Logger;
  /** Seams for tests. */
  readonly socketFactory?: WhatsAppSocketFactory;
  readonly waWebSocketUrl?: string;
}

/** The linked identity. */
export interface LinkedAccount {
  readonly id: string;
  readonly lid?: string;
  readonly name?: string;
}

/** Links a device. Rejects with `WHATSAPP_ALREADY_LINKED`, `WHATSAPP_LINK_FAILED` or `WHATSAPP_LINK_TIMEOUT`. */
export async function linkWhatsApp(options: LinkWhatsAppOptions): Promise<LinkedAccount> {
  const phone = options.phoneNumber?.replace(/[^0-9]/g, '');
  if (options.phoneNumber !== undefined && (!phone || phone.length < 6 || phone.length > 15)) {
    throw new OffchannelError('WHATSAPP_BAD_PHONE_NUMBER', 'the phone number must be 6 to 15 digits including the country code, e.g. 15551234567.');
  }
  const auth = await openAuthState(options.state.scope('auth'));
  // Closed however linking ends: Baileys stores keys while it links, which opens the keys table.
  try {
    if (auth.existing && auth.state.creds.me?.id && auth.state.creds.account) {
      throw new OffchannelError('WHATSAPP_ALREADY_LINKED', 'this account already has a linked device; unlink it on the phone and remove its state before linking again.');
    }
    const logger = baileysLogger(options.logger ?? noopLogger);
    const factory = options.socketFactory ?? ((config: UserFacingSocketConfig) => makeWASocket(config));
    const deadline = Date.now() + (options.timeoutMs ?? 180_000);
    let restarts = 0;
    const writes: Promise<void>[] = [];

    for (;;) {
      const socket: WhatsAppSocket = factory({
        auth: { creds: auth.state.creds, keys: makeCacheableSignalKeyStore(auth.state.keys, logger) },
        logger,
        browser: Browsers.macOS('Desktop'),
        syncFullHistory: options.syncFullHistory ?? true,
        markOnlineOnConnect: false,
        ...(options.waWebSocketUrl ? { waWebSocketUrl: options.waWebSocketUrl } : {}),
      });
      socket.ev.on('creds.update', () => writes.push(auth.saveCreds()));
      const outcome = await new Promise<'open' | 'restart' | Error>((resolve) => {
        const timer = setTimeout(() => { resolve(new OffchannelError('WHATSAPP_LINK_TIMEOUT', 'the phone did not confirm the link in time; run the command again.')); }, Math.max(0, deadline - Date.now()));
        let asked = false;
        socket.ev.on('connection.update', (update: BaileysEventMap['connection.update']) => {
          if (update.qr) {
            if (phone && !asked && socket.requestPairingCode) {
              asked = true;
              socket.requestPairingCode(phone).then(
                (code) => { options.io.showPairingCode(code); },
                () => { resolve(new OffchannelError('WHATSAPP_LINK_FAILED', 'WhatsApp refused the pairing-code request; check the number or use the QR code.')); },
              );
            } else if (!phone) {
              options.io.showQr(update.qr, renderUnicodeCompact(update.qr));
            }
          }
          if (update.connection === 'open') {
            clearTimeout(timer);
            resolve('open');
          } else if (update.connection === 'close') {
            clearTimeout(timer);
            const code = (update.lastDisconnect?.error as { output?: { statusCode?: number } } | undefined)?.output?.statusCode;
            resolve(code === DisconnectReason.restartRequired ? 'restart' : new OffchannelError('WHATSAPP_LINK_FAILED', `WhatsApp closed the connection while linking (${code ?? 'no code'}); run the command again.`));
          }
        });
      });
      try {
        socket.end(undefined);
      } catch {
        // already closed
      }
      await Promise.all(writes);
      if (outcome === 'open') break;
      if (outcome === 'restart' && auth.state.creds.me?.id) break; // paired: capture does the first login
      if (outcome === 'restart' && restarts++ < 3) {
        options.io.status('WhatsApp asked for a restart before pairing; reconnecting');
        continue;
      }
      throw outcome === 'restart' ? new OffchannelError('WHATSAPP_LINK_FAILED', 'WhatsApp kept asking for restarts; run the command again.') : outcome;
    }
    await auth.saveCreds();
    const me = auth.state.creds.me;
    if (!me?.id) throw new OffchannelError('WHATSAPP_LINK_FAILED', 'the connection opened but WhatsApp sent no account identity; run the command again.');
    options.io.status('linked');
    return { id: me.id, ...(me.lid ? { lid: me.lid } : {}), ...(me.name ? { name: me.name } : {}) };
  } finally {
    await auth.close();
  }
}
