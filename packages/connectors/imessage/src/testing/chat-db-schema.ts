/**
 * chat.db layouts for fixtures, from published `.schema` dumps of real Messages databases
 * (column names and declarations only). Two layouts:
 *
 * - `macos26` — a fresh macOS 26 (Tahoe) database: the Sonoma column set plus the Sequoia
 *   and Tahoe additions; `date_edited` / `date_retracted` without defaults (NULL until set);
 * - `macos12` — a Monterey-era database upgraded in place: no edit/unsend columns
 *   (`date_edited`, `date_retracted`, `part_count`…), `ck` columns appended by ALTER TABLE.
 *
 * Both are created in WAL mode, as Messages runs them. The relay must never assume a column.
 */

/** Which fixture layout to create. */
export type ChatDbSchema = 'macos26' | 'macos12';

const I = 'INTEGER DEFAULT 0';
const MESSAGE_BASE = [
  'ROWID INTEGER PRIMARY KEY AUTOINCREMENT', 'guid TEXT UNIQUE NOT NULL', 'text TEXT', `replace ${I}`, 'service_center TEXT', `handle_id ${I}`,
  'subject TEXT', 'country TEXT', 'attributedBody BLOB', `version ${I}`, `type ${I}`, 'service TEXT', 'account TEXT', 'account_guid TEXT', `error ${I}`,
  'date INTEGER', 'date_read INTEGER', 'date_delivered INTEGER', `is_delivered ${I}`, `is_finished ${I}`, `is_emote ${I}`, `is_from_me ${I}`,
  `is_empty ${I}`, `is_delayed ${I}`, `is_auto_reply ${I}`, `is_prepared ${I}`, `is_read ${I}`, `is_system_message ${I}`, `is_sent ${I}`,
  `has_dd_results ${I}`, `is_service_message ${I}`, `is_forward ${I}`, `was_downgraded ${I}`, `is_archive ${I}`, `cache_has_attachments ${I}`,
  'cache_roomnames TEXT', `was_data_detected ${I}`, `was_deduplicated ${I}`, `is_audio_message ${I}`, `is_played ${I}`, 'date_played INTEGER',
  `item_type ${I}`, `other_handle ${I}`, 'group_title TEXT', `group_action_type ${I}`, `share_status ${I}`, `share_direction ${I}`, `is_expirable ${I}`,
  `expire_state ${I}`, `message_action_type ${I}`, `message_source ${I}`, 'associated_message_guid TEXT', `associated_message_type ${I}`,
  'balloon_bundle_id TEXT', 'payload_data BLOB', 'expressive_send_style_id TEXT', `associated_message_range_location ${I}`,
  `associated_message_range_length ${I}`, 'time_expressive_send_played INTEGER', 'message_summary_info BLOB', `ck_sync_state ${I}`, 'ck_record_id TEXT',
  'ck_record_change_tag TEXT', 'destination_caller_id TEXT', `is_corrupt ${I}`, 'reply_to_guid TEXT', 'sort_id INTEGER', `is_spam ${I}`,
  `has_unseen_mention ${I}`, 'thread_originator_guid TEXT', 'thread_originator_part TEXT', 'syndication_ranges TEXT', 'synced_syndication_ranges TEXT',
  `was_delivered_quietly ${I}`, `did_notify_recipient ${I}`,
];
const MESSAGE_SINCE_VENTURA = [
  'date_retracted INTEGER', 'date_edited INTEGER', `was_detonated ${I}`, 'part_count INTEGER', `is_stewie ${I}`, `is_sos ${I}`, `is_critical ${I}`,
  'bia_reference_id TEXT', `is_kt_verified ${I}`, 'fallback_hash TEXT',
  // Sequoia 15
  'associated_message_emoji TEXT', `is_pending_satellite_send ${I}`, `needs_relay ${I}`, `schedule_type ${I}`, `schedule_state ${I}`, `sent_or_received_off_grid ${I}`,
  // Tahoe 26
  'date_recovered INTEGER', `is_time_sensitive ${I}`, 'ck_chat_id TEXT', `index_state ${I}`,
];
const CHAT = [
  'ROWID INTEGER PRIMARY KEY AUTOINCREMENT', 'guid TEXT UNIQUE NOT NULL', 'style INTEGER', 'state INTEGER', 'account_id TEXT', 'properties BLOB',
  'chat_identifier TEXT', 'service_name TEXT', 'room_name TEXT', 'account_login TEXT', `is_archived ${I}`, 'last_addressed_handle TEXT', 'display_name TEXT',
  'group_id TEXT', `is_filtered ${I}`, 'successful_query INTEGER', 'engram_id TEXT', 'server_change_token TEXT', `ck_sync_state ${I}`, 'original_group_id TEXT',
  `last_read_message_timestamp ${I}`, 'cloudkit_record_id TEXT', 'last_addressed_sim_id TEXT', `is_blackholed ${I}`, `syndication_date ${I}`,
  `syndication_type ${I}`, `is_recovered ${I}`, `is_deleting_incoming_messages ${I}`,
];
const ATTACHMENT = [
  'ROWID INTEGER PRIMARY KEY AUTOINCREMENT', 'guid TEXT UNIQUE NOT NULL', `created_date ${I}`, `start_date ${I}`, 'filename TEXT', 'uti TEXT', 'mime_type TEXT',
  `transfer_state ${I}`, `is_outgoing ${I}`, 'user_info BLOB', 'transfer_name TEXT', `total_bytes ${I}`, `is_sticker ${I}`, 'sticker_user_info BLOB',
  'attribution_info BLOB', `hide_attachment ${I}`, `ck_sync_state ${I}`, 'ck_server_change_token_blob BLOB', 'ck_record_id TEXT', 'original_guid TEXT UNIQUE NOT NULL',
  `is_commsafety_sensitive ${I}`,
];

/** The SQL that creates an empty chat.db of the given layout (WAL mode). */
export function chatDbSchemaSql(schema: ChatDbSchema): string {
  const message = schema === 'macos26' ? [...MESSAGE_BASE, ...MESSAGE_SINCE_VENTURA] : MESSAGE_BASE;
  const chat = schema === 'macos26' ? [...CHAT, `is_pending_review ${I}`] : CHAT;
  const attachment = schema === 'macos26' ? [...ATTACHMENT, 'emoji_image_content_identifier TEXT', 'emoji_image_short_description TEXT', `preview_generation_state ${I}`] : ATTACHMENT;
  return `
PRAGMA journal_mode = WAL;
CREATE TABLE _SqliteDatabaseProperties (key TEXT, value TEXT, UNIQUE(key));
CREATE TABLE handle (ROWID INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, id TEXT NOT NULL, country TEXT, service TEXT NOT NULL, uncanonicalized_id TEXT, person_centric_id TEXT, UNIQUE (id, service));
CREATE TABLE message (${message.join(', ')});
CREATE TABLE chat (${chat.join(', ')});
CREATE TABLE attachment (${attachment.join(', ')});
CREATE TABLE chat_handle_join (chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE, handle_id INTEGER REFERENCES handle (ROWID) ON DELETE CASCADE, UNIQUE(chat_id, handle_id));
CREATE TABLE chat_message_join (chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE, message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE, message_date INTEGER DEFAULT 0, PRIMARY KEY (chat_id, message_id));
CREATE TABLE message_attachment_join (message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE, attachment_id INTEGER REFERENCES attachment (ROWID) ON DELETE CASCADE, UNIQUE(message_id, attachment_id));
CREATE TABLE deleted_messages (ROWID INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, guid TEXT NOT NULL);
CREATE INDEX message_idx_date ON message(date);
CREATE INDEX message_idx_handle ON message(handle_id, date);
CREATE INDEX message_idx_associated_message ON message(associated_message_guid);
CREATE INDEX chat_message_join_idx_message_id_only ON chat_message_join(message_id);
CREATE INDEX message_attachment_join_idx_message_id ON message_attachment_join(message_id);
CREATE TRIGGER after_insert_on_message_attachment_join AFTER INSERT ON message_attachment_join BEGIN UPDATE message SET cache_has_attachments = 1 WHERE message.ROWID = NEW.message_id; END;
CREATE TRIGGER after_insert_on_chat_message_join AFTER INSERT ON chat_message_join BEGIN UPDATE message SET cache_roomnames = (SELECT group_concat(c.room_name) FROM chat c INNER JOIN chat_message_join j ON c.ROWID = j.chat_id WHERE j.message_id = NEW.message_id) WHERE message.ROWID = NEW.message_id; END;
CREATE TRIGGER add_to_deleted_messages AFTER DELETE ON message BEGIN INSERT INTO deleted_messages (guid) VALUES (OLD.guid); END;
${schema === 'macos12' ? "ALTER TABLE message ADD COLUMN sr_ck_sync_state INTEGER DEFAULT 0;\nALTER TABLE message ADD COLUMN sr_ck_record_id TEXT;" : ''}
`;
}
