/**
 * Runtime validation of record schema v1. Every error names the offending field
 * (`record.sender.id`) and what is wrong with it — never the field's value, which may be
 * message text.
 */
import { InvalidRecordError } from '../errors/record-errors.ts';
import { ZERO_HASH, isSha256Hex } from '../hash/sha256.ts';
import {
  type ArchiveRecord,
  COMMON_FIELDS,
  KIND_RULES,
  RECORD_KINDS,
  RECORD_VERSION,
} from './record.ts';
import { STREAM_PATTERN } from './stream-name.ts';

/** Longest id, name, key, reason or format string, in UTF-16 code units. */
export const MAX_SHORT_STRING = 1024;

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;
const META_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const NATIVE_SCOPE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

type Fields = Record<string, unknown>;

/**
 * The last stream name found valid, with its parts, and the last two timestamps found valid:
 * records of a stream repeat their stream, and a capture time or placeholder, so these are
 * checked once, not per record (a value equal to one found valid is valid).
 */
const valid = { stream: undefined as string | undefined, channel: '', account: '', time: undefined as string | undefined, otherTime: undefined as string | undefined };

/** Allowed and required field names per kind, computed once. */
const FIELDS_BY_KIND = new Map<string, { readonly allowed: ReadonlySet<string>; readonly required: readonly string[] }>(
  RECORD_KINDS.map((kind) => [kind, { allowed: new Set<string>([...COMMON_FIELDS, ...KIND_RULES[kind].allowed]), required: [...COMMON_FIELDS, ...KIND_RULES[kind].required] }]),
);

/**
 * Throws {@link InvalidRecordError} unless `value` is a valid schema v1 record.
 * Checks structure, types, per-kind required/allowed fields, stream/channel/account agreement
 * and limits. It does not check the chain (`seq`, `prev` against the stream) — that is
 * the recorder's and the verifier's job.
 */
export function validateRecord(value: unknown): asserts value is ArchiveRecord {
  const record = object('record', value);
  if (record.v !== RECORD_VERSION) fail('record.v', `must be ${RECORD_VERSION}`);
  const kind = record.kind;
  const fields = typeof kind === 'string' ? FIELDS_BY_KIND.get(kind) : undefined;
  if (!fields) fail('record.kind', `must be one of ${RECORD_KINDS.join(', ')}`);
  for (const name in record) {
    if (!fields.allowed.has(name)) fail(`record.${safeName(name)}`, `is not allowed in a ${String(kind)} record`);
  }
  for (const name of fields.required) {
    if (record[name] === undefined) fail(`record.${name}`, `is required in a ${String(kind)} record`);
  }

  const name = record.stream;
  if (typeof name !== 'string' || name !== valid.stream) {
    const stream = typeof name === 'string' ? STREAM_PATTERN.exec(name) : null;
    if (!stream || (stream[2] as string).includes('..')) fail('record.stream', 'must be "<channel>:<account>" with valid names');
    valid.stream = name as string;
    valid.channel = stream[1] as string;
    valid.account = stream[2] as string;
  }
  // Read before the record's members are (a getter could validate another record meanwhile).
  const { channel, account } = valid;
  if (record.channel !== channel) fail('record.channel', 'must equal the channel part of record.stream');
  if (record.account !== account) fail('record.account', 'must equal the account part of record.stream');
  const seq = integer('record.seq', record.seq);
  if (seq < 1) fail('record.seq', 'must be 1 or more');
  // ZERO_HASH (a first record's prev, and the placeholder of every record the recorder prepares)
  // is known valid: not checked character by character.
  if (record.prev !== ZERO_HASH && !isSha256Hex(record.prev)) fail('record.prev', 'must be 64 lowercase hex characters');
  shortString('record.key', record.key);
  timestamp('record.capturedAt', record.capturedAt);
  source(record.source);

  if (record.sentAt !== undefined) timestamp('record.sentAt', record.sentAt);
  if (record.conversation !== undefined) conversation(record.conversation);
  if (record.sender !== undefined) party('record.sender', record.sender);
  if (record.direction !== undefined) oneOf('record.direction', record.direction, ['inbound', 'outbound']);
  if (record.native !== undefined) nativeRef('record.native', record.native);
  if (record.target !== undefined) nativeRef('record.target', record.target);
  if (record.replyTo !== undefined) nativeRef('record.replyTo', record.replyTo);
  if (record.text !== undefined) text('record.text', record.text);
  if (record.textBlob !== undefined) blobRef('record.textBlob', record.textBlob);
  if (record.text !== undefined && record.textBlob !== undefined) {
    fail('record.textBlob', 'cannot be present together with record.text');
  }
  if (record.attachments !== undefined) attachments(record.attachments);
  if (record.forwarded !== undefined && record.forwarded !== true) fail('record.forwarded', 'must be true when present');
  if (record.mentions !== undefined) stringList('record.mentions', record.mentions, 1024);
  if (record.raw !== undefined) raw(record.raw);
  if (record.meta !== undefined) meta(record.meta);
  if (record.reaction !== undefined) reaction(record.reaction);
  if (record.deletion !== undefined) deletion(record.deletion);
  if (record.receipt !== undefined) receipt(record.receipt);
  if (record.membership !== undefined) membership(record.membership);
  if (record.problem !== undefined) problem(record.problem);
  if (record.gap !== undefined) gap(record.gap);
  if (record.system !== undefined) system(record.system);
  if (kind === 'message' && record.text === undefined && record.textBlob === undefined && record.attachments === undefined) {
    fail('record.text', 'or record.attachments is required in a message record');
  }
}

function fail(field: string, problem: string): never {
  throw new InvalidRecordError(field, problem);
}

/** Field names from hostile input are echoed only when they look like field names. */
function safeName(name: string): string {
  return /^[A-Za-z0-9_.-]{1,64}$/.test(name) ? name : '<unprintable name>';
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function object(field: string, value: unknown, keys?: readonly string[]): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(field, `must be an object (got ${describe(value)})`);
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) fail(field, 'must be a plain object');
  if (keys) {
    for (const name of Object.keys(value)) {
      if (!keys.includes(name)) fail(`${field}.${safeName(name)}`, 'is not a known field');
    }
  }
  return value as Fields;
}

function string(field: string, value: unknown, max: number): string {
  if (typeof value !== 'string') fail(field, `must be a string (got ${describe(value)})`);
  if (value.length === 0) fail(field, 'must not be empty');
  if (value.length > max) fail(field, `must be at most ${max} characters`);
  if (!value.isWellFormed()) fail(field, 'must be well-formed Unicode (no lone surrogates)');
  return value;
}

function shortString(field: string, value: unknown): string {
  return string(field, value, MAX_SHORT_STRING);
}

/**
 * {@link shortString} of member `name` of `field`, naming the member (`field.name`) only when
 * it is invalid: the party and native checks run for every record, and building each member's
 * path up front was measurable garbage on the capture path (recorder-cpu bench).
 */
function shortMember(field: string, name: string, value: unknown): void {
  if (typeof value === 'string' && value.length > 0 && value.length <= MAX_SHORT_STRING && value.isWellFormed()) return;
  shortString(`${field}.${name}`, value);
}

function text(field: string, value: unknown): void {
  if (typeof value !== 'string') fail(field, `must be a string (got ${describe(value)})`);
  if (!value.isWellFormed()) fail(field, 'must be well-formed Unicode (no lone surrogates)');
}

function integer(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    fail(field, `must be a safe integer (got ${describe(value)}${typeof value === 'number' ? ' that is not a safe integer' : ''})`);
  }
  if (value < 0) fail(field, 'must not be negative');
  return value;
}

function oneOf(field: string, value: unknown, options: readonly string[]): void {
  if (typeof value !== 'string' || !options.includes(value)) fail(field, `must be one of ${options.join(', ')}`);
}

function timestamp(field: string, value: unknown): void {
  if (typeof value !== 'string') fail(field, `must be an ISO 8601 UTC timestamp string (got ${describe(value)})`);
  if (value === valid.time || value === valid.otherTime) return;
  if (!ISO_UTC.test(value)) fail(field, 'must be an ISO 8601 UTC timestamp like 2026-11-21T09:30:00.000Z');
  // The pattern fixes where each part is: YYYY-MM-DDTHH:MM:SS (read without allocating).
  const year = digits(value, 0, 4);
  const month = digits(value, 5, 2);
  const day = digits(value, 8, 2);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
  if (month < 1 || month > 12 || day < 1 || day > days || digits(value, 11, 2) > 23 || digits(value, 14, 2) > 59 || digits(value, 17, 2) > 59) {
    fail(field, 'is not a real date and time');
  }
  valid.otherTime = valid.time;
  valid.time = value;
}

/** The decimal number written by the `count` ASCII digits of `text` at `start`. */
function digits(text: string, start: number, count: number): number {
  let number = 0;
  for (let index = start; index < start + count; index++) number = number * 10 + text.charCodeAt(index) - 0x30;
  return number;
}

function sha256(field: string, value: unknown): void {
  if (!isSha256Hex(value)) fail(field, 'must be 64 lowercase hex characters');
}

function stringList(field: string, value: unknown, maxItems: number): void {
  if (!Array.isArray(value)) fail(field, `must be an array (got ${describe(value)})`);
  if (value.length === 0) fail(field, 'must not be empty when present');
  if (value.length > maxItems) fail(field, `must have at most ${maxItems} items`);
  value.forEach((item: unknown, index) => {
    shortString(`${field}[${index}]`, item);
  });
}

function source(value: unknown): void {
  const fields = object('record.source', value, ['package', 'version', 'upstream', 'policy']);
  shortString('record.source.package', fields.package);
  shortString('record.source.version', fields.version);
  if (fields.upstream !== undefined) shortString('record.source.upstream', fields.upstream);
  if (fields.policy !== undefined) shortString('record.source.policy', fields.policy);
}

function conversation(value: unknown): void {
  const fields = object('record.conversation', value, ['id', 'type', 'title']);
  shortString('record.conversation.id', fields.id);
  oneOf('record.conversation.type', fields.type, ['direct', 'group', 'channel']);
  if (fields.title !== undefined) shortString('record.conversation.title', fields.title);
}

function party(field: string, value: unknown): void {
  const fields = object(field, value, ['id', 'name', 'aliases']);
  shortMember(field, 'id', fields.id);
  if (fields.name !== undefined) shortMember(field, 'name', fields.name);
  if (fields.aliases !== undefined) stringList(`${field}.aliases`, fields.aliases, 64);
}

function nativeRef(field: string, value: unknown): void {
  const fields = object(field, value);
  shortMember(field, 'id', fields.id);
  const names = Object.keys(fields);
  if (names.length > 16) fail(field, 'must have at most 16 members');
  for (const name of names) {
    // `id` (every native ref has it) matches NATIVE_SCOPE: no pattern match for it.
    if (name !== 'id' && !NATIVE_SCOPE.test(name)) fail(`${field}.${safeName(name)}`, 'is not a valid scope name ([A-Za-z][A-Za-z0-9_]{0,31})');
    shortMember(field, name, fields[name]);
  }
}

function blobRef(field: string, value: unknown): void {
  const fields = object(field, value, ['sha256', 'size']);
  sha256(`${field}.sha256`, fields.sha256);
  integer(`${field}.size`, fields.size);
}

function attachments(value: unknown): void {
  if (!Array.isArray(value)) fail('record.attachments', `must be an array (got ${describe(value)})`);
  if (value.length === 0) fail('record.attachments', 'must not be empty when present');
  if (value.length > 256) fail('record.attachments', 'must have at most 256 items');
  value.forEach((item: unknown, index) => {
    const field = `record.attachments[${index}]`;
    const status = object(field, item).status;
    if (status === 'stored') {
      const fields = object(field, item, ['status', 'sha256', 'size', 'mime', 'name']);
      sha256(`${field}.sha256`, fields.sha256);
      integer(`${field}.size`, fields.size);
      shortString(`${field}.mime`, fields.mime);
      if (fields.name !== undefined) shortString(`${field}.name`, fields.name);
    } else if (status === 'unavailable') {
      const fields = object(field, item, ['status', 'reason', 'mime', 'name', 'size', 'sha256']);
      shortString(`${field}.reason`, fields.reason);
      if (fields.mime !== undefined) shortString(`${field}.mime`, fields.mime);
      if (fields.name !== undefined) shortString(`${field}.name`, fields.name);
      if (fields.size !== undefined) integer(`${field}.size`, fields.size);
      if (fields.sha256 !== undefined) sha256(`${field}.sha256`, fields.sha256);
    } else {
      fail(`${field}.status`, 'must be "stored" or "unavailable"');
    }
  });
}

function raw(value: unknown): void {
  const fields = object('record.raw', value, ['sha256', 'size', 'format']);
  sha256('record.raw.sha256', fields.sha256);
  integer('record.raw.size', fields.size);
  shortString('record.raw.format', fields.format);
}

function meta(value: unknown): void {
  const fields = object('record.meta', value);
  const names = Object.keys(fields);
  if (names.length === 0) fail('record.meta', 'must not be empty when present');
  if (names.length > 64) fail('record.meta', 'must have at most 64 members');
  for (const name of names) {
    const field = `record.meta.${safeName(name)}`;
    if (!META_NAME.test(name)) fail(field, 'is not a valid name ([A-Za-z][A-Za-z0-9_.-]{0,63})');
    const item = fields[name];
    if (typeof item === 'string') shortString(field, item);
    else if (typeof item === 'number') integer(field, item);
    else if (typeof item !== 'boolean') fail(field, `must be a string, boolean or safe integer (got ${describe(item)})`);
  }
}

function reaction(value: unknown): void {
  const fields = object('record.reaction', value, ['value', 'action']);
  shortString('record.reaction.value', fields.value);
  oneOf('record.reaction.action', fields.action, ['add', 'remove']);
}

function deletion(value: unknown): void {
  const fields = object('record.deletion', value, ['scope', 'admin']);
  oneOf('record.deletion.scope', fields.scope, ['everyone', 'me']);
  if (fields.admin !== undefined && typeof fields.admin !== 'boolean') fail('record.deletion.admin', 'must be a boolean');
}

function receipt(value: unknown): void {
  const fields = object('record.receipt', value, ['status']);
  oneOf('record.receipt.status', fields.status, ['delivered', 'read', 'played']);
}

function membership(value: unknown): void {
  const fields = object('record.membership', value, ['action', 'members', 'value']);
  const actions = ['create', 'join', 'leave', 'add', 'remove', 'promote', 'demote', 'title', 'description', 'settings', 'other'];
  oneOf('record.membership.action', fields.action, actions);
  if (fields.members !== undefined) {
    if (!Array.isArray(fields.members) || fields.members.length === 0) {
      fail('record.membership.members', 'must be a non-empty array when present');
    }
    if (fields.members.length > 1024) fail('record.membership.members', 'must have at most 1024 items');
    fields.members.forEach((member: unknown, index) => {
      party(`record.membership.members[${index}]`, member);
    });
  }
  if (fields.value !== undefined) shortString('record.membership.value', fields.value);
}

function problem(value: unknown): void {
  const fields = object('record.problem', value, ['reason', 'detail']);
  shortString('record.problem.reason', fields.reason);
  if (fields.detail !== undefined) shortString('record.problem.detail', fields.detail);
}

function gap(value: unknown): void {
  const fields = object('record.gap', value, ['reason', 'from', 'to', 'missing']);
  shortString('record.gap.reason', fields.reason);
  if (fields.from !== undefined) shortString('record.gap.from', fields.from);
  if (fields.to !== undefined) shortString('record.gap.to', fields.to);
  if (fields.missing !== undefined) integer('record.gap.missing', fields.missing);
}

function system(value: unknown): void {
  const fields = object('record.system', value, ['event', 'fields']);
  shortString('record.system.event', fields.event);
  if (fields.fields !== undefined) {
    const facts = object('record.system.fields', fields.fields);
    const names = Object.keys(facts);
    if (names.length > 64) fail('record.system.fields', 'must have at most 64 members');
    for (const name of names) {
      if (!META_NAME.test(name)) fail(`record.system.fields.${safeName(name)}`, 'is not a valid name');
      shortString(`record.system.fields.${name}`, facts[name]);
    }
  }
}
