/**
 * The emitter tap: sees every event the socket emits, BEFORE Baileys' event buffer.
 *
 * During reconnect catch-up Baileys buffers events and merges later updates into buffered
 * messages with `Object.assign` — a revoke in the same window replaces the original message's
 * content and key. Listeners registered with `ev.on` only see the merged result. Baileys'
 * internal code calls `ev.emit(...)` on the emitter object, so replacing `ev.emit` right after
 * the socket is made intercepts every emit first; the tap runs synchronously and must copy
 * whatever it needs (the connector serializes messages to protobuf bytes there and then).
 */
import type { BaileysEventEmitter, BaileysEventMap } from '@whiskeysockets/baileys';

/** Called synchronously for every emitted event, before buffering. Must not throw (errors are swallowed). */
export type EmitTap = <E extends keyof BaileysEventMap>(event: E, data: BaileysEventMap[E]) => void;

/** Installs `tap` on `ev`; returns a function that removes it. Throws if `ev.emit` is not a function. */
export function tapEmitter(ev: BaileysEventEmitter, tap: EmitTap, onTapError: (error: unknown) => void): () => void {
  if (typeof ev.emit !== 'function') throw new TypeError('the socket event emitter has no emit method');
  const saved = Object.getOwnPropertyDescriptor(ev, 'emit');
  const original = ev.emit.bind(ev);
  const tapped = <E extends keyof BaileysEventMap>(event: E, data: BaileysEventMap[E]): boolean => {
    try {
      tap(event, data);
    } catch (error) {
      onTapError(error);
    }
    return original(event, data);
  };
  ev.emit = tapped;
  return () => {
    if (ev.emit !== tapped) return;
    if (saved) Object.defineProperty(ev, 'emit', saved);
    else delete (ev as { emit?: unknown }).emit;
  };
}
