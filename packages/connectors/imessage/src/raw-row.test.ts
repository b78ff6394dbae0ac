import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { ChatDb, type RowBundle, type SqlRow, type SqlValue } from './chat-db/chat-db.ts';
import { chatDbSchemaSql } from './testing/chat-db-schema.ts';
import { RAW_ROW_FORMAT, decodeRawRow, encodeRawRow, encodeRow } from './raw-row.ts';

/**
 * The raw-row format as first defined: JSON.stringify of the object form. Each value is
 * encodeRow's; the row object is built with own properties (a column named `__proto__`
 * included, as node:sqlite's rows and the encoder have always had it).
 */
function reference(bundle: RowBundle): string {
  const form = (value: SqlRow): Record<string, unknown> => Object.fromEntries(Object.entries(value).map(([name, cell]) => [name, encodeRow({ cell })['cell']]));
  const row = (value: SqlRow | undefined) => (value === undefined ? null : form(value));
  const json = JSON.stringify({ format: RAW_ROW_FORMAT, version: 1, message: form(bundle.message), handle: row(bundle.handle), chat: row(bundle.chat), otherHandle: row(bundle.otherHandle), attachments: bundle.attachments.map(form) });
  // encodeRow's object form gives the same JSON, a column named `__proto__` included.
  const plain = (value: SqlRow | undefined) => (value === undefined ? null : encodeRow(value));
  expect(JSON.stringify({ format: RAW_ROW_FORMAT, version: 1, message: encodeRow(bundle.message), handle: plain(bundle.handle), chat: plain(bundle.chat), otherHandle: plain(bundle.otherHandle), attachments: bundle.attachments.map(encodeRow) })).toBe(json);
  return json;
}

describe('the raw row blob', () => {
  const hostile: SqlRow = { ROWID: 9_007_199_254_740_993n, guid: 'g"\\\u2028\u0000', text: null, ratio: 1.5, count: 3, nan: Number.NaN, blob: new Uint8Array([0, 1, 255]), lone: '👍\ud800', ['we"ird']: '' };
  const bundles: RowBundle[] = [
    { message: hostile, attachments: [hostile, {}], handle: hostile, chat: { ROWID: 1n } },
    { message: {}, attachments: [] },
    { message: { ROWID: 1n, attributedBody: new Uint8Array(new ArrayBuffer(16), 4, 8).fill(7) }, attachments: [], otherHandle: { id: 'x' } },
  ];

  it('is byte for byte the JSON of its object form, for hostile column names and values', () => {
    for (const bundle of bundles) expect(new TextDecoder().decode(encodeRawRow(bundle))).toBe(reference(bundle));
  });

  it('keeps a column named __proto__ as a column, in the object form and back from the blob', () => {
    const row = JSON.parse('{"ROWID":1,"__proto__":"kept","constructor":"too"}') as SqlRow;
    const form = encodeRow(row);
    expect(Object.keys(form)).toEqual(['ROWID', '__proto__', 'constructor']);
    expect(JSON.stringify(form)).toBe('{"ROWID":{"real":1},"__proto__":"kept","constructor":"too"}');
    const back = decodeRawRow(encodeRawRow({ message: row, attachments: [row] }));
    expect(Object.keys(back.message)).toEqual(['ROWID', '__proto__', 'constructor']);
    expect(back.message['__proto__']).toBe('kept');
    expect(Object.keys(back.attachments[0] ?? {})).toContain('__proto__');
  });

  it('decodes to a bundle that encodes to the same bytes (SQLite stores no NaN: a NaN REAL reads back as NULL)', () => {
    const { nan: _nan, ...readable } = hostile;
    for (const bundle of [...bundles.slice(1), { message: readable, attachments: [readable], chat: readable }]) {
      const bytes = encodeRawRow(bundle);
      expect(Buffer.from(encodeRawRow(decodeRawRow(bytes)))).toEqual(Buffer.from(bytes));
    }
  });

  it('is the JSON of its object form for every value kind a column holds, in rows shaped as node:sqlite returns them', () => {
    const hostileRow = Object.assign(Object.create(null) as Record<string, unknown>, {
      '1': 1n,
      ROWID: 1n,
      zero: 0n,
      zeroNumber: 0,
      minusZero: -0,
      negative: -5n,
      negativeNumber: -7,
      big: 2n ** 63n - 1n,
      small: -(2n ** 63n),
      beyond: 2n ** 53n + 1n,
      real: -0.1,
      tiny: 5e-324,
      huge: 1.7976931348623157e308,
      wholeReal: 3.0,
      infinite: Number.POSITIVE_INFINITY,
      empty: '',
      quotes: 'say "hi" \\ back\\slash /',
      control: Array.from({ length: 32 }, (_, code) => String.fromCharCode(code)).join('') + '\u007f',
      separators: '\u2028\u2029',
      loneHigh: 'a\ud800b',
      loneLow: '\udc00',
      pair: '👍',
      nul: null,
      emptyBlob: new Uint8Array(0),
      blob: new Uint8Array([0, 255, 34, 92]),
      '': 'empty name',
      'we"ird\\': 'name with a quote and a backslash',
      'new\nline\u2028': 'name with control characters',
      ['__proto__']: 'a column named __proto__',
      'ünï👍': 'non-ASCII name',
    }) as SqlRow;
    const bundle: RowBundle = { message: hostileRow, attachments: [hostileRow, hostileRow], handle: hostileRow, chat: hostileRow, otherHandle: hostileRow };
    expect(Object.keys(hostileRow)).toContain('__proto__');
    expect(new TextDecoder().decode(encodeRawRow(bundle))).toBe(reference(bundle));
    // Past the column-name cache's bound (a database with thousands of columns): still the same bytes.
    const wide: Record<string, SqlValue> = {};
    for (let i = 0; i < 5000; i++) wide[`c${i}"`] = i % 3 === 0 ? null : i % 3 === 1 ? 0n : `v${i}`;
    for (const message of [wide, hostileRow, wide]) expect(new TextDecoder().decode(encodeRawRow({ message, attachments: [] }))).toBe(reference({ message, attachments: [] }));
  });

  it('is the JSON of its object form for rows read from a chat.db whose columns and values are hostile', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-raw-row-'));
    try {
      const file = path.join(dir, 'chat.db');
      const writer = new DatabaseSync(file);
      writer.exec(chatDbSchemaSql('macos26'));
      for (const column of ['we"ird', 'new\nline', '__proto__', '1', 'ünï']) writer.exec(`ALTER TABLE message ADD COLUMN "${column.replaceAll('"', '""')}"`);
      const insert = writer.prepare('INSERT INTO message (guid, date, is_from_me, handle_id, text, "we""ird", "new\nline", "__proto__", "1", "ünï") VALUES (?, ?, 0, 0, ?, ?, ?, ?, ?, ?)');
      const values = [null, 0, -0, 1.5, -1e300, 2n ** 62n, -(2n ** 63n), 9_007_199_254_740_993n, '', 'a"b\\c\u0000\u001f\u2028', 'x\ud800y', new Uint8Array(0), new Uint8Array([0, 1, 2, 254, 255])] as const;
      values.forEach((value, i) => insert.run(`G${i}`, BigInt(i), `text ${i} "quoted"`, value, values[(i + 1) % values.length] as never, values[(i + 2) % values.length] as never, values[(i + 3) % values.length] as never, values[(i + 4) % values.length] as never));
      writer.close();
      const db = ChatDb.open(file);
      const { bundles } = db.readBatch(0n, 100);
      db.close();
      expect(bundles).toHaveLength(values.length);
      for (const bundle of bundles) expect(new TextDecoder().decode(encodeRawRow(bundle))).toBe(reference(bundle));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  it('tags every REAL as real, whole ones and infinities too, and reads each back as the number chat.db holds', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'offchannel-raw-row-real-'));
    try {
      const file = path.join(dir, 'chat.db');
      const writer = new DatabaseSync(file);
      writer.exec(chatDbSchemaSql('macos26'));
      writer.exec('ALTER TABLE message ADD COLUMN score REAL');
      const insert = writer.prepare('INSERT INTO message (guid, date, is_from_me, handle_id, text, score) VALUES (?, 1, 0, 0, NULL, ?)');
      const reals = [3, 0, 1e21, 1.7976931348623157e308, -1e308, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0.5];
      reals.forEach((value, i) => insert.run(`R${i}`, value));
      writer.close();
      const db = ChatDb.open(file);
      const { bundles } = db.readBatch(0n, 100);
      db.close();
      expect(bundles.map((bundle) => bundle.message['score'])).toEqual(reals);
      for (const bundle of bundles) {
        const bytes = encodeRawRow(bundle);
        const score = (JSON.parse(new TextDecoder().decode(bytes)) as { message: { score: unknown } }).message.score;
        expect(score).toHaveProperty('real');
        const back = decodeRawRow(bytes);
        expect(back.message["score"]).toBe(bundle.message["score"]);
        expect(Buffer.from(encodeRawRow(back))).toEqual(Buffer.from(bytes));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads blobs written before whole REALs were tagged real: "3" as an INTEGER, "1e+308" as the REAL it was', () => {
    const blob = (message: string): Uint8Array => new TextEncoder().encode(`{"format":"${RAW_ROW_FORMAT}","version":1,"message":${message},"handle":null,"chat":null,"otherHandle":null,"attachments":[]}`);
    expect(decodeRawRow(blob('{"a":{"int":"3"},"b":{"int":"1e+308"},"c":{"int":"-1.5e+21"}}')).message).toEqual({ a: 3n, b: 1e308, c: -1.5e21 });
    // A whole REAL below 1e21 was written with all its digits (21 at most).
    const digits = `{"a":{"int":"${String(1e20)}"},"b":{"int":"${String(-999999999999999900000)}"}}`;
    const old = blob(digits);
    expect(decodeRawRow(old).message).toEqual({ a: 10n ** 20n, b: -999999999999999900000n });
    expect(Buffer.from(encodeRawRow(decodeRawRow(old)))).toEqual(Buffer.from(old));
  });

  it('writes the own columns of a row only, whatever enumerable keys Object.prototype has', () => {
    const row = { ROWID: 5n, guid: 'G' } as SqlRow;
    const before = new TextDecoder().decode(encodeRawRow({ message: { ...row }, attachments: [] }));
    const proto = Object.prototype as Record<string, unknown>;
    proto['polluted'] = 'injected';
    try {
      expect(new TextDecoder().decode(encodeRawRow({ message: { ...row }, attachments: [{ ...row }], chat: { ...row } }))).not.toContain('polluted');
      expect(new TextDecoder().decode(encodeRawRow({ message: { ...row }, attachments: [] }))).toBe(before);
    } finally {
      delete proto['polluted'];
    }
  });

  it('refuses a damaged or crafted blob with IMESSAGE_EVIDENCE_INVALID, never a bare SyntaxError or TypeError', () => {
    const blob = (message: string, attachments = '[]'): Uint8Array => new TextEncoder().encode(`{"format":"${RAW_ROW_FORMAT}","version":1,"message":${message},"handle":null,"chat":null,"otherHandle":null,"attachments":${attachments}}`);
    const crafted = [
      new TextEncoder().encode('{"format":'),
      new TextEncoder().encode('null'),
      new Uint8Array([0xff, 0xfe, 0x00]),
      blob('null'),
      blob('[]'),
      blob('{}', '[null]'),
      blob('{}', '[7]'),
      blob('{}', '{"0":{}}'),
      blob('{}', '"none"'),
      blob('{"a":{"int":"12abc"}}'),
      blob('{"a":{"int":"0x10"}}'),
      blob(`{"a":{"int":"${'9'.repeat(100_000)}"}}`),
      blob('{"a":{"int":"1e+999"}}'),
      blob('{"a":{"int":3}}'),
      blob('{"a":{"real":null}}'),
      blob('{"a":{"real":"NaN"}}'),
      blob('{"a":7}'),
      blob('{"a":[1]}'),
      blob('{"a":{"base64":5}}'),
    ];
    for (const bytes of crafted) expect(() => decodeRawRow(bytes), new TextDecoder().decode(bytes).slice(0, 80)).toThrow(expect.objectContaining({ code: 'IMESSAGE_EVIDENCE_INVALID' }));
  });
});
