/** A short, loggable code for an error: our code, Telegram's RPC error text, or the error's name. Never a message. */
export function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const { code, text } = error as { code?: unknown; text?: unknown };
    if (typeof text === 'string' && /^[A-Z0-9_]+$/.test(text)) return text; // mtcute RpcError: FLOOD_WAIT_5, AUTH_KEY_UNREGISTERED…
    if (typeof code === 'string' && /^[A-Z0-9_]+$/.test(code)) return code; // OffchannelError, Node errno
  }
  if (error instanceof Error) return error.name;
  return 'unknown';
}
