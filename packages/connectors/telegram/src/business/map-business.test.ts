import type { Message, Update } from 'grammy/types';
import { describe, expect, it } from 'vitest';
import { BOT_API_RAW_FORMAT, businessFingerprint, filesOf, mapBusinessUpdate } from './map-business.ts';

const chat = { id: 123456789, type: 'private', first_name: 'Dana' } as const;
const dana = { id: 123456789, is_bot: false, first_name: 'Dana' };
const env = { raw: new TextEncoder().encode('{}'), receivedAt: new Date('2026-11-21T09:00:00.000Z') };

function message(fields: Partial<Message>): Message {
  return { message_id: 1, date: 1_700_000_000, chat, from: dana, business_connection_id: 'B1', ...fields };
}

describe('mapBusinessUpdate', () => {
  it('keeps forwards, text mentions, captions and the file list in a stable order', () => {
    const update = {
      update_id: 1,
      business_message: message({
        caption: 'see @Sam',
        caption_entities: [{ type: 'text_mention', offset: 4, length: 4, user: { id: 42, is_bot: false, first_name: 'Sam' } }],
        forward_origin: { type: 'user', date: 1_699_999_000, sender_user: { id: 42, is_bot: false, first_name: 'Sam' } },
        voice: { file_id: 'v', file_unique_id: 'uv', duration: 3 },
        document: { file_id: 'd', file_unique_id: 'ud', file_name: 'a.pdf', mime_type: 'application/pdf', file_size: 10 },
      }),
    } as Update;
    const [input] = mapBusinessUpdate(update, { ...env, attachments: [{ status: 'unavailable', reason: 'x', mime: 'application/pdf' }] });
    expect(input).toMatchObject({ kind: 'message', text: 'see @Sam', mentions: ['42'], forwarded: true, direction: 'inbound', raw: { format: BOT_API_RAW_FORMAT } });
    expect(filesOf(update.business_message as Message).map((file) => [file.fileId, file.mime])).toEqual([
      ['d', 'application/pdf'],
      ['v', 'audio/ogg'],
    ]);
  });

  it('skips an edit whose text, entities and files are unchanged', () => {
    const original = message({ text: 'Buy 100' });
    const edited = { update_id: 2, edited_business_message: { ...original, edit_date: 1_700_000_100 } } as Update;
    expect(mapBusinessUpdate(edited, { ...env, previousFingerprint: businessFingerprint(original) })).toEqual([]);
    expect(mapBusinessUpdate(edited, env)[0]).toMatchObject({ kind: 'edit', sentAt: new Date(1_700_000_100_000) });
  });

  it('maps a message the business account sent as outbound, and other update kinds as unsupported', () => {
    const [sent] = mapBusinessUpdate({ update_id: 3, business_message: message({ text: 'ok', from: { id: 777, is_bot: false, first_name: 'Alice' } }) } as Update, env);
    expect(sent).toMatchObject({ direction: 'outbound', sender: { id: '777', name: 'Alice' } });
    const [other] = mapBusinessUpdate({ update_id: 4, callback_query: { id: 'q', from: dana, chat_instance: 'c' } }, env);
    expect(other).toMatchObject({ kind: 'unsupported', problem: { reason: 'not-a-business-update', detail: 'update fields: callback_query' } });
  });
});
