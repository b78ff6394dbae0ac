import { describe, expect, it } from 'vitest';
import { ArchiveCorruptError } from '../errors/sink-errors.ts';
import { OffchannelError } from '../errors/offchannel-error.ts';
import { createRecordingLogger } from '../testing/recording-logger.ts';
import { type Logger, noopLogger } from './logger.ts';
import { SAFE_LOG_FIELDS, redactForLog, redactingLogger } from './redacting-logger.ts';

/**
 * Field names that carry message content, people or secrets in the four connectors' records
 * and platform objects (Baileys' WAMessage and contacts, libsignal / Signal service protos,
 * mtcute's TL objects and Bot API updates, chat.db rows), and in offchannel's own records.
 */
const CONTENT_FIELDS = [
  // offchannel records
  'text', 'title', 'name', 'aliases', 'sender', 'conversation', 'native', 'target', 'attachments', 'raw', 'textBlob', 'meta', 'key', 'id',
  // WhatsApp (Baileys)
  'message', 'extendedTextMessage', 'imageMessage', 'documentMessage', 'contactMessage', 'contactsArrayMessage', 'locationMessage',
  'liveLocationMessage', 'pollCreationMessage', 'reactionMessage', 'protocolMessage', 'editedMessage', 'quotedMessage', 'contextInfo',
  'caption', 'fileName', 'pushName', 'verifiedBizName', 'notify', 'vcard', 'displayName', 'matchedText', 'canonicalUrl', 'description',
  'url', 'directPath', 'mediaKey', 'jpegThumbnail', 'thumbnail', 'remoteJid', 'participant', 'jid', 'lid', 'phoneNumber', 'phone',
  'degreesLatitude', 'degreesLongitude', 'address', 'comment', 'selectableOptions', 'optionName', 'question', 'subject', 'desc',
  'creds', 'noiseKey', 'signedIdentityKey', 'advSecretKey', 'pairingCode', 'qr',
  // Signal
  'body', 'bodyRanges', 'dataMessage', 'syncMessage', 'editMessage', 'storyContext', 'quote', 'contact', 'preview', 'sticker', 'groupV2',
  'masterKey', 'profileKey', 'e164', 'number', 'aci', 'pni', 'serviceId', 'sourceServiceId', 'destinationServiceId', 'uuid',
  'aciIdentityPrivate', 'pniIdentityPrivate', 'provisioningCode', 'password', 'deviceName', 'plaintext', 'ciphertext', 'content',
  // Telegram (mtcute, Bot API)
  'entities', 'media', 'fwdFrom', 'replyTo', 'postAuthor', 'peer', 'peerId', 'fromId', 'chat', 'from', 'user', 'users', 'username',
  'firstName', 'lastName', 'first_name', 'last_name', 'phone_number', 'bio', 'about', 'rawText', 'business_connection', 'webpage',
  'venue', 'poll', 'dice', 'game', 'invoice', 'loginCode', 'phoneCodeHash', 'session', 'authKey', 'botToken', 'secret_token',
  // iMessage (chat.db)
  'attributedBody', 'payload_data', 'message_summary_info', 'account', 'account_login', 'handle', 'handle_id', 'other_handle',
  'chat_identifier', 'display_name', 'group_title', 'room_name', 'service_center', 'destination_caller_id', 'cache_roomnames',
  'filename', 'transfer_name', 'uncanonicalized_id',
  // generic
  'data', 'payload', 'bytes', 'value', 'values', 'token', 'apiKey', 'privateKey', 'signingKey', 'seed', 'cookie', 'authorization',
  'headers', 'query', 'path', 'email', 'location', 'latitude', 'longitude', 'mention', 'mentions', 'reaction', 'emoji',
];

describe('redactingLogger', () => {
  it('logs only allowlisted fields: every content-carrying field of every connector is redacted, at any depth', () => {
    const inner = createRecordingLogger();
    const logger = redactingLogger(inner).child({ component: 'test' });
    const fields: Record<string, unknown> = { stream: 'whatsapp:alice', seq: 7, hash: 'ab'.repeat(32), retryInMs: 250 };
    for (const [index, name] of CONTENT_FIELDS.entries()) fields[name] = index % 3 === 0 ? `SECRET-${name}` : index % 3 === 1 ? { nested: `SECRET-${name}`, seq: 1 } : [`SECRET-${name}`];
    logger.info({ ...fields, head: { seq: 3, hash: 'cd'.repeat(32), fileName: 'SECRET-deep' }, connectors: [{ stream: 'signal:bob', pushName: 'SECRET-in-array' }] }, 'event');
    const text = inner.text();
    expect(text).not.toMatch(/SECRET-/);
    expect(text).toContain('whatsapp:alice');
    expect(text).toContain('"seq":7');
    expect(text).toContain('"retryInMs":250');
    expect(text).toContain('signal:bob');
    expect(inner.lines[0]?.bindings).toEqual({ component: 'test' });
  });

  it('no content field passes a string, an object or a list', () => {
    for (const name of CONTENT_FIELDS) {
      for (const value of ['SECRET', { text: 'SECRET' }, ['SECRET']]) expect(redactForLog({ [name]: value }), name).toEqual({ [name]: '[redacted]' });
    }
    expect(SAFE_LOG_FIELDS.has('text')).toBe(false);
  });

  it('counts, sizes, durations and times must be numbers or ISO times: base64 under "bytes" is redacted', () => {
    expect(redactForLog({ bytes: 'U0VDUkVU', size: 'SECRET', count: 3, retryInMs: 4, lastEventAt: '2026-11-21T10:00:00.000Z', sentAt: 'SECRET', fromSeq: 'SECRET' })).toEqual({ bytes: '[redacted]', size: '[redacted]', count: 3, retryInMs: 4, lastEventAt: '2026-11-21T10:00:00.000Z', sentAt: '[redacted]', fromSeq: '[redacted]' });
  });

  it('reduces errors to name and code; only our errors marked safe keep their message', () => {
    const foreign = Object.assign(new Error('could not send "SECRET-TEXT" to +15551234567'), { code: 'E_SEND', extra: 'SECRET-EXTRA' });
    const ours = new ArchiveCorruptError('segment 12 of stream demo:alice is damaged', { stream: 'demo:alice', seq: 12 });
    const unmarked = new OffchannelError('SOME_CODE', 'libsignal said: SECRET-LIBSIGNAL');
    const out = JSON.stringify(redactForLog({ err: foreign, error: ours, cause: unmarked, reason: foreign }));
    expect(out).not.toMatch(/SECRET-|5551234567/);
    expect(out).toContain('E_SEND');
    expect(out).toContain('segment 12 of stream demo:alice is damaged');
    expect(out).toContain('SOME_CODE');
    expect(redactForLog({ error: 'TypeError', err: 'could not parse SECRET-SENTENCE' })).toEqual({ error: 'TypeError', err: '[redacted]' });
  });

  it('turns bytes into sizes and cuts long strings and deep nesting', () => {
    expect(redactForLog(new Uint8Array(10))).toBe('[10 bytes]');
    expect(String(redactForLog('x'.repeat(2000)))).toMatch(/\[2000 chars\]$/);
    let deep: unknown = { seq: 1 };
    for (let index = 0; index < 20; index++) deep = { head: deep };
    expect(JSON.stringify(redactForLog(deep))).toContain('[nested]');
  });

  it('does not redact a line the inner logger drops: the no-op logger, or below a pino-style logger\'s level (checked per line)', () => {
    // Counts how often redaction reads the line's fields.
    let reads = 0;
    const fields = {
      get stream() {
        reads++;
        return 'telegram:desk';
      },
      text: 'confidential',
    };
    redactingLogger(noopLogger).debug(fields, 'batch durable');
    expect(redactingLogger(noopLogger)).toBe(noopLogger);
    expect(reads).toBe(0);
    // pino's levels: a line is written when its level is at or above the logger's.
    const order = ['debug', 'info', 'warn', 'error'];
    const recording = createRecordingLogger();
    const pinoLike: Logger & { level: string; isLevelEnabled(level: string): boolean } = {
      ...recording,
      level: 'warn',
      isLevelEnabled(level) {
        return order.indexOf(level) >= order.indexOf(this.level);
      },
    };
    const logger = redactingLogger(pinoLike);
    logger.debug(fields, 'batch durable');
    logger.info(fields, 'state written');
    expect(reads).toBe(0);
    expect(recording.lines).toEqual([]);
    logger.warn(fields, 'kept');
    pinoLike.level = 'debug';
    logger.debug(fields, 'now kept');
    expect(reads).toBe(2);
    expect(recording.lines.map((line) => [line.level, line.message, line.fields])).toEqual([
      ['warn', 'kept', { stream: 'telegram:desk', text: '[redacted]' }],
      ['debug', 'now kept', { stream: 'telegram:desk', text: '[redacted]' }],
    ]);
  });

  it('passes plain string messages through', () => {
    const inner = createRecordingLogger();
    redactingLogger(inner).warn('plain message');
    expect(inner.lines[0]).toMatchObject({ level: 'warn', message: 'plain message' });
  });
});
